"""models: and tools: - the actions a rule can call, their prompts, parameters and answer types."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from engine.errors import BatonError, Where
from engine.language.check import check_value, compile_expr, suggest
from engine.language.expr import ExprError, Lit, Ref, parse
from engine.language.prompts import Prompt
from engine.language.sections.base import JINJA, LoaderBase
from engine.language.sections.facts import NAME
from engine.language.shape import MODEL, MODEL_ENTRY, RULESET, TOOL, TOOL_ENTRY
from engine.language.source import plain
from engine.language.types import FactType
from engine.model import ModelAction, ToolAction


class ActionsLoader(LoaderBase):
    """models: and tools:."""

    def load_models(self, doc: Any, types: dict[str, FactType]) -> dict[str, ModelAction]:
        out: dict[str, ModelAction] = {}
        models = self.container(doc, "models", RULESET.keys["models"])
        for key in models or {}:
            spec = self.action_spec(models, key, "model")
            if spec is None:
                continue
            aname, where = str(key), self.pos.key(models, key)
            self.check_keys(spec, MODEL, f"model '{aname}'")
            produces = self.type_ref(spec, "produces", types, f"model '{aname}'") \
                if self.require(spec, MODEL, f"model '{aname}'", where, "produces") else ""
            group = spec.get("group") if self.require(spec, MODEL, f"model '{aname}'", where, "group") else ""
            from_document = self.take(spec, MODEL, "from_document")
            chunk_chars = self.take(spec, MODEL, "chunk_chars")
            prompt, template = self.model_prompt(aname, spec, where, types, from_document)
            retries = self.take(spec, MODEL, "retries")
            timeout = self.take(spec, MODEL, "timeout")
            out[aname] = ModelAction(aname, str(group), produces, prompt, template, retries, timeout,
                                     where, from_document, chunk_chars)
        return out

    def model_prompt(self, aname: str, spec: Any, where: Where, types: dict[str, FactType],
                     from_document: bool) -> tuple[str, Prompt | None]:
        """A model's prompt: its text and, when it compiles and names only fact types, its template."""
        template = None
        if not self.require(spec, MODEL, f"model '{aname}'", where, "prompt"):
            return "", None
        prompt = str(spec["prompt"])
        if self.check_template(prompt, spec, "prompt", types, {"chunk"} if from_document else set()):
            template = Prompt(JINJA, prompt)
        if from_document and template is not None and not re.search(r"chunk\s*(\.\s*text\b|\[\s*['\"]text)",
                                                                    prompt):
            self.error("missing_key", f"model '{aname}' reads a document: its prompt must include "
                       "{{ chunk.text }}", self.pos.text_start(spec, "prompt"))
        return prompt, template

    def action_spec(self, actions: dict[Any, Any], key: Any, what: str) -> dict[Any, Any] | None:
        """The mapping of a model or tool (``what``), when its name can name an action and it is a mapping;
        else None, reported."""
        aname, where = str(key), self.pos.key(actions, key)
        if not NAME.match(aname):
            self.error("bad_name", f"'{aname}' cannot name an action", where, "letters, digits and _")
            return None
        if aname in {"decide", "escalate", "assert"}:
            self.error("bad_name", f"'{aname}' is a built-in action", where)
            return None
        spec: dict[Any, Any] | None = self.entry(actions, key, MODEL_ENTRY if what == "model" else TOOL_ENTRY,
                                                 f"{what} '{aname}'")
        return spec

    def load_tools(self, doc: Any, types: dict[str, FactType]) -> dict[str, ToolAction]:
        out: dict[str, ToolAction] = {}
        tools = self.container(doc, "tools", RULESET.keys["tools"])
        models = doc.get("models")
        for key in tools or {}:
            spec = self.action_spec(tools, key, "tool")
            if spec is None:
                continue
            aname, where = str(key), self.pos.key(tools, key)
            if isinstance(models, dict) and aname in models:
                self.error("duplicate_action", f"'{aname}' is both a model and a tool action", where)
                continue
            connector = spec["connector"] if self.require(spec, TOOL, f"tool '{aname}'", where, "connector") else ""
            produces = self.type_ref(spec, "produces", types, f"tool '{aname}'") \
                if self.require(spec, TOOL, f"tool '{aname}'", where, "produces") else ""
            params: dict[str, Callable[..., object]] = {}
            texts: dict[str, str] = {}
            raw_params = self.container(spec, "params", TOOL.keys["params"]) or {}
            for pname, ptext in raw_params.items():
                ev = self.param_expr(raw_params, str(pname), ptext, types)
                if ev is not None:
                    params[str(pname)], texts[str(pname)] = ev, str(ptext)
            config = {str(k): plain(v) for k, v in spec.items() if str(k) not in TOOL.keys}
            retries = self.take(spec, TOOL, "retries")
            timeout = self.take(spec, TOOL, "timeout")
            out[aname] = ToolAction(aname, str(connector), produces, config, params, texts, retries,
                                    timeout, where)
        return out

    def param_expr(self, parent: Any, key: str, text: Any, types: dict[str, FactType]) -> Any:
        start = self.pos.text_start(parent, key)
        if isinstance(text, (int, float, bool)):
            value = text
            return lambda env, wm: value
        if not isinstance(text, str):
            self.error("bad_value", f"param '{key}' must be a field reference like claim.policy_ref or a value",
                       start)
            return None
        if text.startswith("="):
            self.current = f"tool param '{key}'"
            try:
                return check_value(parse(text[1:]), types, {}, None)[1]
            except ExprError as e:
                self.expr_error(e, start, text, 1, f"param '{key}': ")
                return None
        try:
            node = parse(text)
            if not isinstance(node, (Ref, Lit)):
                raise ExprError("bad_value", "a param is a field reference (claim.policy_ref) or a literal", 0)
            if isinstance(node, Ref):
                ft = types.get(node.binding)
                if ft is None:
                    raise ExprError("unknown_fact_type", f"unknown fact type '{node.binding}'", node.pos,
                                    suggest(node.binding, list(types)))
                if node.field not in ft.fields:
                    raise ExprError("unknown_field", f"{ft.name} has no field '{node.field}'",
                                    node.pos + len(node.binding) + 1, suggest(node.field, list(ft.fields)))
            return compile_expr(node, {})
        except ExprError as e:
            self.errors.append(BatonError(e.code, e.message, start.shifted(text, e.offset), e.hint))
            return None
