"""Strategies of your own, outside the package: name one with --strategy
strategies/FILE.py:Class (or strategies.FILE:Class); the compose stack mounts this
directory into the processor (docs/strategies.md)."""
