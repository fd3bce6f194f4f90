"""What one client can do to everybody else: the harness.

Each test starts natsd as its own process (``python -m natsd``), so that the
attacking client, the measuring client and the server do not share an
interpreter, and watches a *bystander*: a separate client that sends a PING
every 10 ms and records how long each PONG takes. A server that stalls for
everyone shows up as a long round trip there, whatever the attacker does.
After each test the server's log must hold no traceback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class NatsdProcess:
    """natsd in a child process on a free port, with its log in a file."""

    def __init__(self, workdir: Path, conf_text: str | None = None) -> None:
        self.port = free_port()
        self.log_path = workdir / f"natsd-{self.port}.log"
        cmd = [sys.executable, "-m", "natsd", "-a", HOST, "-p", str(self.port)]
        if conf_text is not None:
            conf = workdir / f"natsd-{self.port}.conf"
            conf.write_text(conf_text)
            cmd += ["-c", str(conf)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"natsd exited: {self.log()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5) as s:
                    if s.recv(4096).startswith(b"INFO"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"natsd did not listen: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def connect(port: int, connect_line: bytes = b'CONNECT {"verbose":false}\r\n',
            rcvbuf: int = 0, timeout: float = 5) -> socket.socket:
    """A raw client: connected, INFO read, CONNECT sent."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect((HOST, port))
    sock.recv(4096)
    sock.sendall(connect_line)
    return sock


def roundtrip(sock: socket.socket) -> bytes:
    """PING, and everything read up to the PONG."""
    sock.sendall(b"PING\r\n")
    data = b""
    while not data.endswith(b"PONG\r\n"):
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError(f"closed by the server after {data[-200:]!r}")
        data += chunk
    return data


class Bystander:
    """A client that measures PING round trips every 10 ms on its own thread."""

    def __init__(self, port: int, connect_line: bytes = b'CONNECT {"verbose":false}\r\n') -> None:
        self.sock = connect(port, connect_line)
        roundtrip(self.sock)
        self.rtts: list[float] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                roundtrip(self.sock)
                self.rtts.append(time.perf_counter() - t0)
                self._stop.wait(0.01)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> float:
        """Stop measuring; the longest round trip in seconds."""
        self._stop.set()
        self._thread.join(30)
        self.sock.close()
        if self.error is not None:
            raise AssertionError(f"the bystander lost its connection: {self.error}")
        assert self.rtts, "the bystander measured nothing"
        return max(self.rtts)


@pytest.fixture
def natsd_proc() -> Iterator[object]:
    """``natsd_proc(conf_text=None)`` starts natsd; all are stopped after the test, and
    their logs must not hold a traceback."""
    started: list[NatsdProcess] = []
    workdir = Path(tempfile.mkdtemp(prefix="natsd-robust-"))

    def start(conf_text: str | None = None) -> NatsdProcess:
        proc = NatsdProcess(workdir, conf_text)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.terminate()
        log = proc.log()
        assert "Traceback" not in log, log[-4000:]


def long_mode() -> bool:
    """``NATSD_ROBUSTNESS=long``: the long fuzz run (see README)."""
    return os.environ.get("NATSD_ROBUSTNESS") == "long"
