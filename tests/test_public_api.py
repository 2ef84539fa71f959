"""The package uses Dagster's public API only, and its layers import downwards only."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "clustering"

#: Which packages each layer may import (besides itself and the standard library).
ALLOWED = {
    "core": {"core"},
    "infra": {"core", "infra"},
    "io": {"core", "infra", "io"},
    "dagster": {"core", "infra", "io", "dagster"},
    "cli": {"core", "infra", "io", "dagster", "cli", "sample"},
    "sample": {"core", "io", "sample"},
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _private_dagster(name: str) -> bool:
    """``dagster._core…``, ``dagster_postgres._…`` or ``dagster_shared`` (Dagster's internals)."""
    root, *rest = name.split(".")
    if not root.startswith("dagster"):
        return False
    return root == "dagster_shared" or any(part.startswith("_") for part in rest)


def test_no_private_dagster_module_is_imported() -> None:
    assert _private_dagster("dagster._core.definitions")  # the test can fail
    offenders = [
        f"{path.relative_to(SRC)}: {name}"
        for path in sorted(SRC.rglob("*.py"))
        for name in _imports(path)
        if _private_dagster(name)
    ]
    assert offenders == []


def test_layers_import_downwards_only() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).parts
        if len(parts) < 2 or parts[0] not in ALLOWED:
            continue
        for name in _imports(path):
            if name.startswith("clustering."):
                target = name.split(".")[1]
                if target not in ALLOWED[parts[0]]:
                    offenders.append(f"{path.relative_to(SRC)} imports {name}")
    assert offenders == []
