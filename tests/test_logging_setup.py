"""The ``clustering`` logger: level and log file from the configuration, set up once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from logging.handlers import RotatingFileHandler
from pathlib import Path

import pytest

from clustering.core.errors import ConfigError
from clustering.infra.config import AppConfig, load_config
from clustering.infra.logging import LOGGER_NAME, configure_logging


@pytest.fixture(autouse=True)
def restore_logger() -> Iterator[None]:
    """Leave the shared ``clustering`` logger as found: no open log file, level unset."""
    logger = logging.getLogger(LOGGER_NAME)
    before_handlers, before_level = list(logger.handlers), logger.level
    yield
    for handler in [h for h in logger.handlers if h not in before_handlers]:
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(before_level)


def config_with(root: Path, level: str, file: str | None) -> AppConfig:
    return load_config(
        "dev", overrides={"logging": {"level": level, "file": file}}, project_root=root
    )


def file_handlers(logger: logging.Logger) -> list[RotatingFileHandler]:
    return [h for h in logger.handlers if isinstance(h, RotatingFileHandler)]


def test_level_and_file_come_from_the_config(tmp_path: Path) -> None:
    logger = configure_logging(config_with(tmp_path, "debug", "logs/nested/run.log"))

    assert logger.name == "clustering"
    assert logger.level == logging.DEBUG
    log_file = tmp_path / "logs" / "nested" / "run.log"
    assert log_file.is_file()  # folders created, file opened up front

    logging.getLogger("clustering.core.engine").debug("k chosen for %s", "CANDY/SNACKS")
    for handler in logger.handlers:
        handler.flush()
    line = log_file.read_text(encoding="utf-8").strip()
    assert line.endswith("DEBUG clustering.core.engine: k chosen for CANDY/SNACKS")


def test_level_filters_what_is_written(tmp_path: Path) -> None:
    logger = configure_logging(config_with(tmp_path, "WARNING", "app.log"))
    logger.info("not written")
    logger.warning("written")
    for handler in logger.handlers:
        handler.flush()
    assert (tmp_path / "app.log").read_text(encoding="utf-8").count("written") == 1


def test_configuring_twice_keeps_one_handler(tmp_path: Path) -> None:
    config = config_with(tmp_path, "INFO", "logs/dev.log")
    configure_logging(config)
    logger = configure_logging(config)
    assert len(file_handlers(logger)) == 1

    logger.info("once")
    for handler in logger.handlers:
        handler.flush()
    assert (tmp_path / "logs" / "dev.log").read_text(encoding="utf-8").count("once") == 1


def test_another_file_replaces_the_previous_handler(tmp_path: Path) -> None:
    logger = configure_logging(config_with(tmp_path, "INFO", "logs/staging.log"))
    first = file_handlers(logger)[0]
    logger = configure_logging(config_with(tmp_path, "ERROR", "logs/prod.log"))

    [handler] = file_handlers(logger)
    assert handler.baseFilename == str(tmp_path / "logs" / "prod.log")
    assert first.stream is None  # the old file was closed, not leaked
    assert logger.level == logging.ERROR


def test_no_file_means_no_file_handler(tmp_path: Path) -> None:
    configure_logging(config_with(tmp_path, "INFO", "x.log"))
    logger = configure_logging(config_with(tmp_path, "INFO", None))
    assert file_handlers(logger) == []


def test_dev_config_logs_to_logs_dev_log(tmp_path: Path) -> None:
    configure_logging(load_config("dev", project_root=tmp_path))
    assert (tmp_path / "logs" / "dev.log").is_file()


def test_unwritable_log_location_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"^logging\.file: cannot write the log file '.*run\.log'"
    ):
        configure_logging(config_with(tmp_path, "INFO", "blocker/run.log"))
