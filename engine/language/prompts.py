"""Prompt templates: sandboxed Jinja, with a fast path for the common shape.

Most prompts are text with ``{{ type.field }}`` substitutions. Those render here by direct lookup and
``str()`` - exactly what Jinja's sandbox produces for a plain scalar, without building a Jinja context
per call (a tenth of the time). Anything else - filters, loops, ``facts``, a missing fact or field, a value
that is not a plain scalar - renders through the Jinja template itself, so errors and edge cases are
Jinja's own."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jinja2 import Environment, Template, nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

Part = str | tuple[str, str]
_SCALARS = (str, int, float, bool)

MAX_TEXT = 1_000_000  # characters a prompt (or any string or list made while rendering it) may hold
MAX_STEPS = 1_000_000  # loop iterations in one rendering, all loops together
_BIG_POWER = 1_000  # bits of a power's result


class PromptLimit(SecurityError):
    """Rendering a template went over one of its bounds: the call carries this error, never a stalled
    worker nor a gigabyte string (a template is ruleset text, rendered at decide time over the facts)."""


def _sized(value: object) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else 0


def _check_size(value: object) -> object:
    if _sized(value) > MAX_TEXT:
        raise PromptLimit(f"a template made a value longer than {MAX_TEXT:,}")
    return value


def _check_args(args: Iterable[object]) -> None:
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_TEXT:
            raise PromptLimit(f"a template asked for a width or count of {arg} (at most {MAX_TEXT:,})")


_WIDE = re.compile(r"\d{7,}")  # a width of a million or more in a format string
_NESTED = re.compile(r"\{[^{}]*\{")  # a width given as an argument: {:>{w}}


def _check_format(spec: object, args: Iterable[object]) -> None:
    """A width of a million or more written in a format string, or passed to one (``%*d``, ``{:>{w}}``)."""
    if not isinstance(spec, str):
        return
    if _WIDE.search(spec):
        raise PromptLimit(f"a template's format asks for a width of a million or more: {spec[:40]!r}")
    if "*" in spec or _NESTED.search(spec):
        _check_args(args)


def bounded_loop(iterable: Iterable[Any], context: Context) -> Iterator[Any]:
    """Every ``{% for %}`` of a template iterates through this: MAX_STEPS iterations per rendering."""
    for item in iterable:
        steps = getattr(context, "baton_steps", 0) + 1
        if steps > MAX_STEPS:
            raise PromptLimit(f"a template looped more than {MAX_STEPS:,} times")
        context.baton_steps = steps  # type: ignore[attr-defined]
        yield item


_WIDTH_FILTERS = {"center", "indent", "truncate", "wordwrap", "batch", "slice"}
_WIDTH_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}


def _bounded_filter(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(f)  # keeps jinja_pass_arg: the filter still receives what it asks for
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        rest = args[2:] if getattr(f, "jinja_pass_arg", None) is not None else args[1:]  # after the value
        if name in _WIDTH_FILTERS:
            _check_args(rest)
            _check_args(kwargs.values())
        elif name == "format":
            _check_format(args[-len(rest) - 1] if rest or args else "", list(rest) + list(kwargs.values()))
        elif name == "join":
            value = args[-len(rest) - 1] if args else ()
            sep = rest[0] if rest else kwargs.get("d", "")
            if isinstance(value, (list, tuple, range, str)) and len(value) * (_sized(sep) + 1) > MAX_TEXT:
                raise PromptLimit(f"a template joined more than {MAX_TEXT:,} characters")
        return _check_size(f(*args, **kwargs))

    return wrapper


class BoundedSandbox(SandboxedEnvironment):
    """Jinja's sandbox, bounded in what one rendering may make or do: strings and lists of at most
    :data:`MAX_TEXT` (``*``, ``%``, ``**``, a filter's or method's width, a join), :data:`MAX_STEPS` loop
    iterations. Over a bound the rendering raises :class:`PromptLimit`."""

    intercepted_binops = frozenset({"*", "**", "%"})
    concat = staticmethod(lambda parts: _joined(parts, "the template's output"))  # every render: effects' too

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and \
                right * max(abs(left).bit_length(), 1) > _BIG_POWER:
            raise PromptLimit(f"a template raised {left} to the power {right}")
        if operator == "*" and ((isinstance(left, int) and _sized(right) * abs(left) > MAX_TEXT) or
                                (isinstance(right, int) and _sized(left) * abs(right) > MAX_TEXT)):
            raise PromptLimit(f"a template repeated a value to more than {MAX_TEXT:,}")
        if operator == "%" and isinstance(left, str):
            _check_format(left, right if isinstance(right, tuple) else (right,))
        return _check_size(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(__obj, "__name__", "")
        owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)  # str.format comes wrapped
        if isinstance(owner, str):
            if name in _WIDTH_METHODS:
                _check_args(args)
                _check_args(kwargs.values())
            elif name in ("format", "format_map"):
                _check_format(owner, list(args) + list(kwargs.values()))
            elif name == "join" and args and isinstance(args[0], (list, tuple, range)):
                if len(args[0]) * (len(owner) + 1) + sum(_sized(x) for x in args[0]) > MAX_TEXT:
                    raise PromptLimit(f"a template joined more than {MAX_TEXT:,} characters")
            elif name == "replace" and len(args) >= 2 and len(owner) * (_sized(args[1]) + 1) > MAX_TEXT:
                raise PromptLimit(f"a template's replace could make more than {MAX_TEXT:,} characters")
        return _check_size(super().call(__context, __obj, *args, **kwargs))

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):  # each loop's iterable through bounded_loop
            loop.iter = nodes.Call(nodes.ImportedName(f"{__name__}.bounded_loop"),
                                   [loop.iter, nodes.ContextReference()], [], None, None)
        result = _BoundedConcat().visit(tree)
        assert isinstance(result, nodes.Template)
        return result


def _joined(parts: Iterable[str], what: str) -> str:
    size, out = 0, []
    for part in parts:
        size += len(part)
        if size > MAX_TEXT:
            raise PromptLimit(f"{what} is longer than {MAX_TEXT:,} characters")
        out.append(part)
    return "".join(out)


def bounded_concat(*parts: object) -> str:
    """``a ~ b``: refused beyond MAX_TEXT before it is made (doubling a string in a few ``set`` lines)."""
    texts = [str(p) for p in parts]
    if sum(map(len, texts)) > MAX_TEXT:
        raise PromptLimit(f"a template made a value longer than {MAX_TEXT:,}")
    return "".join(texts)


class _BoundedConcat(NodeTransformer):
    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(nodes.ImportedName(f"{__name__}.bounded_concat"), list(node.nodes), [], None, None)


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

    def reads(self, name: str) -> bool:
        """Whether rendering may read ``name`` (a keyword of ``render``): a template of literal text and
        lookups reads only the names it looks up; any other is assumed to read every name."""
        parts = self.parts
        return parts is None or any(type(p) is tuple and p[0] == name for p in parts)

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
        return _joined(self.template.generate(context, **names), "the prompt")
