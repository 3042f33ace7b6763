"""The service config file (YAML): `models:` (LiteLLM model groups), `tools:` and `effects:` (connectors).

Secrets appear only as references (`os.environ/NAME` for model keys, `${env:NAME}` in tool settings);
an invalid config fails at start with the key path and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from engine.ports import ModelGateway, ToolConnector


def load_config(path: Path) -> dict[str, Any]:
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError) as e:
        raise ValueError(f"{path}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the config is a YAML mapping")
    unknown = sorted(set(data) - {"models", "tools", "effects"})
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown} (known: models, tools, effects)")
    return data


def model_gateway(config: dict[str, Any], path: Path) -> ModelGateway | None:
    section = config.get("models")
    if section is None:
        return None
    from adapters.llm.gateway import LiteLLMGateway, ModelsConfig

    if not isinstance(section, dict):
        raise ValueError(f"{path}: models: a mapping with model_list")
    return LiteLLMGateway(ModelsConfig.from_dict(section, f"{path}: models"))


def tool_connectors(config: dict[str, Any], path: Path) -> ToolConnector | None:
    section = config.get("tools")
    if section is None:
        return None
    from adapters.tools.connectors import build_tools

    if not isinstance(section, dict):
        raise ValueError(f"{path}: tools: a mapping of connector name -> settings")
    return build_tools(section, path.parent, f"{path}: tools")


def effect_connectors(config: dict[str, Any], path: Path) -> dict[str, Any]:
    section = config.get("effects")
    if section is None:
        return {}
    from adapters.effects import build_effects

    if not isinstance(section, dict):
        raise ValueError(f"{path}: effects: a mapping of effect name -> settings")
    return build_effects(section, path.parent, f"{path}: effects")
