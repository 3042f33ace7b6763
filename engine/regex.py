"""``matches``: regular expressions on RE2, so that no pattern and no input can stall a decision.

Python's ``re`` backtracks: ``^(a+)+$`` against a short run of ``a``s ending in another character takes
time that doubles with each ``a`` more, holding the worker's event loop. RE2 matches in time linear in the
input, and refuses what it cannot run that way (backreferences, lookaround) when the ruleset is compiled.
"""

from __future__ import annotations

import re
from typing import Protocol

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # errors come back as exceptions with the reason; nothing on stderr


class Pattern(Protocol):
    def search(self, text: str) -> object: ...


class RegexError(ValueError):
    """A pattern RE2 cannot compile; the message is RE2's reason."""


_PYTHON_END = re.compile(r"(?<!\\)((?:\\\\)*)\\Z")  # \Z not itself escaped


def compile_regex(pattern: str) -> Pattern:
    # Python's \Z (end of text) is RE2's \z: the same anchor, so rulesets written for `re` keep working
    pattern = _PYTHON_END.sub(lambda m: m.group(1) + "\\z", pattern)
    try:
        compiled: Pattern = re2.compile(pattern, _OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else str(e)
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise RegexError(text) from None
    return compiled
