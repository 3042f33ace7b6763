"""DMN models: FEEL, import into rulesets, TCK test files, export (pure: text in, text out)."""
