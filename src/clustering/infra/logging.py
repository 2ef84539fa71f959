"""The pipeline's ``clustering`` logger: level and rotating log file from the configuration.

Every module logs through ``logging.getLogger(__name__)`` under the ``clustering`` package, so
configuring that one logger covers them all. Records still propagate to the root logger, where
Dagster's captured logs, the CLI's console handler and pytest's ``caplog`` see them.
"""

from __future__ import annotations

import logging
import os
import threading
from logging.handlers import RotatingFileHandler
from pathlib import Path

from clustering.core.errors import ConfigError
from clustering.infra.config import AppConfig

LOGGER_NAME = "clustering"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_LOG_BYTES = 10 * 1024 * 1024
"""A log file rotates at this size; ``BACKUP_COUNT`` older files are kept beside it."""
BACKUP_COUNT = 5

_lock = threading.Lock()


class _PipelineFileHandler(RotatingFileHandler):
    """The file handler this module installs; its type tells it apart from anyone else's."""


def configure_logging(config: AppConfig) -> logging.Logger:
    """Set the ``clustering`` logger's level and log file from ``config.logging``; return it.

    Idempotent: a second call with the same file keeps the one handler; a call with another
    file (or none) closes and replaces the previous one, so one process can switch
    environments. Raises :class:`ConfigError` when the log file cannot be created.
    """
    logger = logging.getLogger(LOGGER_NAME)
    wanted = config.logging.file
    with _lock:
        logger.setLevel(config.logging.level)
        for handler in [h for h in logger.handlers if isinstance(h, _PipelineFileHandler)]:
            # baseFilename is os.path.abspath of the path given: compare the same way.
            if wanted is not None and handler.baseFilename == os.path.abspath(wanted):
                return logger
            logger.removeHandler(handler)
            handler.close()
        if wanted is not None:
            logger.addHandler(_file_handler(wanted))
    return logger


def _file_handler(path: Path) -> _PipelineFileHandler:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Opened now (delay=False) so an unwritable location fails here, in one sentence,
        # rather than as a stream of "--- Logging error ---" reports on stderr later.
        handler = _PipelineFileHandler(
            path, maxBytes=MAX_LOG_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8"
        )
    except OSError as exc:
        raise ConfigError(
            f"logging.file: cannot write the log file '{path}': {exc.strerror or exc}."
        ) from None
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    return handler
