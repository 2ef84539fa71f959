"""Shared fixtures: the `small` sample generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from clustering.io.sample_data import write_sample_data


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with the three inputs of the `small` preset (seed 0) and its truth/ folder."""
    folder = tmp_path_factory.mktemp("small")
    write_sample_data(folder, preset="small", seed=0)
    return folder
