"""``natsd --workers N``: N natsd processes on one client port, clustered over loopback.

Python routes messages on one thread per process; workers are how one natsd
uses every core of a machine. The parent process (the supervisor) picks the
client port and a loopback route port, then starts N copies of the same
command line, each with ``--worker INDEX:COUNT:SEED:NAME``: every worker listens
on the client port with ``SO_REUSEPORT`` (the kernel spreads connections over
them) and joins a cluster whose seed is worker 0's route port, so a message
published to one worker reaches subscribers of all of them in one hop.

The supervisor passes SIGHUP (reload), SIGUSR1 (reopen the log) and SIGUSR2
(lame duck) to every worker, stops them all on SIGTERM or SIGINT, and starts
a worker again when one dies. Worker 0 alone serves the monitoring port; the
system account's ``$SYS.REQ.SERVER.PING.*`` requests reach every worker.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("natsd.workers")

RESTART_DELAY = 1.0
"""Seconds before a worker that died is started again."""
STOP_TIMEOUT = 15.0
STARTUP_GRACE = 5.0
"""A worker that exits with an error status this soon after the start stops them all."""
FORWARDED = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
# Flags a worker other than the first must not get (one monitoring port, one pid file).
_MONITOR_FLAGS = ("-m", "--http_port", "-ms", "--https_port")
_PID_FLAGS = ("-P", "--pid", "--ports_file_dir")
MONITOR_KEYS = ("http", "http_port", "monitor_port", "https", "https_port")


@dataclass(frozen=True)
class WorkerSpec:
    """What ``--worker INDEX:COUNT:SEED:NAME`` tells one worker process."""

    index: int
    count: int
    seed_port: int
    cluster_name: str

    @classmethod
    def parse(cls, text: str) -> WorkerSpec:
        index, count, seed, name = text.split(":", 3)
        return cls(int(index), int(count), int(seed), name)

    def __str__(self) -> str:
        return f"{self.index}:{self.count}:{self.seed_port}:{self.cluster_name}"

    def cluster_block(self) -> dict[str, Any]:
        """The internal cluster every worker joins (worker 0 is its seed)."""
        if self.index == 0:
            return {"name": self.cluster_name, "listen": f"127.0.0.1:{self.seed_port}"}
        return {"name": self.cluster_name, "listen": "127.0.0.1:-1",
                "routes": [f"nats-route://127.0.0.1:{self.seed_port}"]}


def worker_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"workers: expected a positive number, got {value!r}")
    return value


def apply_worker(text: str, blocks: Any) -> None:
    """``--worker``: the worker's place; workers after the first drop the monitoring port."""
    spec = WorkerSpec.parse(text)
    blocks["workers"] = str(spec)
    if spec.index > 0:
        for key in MONITOR_KEYS:
            blocks.pop(key, None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _without(argv: list[str], flags: tuple[str, ...], *, with_value: bool = True) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in flags:
            skip = with_value and "=" not in arg
            continue
        out.append(arg)
    return out


def supervise(config: Any, argv: list[str], count: int) -> int:
    """Run ``count`` workers until SIGTERM/SIGINT; returns the exit code."""
    port = config.port if config.port > 0 else _free_port()
    seed = _free_port()
    name = (config.blocks.get("cluster") or {}).get("name") if isinstance(
        config.blocks.get("cluster"), Mapping) else None
    spec_name = name or f"natsd-workers-{secrets.token_hex(4)}"
    base = _without(argv, ("--workers",))
    base = _without(base, ("-p", "--port"))
    host_args = [] if any(a in ("-a", "--addr", "--net") for a in base) else ["-a", config.host or "0.0.0.0"]

    def command(index: int) -> list[str]:
        args = list(base)
        if index > 0:
            args = _without(args, _MONITOR_FLAGS)
        args = _without(args, _PID_FLAGS)
        return [sys.executable, "-m", "natsd", *args, *host_args, "-p", str(port), "--reuse_port",
                "-P", "", "--ports_file_dir", "",
                "--worker", str(WorkerSpec(index, count, seed, spec_name))]

    if config.pid_file:
        with open(config.pid_file, "w") as fh:
            fh.write(str(os.getpid()))
    stopping = False
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, *FORWARDED):
        signal.signal(signum, on_signal)
    log.info("Starting %d natsd workers on port %d", count, port)
    procs: dict[int, subprocess.Popen[bytes]] = {}
    first_start = time.monotonic()
    code = 0
    for index in range(count):
        procs[index] = subprocess.Popen(command(index))
        if index == 0:
            _wait_listening(port, procs[0])  # the seed first, so the others find it at once
    restarts: dict[int, float] = {}
    try:
        while not stopping:
            time.sleep(0.1)
            while received:
                number = received.pop(0)
                if number in (signal.SIGTERM, signal.SIGINT):
                    stopping = True
                    break
                for proc in procs.values():
                    if proc.poll() is None:
                        proc.send_signal(number)
            for index, proc in list(procs.items()):
                if stopping or proc.poll() is None:
                    continue
                if proc.returncode > 0 and time.monotonic() - first_start < STARTUP_GRACE:
                    # A worker that fails as it starts (bad config, port taken) would fail
                    # again: stop them all rather than restart it in a loop. One killed by
                    # a signal is started again.
                    log.error("worker %d could not start (exit status %d); stopping", index,
                              proc.returncode)
                    code, stopping = 1, True
                    break
                due = restarts.setdefault(index, time.monotonic() + RESTART_DELAY)
                if time.monotonic() >= due:
                    log.warning("worker %d exited with %s; starting it again", index, proc.returncode)
                    restarts.pop(index)
                    procs[index] = subprocess.Popen(command(index))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if config.pid_file:
            try:
                os.unlink(config.pid_file)
            except FileNotFoundError:
                pass
    return code


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
