"""A JSON Schema (draft-07) for ruleset files, so editors validate and complete them as analysts type
(``baton schema`` prints it; a ``# yaml-language-server: $schema=...`` line at the top of a ruleset
points VS Code, IntelliJ or Neovim at it). It is written from :mod:`engine.language.shape`, the same
description of the file's shape the loader checks; ``baton check`` remains the judge of meaning (types of
conditions, names, positions)."""

from __future__ import annotations

from typing import Any

from engine.language.shape import RULESET, SCALAR_TYPES, json_schema

__all__ = ["SCALAR_TYPES", "ruleset_schema"]


def ruleset_schema() -> dict[str, Any]:
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://baton.invalid/schema/ruleset.json",
        "title": "Baton ruleset",
        **json_schema(RULESET),
    }
