"""The ruleset language: YAML with source positions, condition expressions, fact types."""
