"""Prompt templates: sandboxed Jinja, with a fast path for the common shape.

Most prompts are text with ``{{ type.field }}`` substitutions. Those render here by direct lookup and
``str()`` - exactly what Jinja's sandbox produces for a plain scalar, without building a Jinja context
per call (a tenth of the time). Anything else - filters, loops, ``facts``, a missing fact or field, a value
that is not a plain scalar - renders through the Jinja template itself, so errors and edge cases are
Jinja's own."""

from __future__ import annotations

from collections.abc import Mapping

from jinja2 import Environment, Template, nodes
from jinja2.exceptions import TemplateError

Part = str | tuple[str, str]
_SCALARS = (str, int, float, bool)


def simple_parts(env: Environment, source: str) -> tuple[Part, ...] | None:
    """The literal text and ``(name, field)`` lookups of a template made only of those, else None."""
    try:
        tree = env.parse(source)
    except TemplateError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts: list[Part] = []
    for node in tree.body[0].nodes:
        if isinstance(node, nodes.TemplateData):
            parts.append(node.data)
        elif (isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.ctx == "load"
              and not hasattr(dict, node.attr)):  # `x.items` is dict.items to Jinja, not the key "items"
            parts.append((node.node.name, node.attr))
        else:
            return None
    return tuple(parts)


class Prompt:
    """A compiled prompt: ``render(context, **names)`` as ``jinja2.Template.render``."""

    __slots__ = ("parts", "template")

    def __init__(self, env: Environment, source: str) -> None:
        self.template: Template = env.from_string(source)
        self.parts = simple_parts(env, source)

    def render(self, context: Mapping[str, object], **names: object) -> str:
        parts = self.parts
        if parts is not None:
            out = []
            for part in parts:
                if isinstance(part, str):
                    out.append(part)
                    continue
                name, key = part
                fact = context.get(name) if name not in names else None
                value = fact.get(key) if type(fact) is dict else None
                if type(value) not in _SCALARS:
                    break  # missing, None or not a plain scalar: Jinja decides
                out.append(str(value))
            else:
                return "".join(out)
        return self.template.render(context, **names)
