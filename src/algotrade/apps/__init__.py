"""Apps: the collector, processor and trader services, their composition roots and the CLI."""
