"""Shared fixtures: the `small` sample generated once per test session, a PostgreSQL server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_server import PostgresServer, require_bin_dir, running_server

from clustering.infra import config as config_module
from clustering.sample.files import write_sample_data


@pytest.fixture
def clean_clustering_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No CLUSTERING_* variable from the developer's shell; os.environ restored afterwards
    (loading a config may write values from .env files into it)."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("CLUSTERING_"):
            del os.environ[name]
    monkeypatch.setattr(config_module, "_dotenv_written", {})
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with the three inputs of the `small` preset (seed 0) and its truth/ folder."""
    folder = tmp_path_factory.mktemp("small")
    write_sample_data(folder, preset="small", seed=0)
    return folder


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server on loopback for the whole session (see postgres_server.py)."""
    with running_server(require_bin_dir()) as server:
        yield server
