"""Logging in nats-server's format: ``[pid] 2006/01/02 15:04:05.000000 [INF] text``.

natsd logs through the standard :mod:`logging` package under the ``natsd``
logger, so an embedding application can route it anywhere; the command line
installs this format. ``-D`` enables debug and ``-V`` the protocol trace
(level ``TRACE``, below ``DEBUG``).
"""

from __future__ import annotations

import logging
import os
import sys
import time

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_LEVELS = {TRACE: "TRC", logging.DEBUG: "DBG", logging.INFO: "INF",
           logging.WARNING: "WRN", logging.ERROR: "ERR", logging.CRITICAL: "FTL"}


class NatsFormatter(logging.Formatter):
    """Formats records as nats-server prints its log lines."""

    def __init__(self, logtime: bool = True) -> None:
        super().__init__()
        self.logtime = logtime
        self.pid = os.getpid()

    def format(self, record: logging.LogRecord) -> str:
        level = _LEVELS.get(record.levelno, record.levelname[:3])
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if not self.logtime:
            return f"[{self.pid}] [{level}] {text}"
        ts = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(record.created))
        return f"[{self.pid}] {ts}.{int(record.created % 1 * 1e6):06d} [{level}] {text}"


def configure(debug: bool = False, trace: bool = False, logtime: bool = True,
              log_file: str | None = None) -> None:
    """Send the ``natsd`` loggers to stderr or ``log_file`` at the requested level."""
    handler: logging.Handler
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(NatsFormatter(logtime))
    logger = logging.getLogger("natsd")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(TRACE if trace else logging.DEBUG if debug else logging.INFO)
    logger.propagate = False
