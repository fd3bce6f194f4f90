"""Logging in nats-server's format: ``[pid] 2006/01/02 15:04:05.000000 [INF] text``.

natsd logs through the standard :mod:`logging` package under the ``natsd``
logger, so an embedding application can route it anywhere; the command line
installs this format. ``-D`` enables debug and ``-V`` the protocol trace
(level ``TRACE``, below ``DEBUG``); as in nats-server, ``-V`` alone shows the
trace without the debug lines.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_LEVELS = {TRACE: "TRC", logging.DEBUG: "DBG", logging.INFO: "INF",
           logging.WARNING: "WRN", logging.ERROR: "ERR", logging.CRITICAL: "FTL"}


class NatsFormatter(logging.Formatter):
    """Formats records as nats-server prints its log lines (``utc``: ``logtime_utc``)."""

    def __init__(self, logtime: bool = True, utc: bool = False) -> None:
        super().__init__()
        self.logtime = logtime
        self.utc = utc
        self.pid = os.getpid()

    def format(self, record: logging.LogRecord) -> str:
        level = _LEVELS.get(record.levelno, record.levelname[:3])
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if not self.logtime:
            return f"[{self.pid}] [{level}] {text}"
        ts = time.strftime("%Y/%m/%d %H:%M:%S",
                           (time.gmtime if self.utc else time.localtime)(record.created))
        return f"[{self.pid}] {ts}.{int(record.created % 1 * 1e6):06d} [{level}] {text}"


class RotatingLogFile(logging.FileHandler):
    """``log_file`` with nats-server's size-based rotation and reopen-on-signal.

    When a record would take the file past ``size_limit`` bytes, the file is
    renamed to ``<log_file>.<YYYY.MM.DD.HH.MM.SS.micros>`` and a new one is
    started; ``max_num`` (if not 0) bounds how many rotated files are kept.
    :meth:`reopen` (SIGUSR1, ``natsd --signal reopen``) reopens the file by
    name, for ``logrotate``'s move-then-signal.
    """

    def __init__(self, path: str, size_limit: int = 0, max_num: int = 0) -> None:
        super().__init__(path, delay=False)
        self.size_limit = size_limit
        self.max_num = max_num

    def emit(self, record: logging.LogRecord) -> None:
        if self.size_limit > 0 and self.stream is not None:
            try:
                if self.stream.tell() >= self.size_limit:
                    self.rotate()
            except (OSError, ValueError):
                self.handleError(record)
        super().emit(record)

    def rotate(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
                self.stream = None
            now = time.time()
            stamp = time.strftime("%Y.%m.%d.%H.%M.%S", time.localtime(now))
            os.replace(self.baseFilename, f"{self.baseFilename}.{stamp}.{int(now % 1 * 1e6):06d}")
            self.stream = self._open()
            if self.max_num > 0:
                self._prune()
        finally:
            self.release()

    def _prune(self) -> None:
        directory, base = os.path.split(self.baseFilename)
        old = sorted(n for n in os.listdir(directory or ".") if n.startswith(base + "."))
        for name in old[:-self.max_num]:
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass

    def reopen(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            self.stream = self._open()
        finally:
            self.release()


def _no_debug(record: logging.LogRecord) -> bool:
    return record.levelno != logging.DEBUG


def configure(debug: bool = False, trace: bool = False, logtime: bool = True,
              log_file: str | None = None, size_limit: int = 0, max_num: int = 0,
              utc: bool = False) -> None:
    """Send the ``natsd`` loggers to stderr or ``log_file`` at the requested level.

    ``trace`` without ``debug`` shows the trace and not the debug lines, as nats-server's ``-V``.
    """
    handler: logging.Handler
    if log_file:
        handler = RotatingLogFile(log_file, size_limit, max_num)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(NatsFormatter(logtime, utc))
    if trace and not debug:
        handler.addFilter(_no_debug)
    logger = logging.getLogger("natsd")
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    logger.addHandler(handler)
    logger.setLevel(TRACE if trace else logging.DEBUG if debug else logging.INFO)
    logger.propagate = False


def configure_from(config: Any) -> None:
    """:func:`configure` with a :class:`~natsd.config.ServerConfig`'s logging settings."""
    configure(config.debug, config.trace, config.logtime, config.log_file,
              config.logfile_size_limit, config.logfile_max_num, config.logtime_utc)


def installed() -> bool:
    """True if natsd's own handler is in place (the command line installed it)."""
    return any(isinstance(h.formatter, NatsFormatter) for h in logging.getLogger("natsd").handlers)


def reopen() -> None:
    """Reopen the log file (after ``logrotate`` moved it)."""
    for handler in logging.getLogger("natsd").handlers:
        if isinstance(handler, RotatingLogFile):
            handler.reopen()


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", '"': '\\"', "\\": "\\\\"}


def go_quote(data: bytes) -> str:
    """``data`` as Go's ``%q`` prints it (how nats-server traces payloads): a double-quoted
    string, printable UTF-8 as is, invalid bytes as ``\\xff``, other runes escaped."""
    out = ['"']
    for ch in data.decode("utf-8", errors="surrogateescape"):
        code = ord(ch)
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
