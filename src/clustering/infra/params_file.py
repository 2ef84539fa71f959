"""Pipeline parameters from a YAML or JSON file, validated once into typed models."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from clustering.core.errors import ConfigError
from clustering.core.params import parse_params


def read_params_file(path: Path) -> dict[str, object]:
    """The mapping in ``path`` (YAML or JSON), checked against :class:`PipelineParams`."""
    if not path.is_file():
        raise ConfigError(f"parameters file '{path}' does not exist.")
    text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        first_line = str(exc).splitlines()[0]
        raise ConfigError(f"parameters file '{path}' cannot be parsed: {first_line}.") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"parameters file '{path}' must hold a mapping of parameter names.")
    parse_params(raw, source=f"parameters file '{path}'")
    return raw or {}
