"""Benchmarks: each module measures one claim and returns a Markdown section."""
