"""Baton's pure core: ruleset language, compiler, driver over durable-rules, decision loop.

Nothing in this package does network, database, clock, randomness or environment I/O; it talks to
the outside world only through the Protocols in :mod:`engine.ports`.
"""
