"""The ruleset loader by section of the ruleset file: one module per section (facts and inputs, models and
tools, rules and steps, tables, tests), each a class over :class:`~engine.language.sections.base.LoaderBase`;
engine/language/loader.py joins them into ``Loader`` and loads the file as a whole."""
