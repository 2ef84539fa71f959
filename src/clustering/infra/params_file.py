"""Pipeline parameters from a YAML or JSON file, validated once into typed models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from clustering.core.errors import ConfigError
from clustering.core.params import parse_params


def read_mapping_file(path: Path, what: str, expected: str) -> dict[str, Any]:
    """The mapping in the YAML (or ``.json``) file ``path``; one sentence naming ``what`` (e.g.
    "run config file") when it is missing, cannot be parsed or holds no mapping (``expected``
    says what it should hold). An empty file is an empty mapping."""
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' does not exist.")
    text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        first_line = str(exc).splitlines()[0]
        raise ConfigError(f"{what} '{path}' cannot be parsed: {first_line}.") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{what} '{path}' must hold {expected}.")
    return raw or {}


def read_params_file(path: Path) -> dict[str, object]:
    """The mapping in ``path`` (YAML or JSON), checked against :class:`PipelineParams`."""
    raw = read_mapping_file(path, "parameters file", "a mapping of parameter names")
    parse_params(raw, source=f"parameters file '{path}'")
    return raw
