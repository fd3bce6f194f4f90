"""End to end: the example plugin docs/examples/natsd-audit, installed as a distribution.

The example is pip-installed into a temporary folder, and ``python -m natsd``
runs with that folder on ``PYTHONPATH``, so natsd finds the plugin only
through its ``natsd`` entry point, as it would find any third-party plugin.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import nats
import pytest

from natsd.server import free_port

pytestmark = pytest.mark.timeout(90)

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "natsd-audit"
OPS_TOKEN = "ops-secret-1"
TEAM_TOKEN = "team-secret-2"
START_TIMEOUT = 15.0


def audit_conf(tmp: Path) -> str:
    return f"""# natsd config for the audit plugin test
audit {{
  account: OPS
  tokens {{
    "{OPS_TOKEN}": OPS
    "{TEAM_TOKEN}": TEAM
  }}
  unix_socket: "{tmp}/natsd.sock"
  log_file: "{tmp}/audit.jsonl"
  bridge_subject: "audit.>"
}}
"""


# -- installing the example ------------------------------------------------------


def _builds_without_isolation() -> bool:
    """Can this environment build a setuptools wheel with --no-build-isolation?"""
    try:
        setuptools = tuple(int(x) for x in version("setuptools").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return False
    if setuptools >= (70, 1):  # bdist_wheel is part of setuptools from 70.1 on
        return True
    try:
        version("wheel")
    except PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the installed natsd-audit distribution (code and entry point)."""
    work = tmp_path_factory.mktemp("audit-install")
    src = work / "src"  # build from a copy: building leaves build/ and egg-info behind
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    if _builds_without_isolation():
        cmd.append("--no-build-isolation")
    # else pip fetches a build backend into an isolated environment (slower, needs the index).
    proc = subprocess.run([*cmd, str(src)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    eps = list(target.glob("natsd_audit-*.dist-info/entry_points.txt"))
    assert eps and "[natsd]" in eps[0].read_text(), "the natsd entry point was not installed"
    return target


# -- running natsd as a subprocess ------------------------------------------------


def env_with(site: Path) -> dict[str, str]:
    """This environment, with the installed example first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    return env


class Natsd:
    """A ``python -m natsd`` process; its stderr (the server log) goes to a file."""

    def __init__(self, site: Path, conf: Path) -> None:
        self.conf = conf
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.stderr_path = conf.with_suffix(".stderr")
        env = env_with(site)
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "natsd", "-c", str(conf), "-a", "127.0.0.1",
                 "-p", str(self.port)],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        # Wait for the log rather than probing the port: a probe would be a
        # connection, counted by the plugin's observer. natsd logs the port it
        # listens on, and "Server is ready" once listeners, bridges and startup
        # hooks have run.
        listening = f"Listening for client connections on 127.0.0.1:{self.port}"
        deadline = time.monotonic() + START_TIMEOUT
        while not (listening in (log := self.log()) and "Server is ready" in log):
            if self.proc.poll() is not None:
                pytest.fail(f"natsd exited with {self.proc.returncode}:\n{log}")
            if time.monotonic() > deadline:
                pytest.fail(f"natsd not ready within {START_TIMEOUT} s:\n{log}")
            time.sleep(0.02)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode


@pytest.fixture
def natsd_proc(site: Path, tmp_path: Path) -> Iterator[Callable[[str], Natsd]]:
    """``natsd_proc(conf_text)`` starts natsd with that config; all stop at the end."""
    started: list[Natsd] = []

    def start(conf_text: str) -> Natsd:
        conf = tmp_path / f"natsd{len(started)}.conf"
        conf.write_text(conf_text)
        server = Natsd(site, conf)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def audit(natsd_proc: Callable[[str], Natsd], tmp_path: Path) -> Natsd:
    """natsd with the audit block: token auth, Unix socket, journal in tmp_path."""
    server = natsd_proc(audit_conf(tmp_path))
    plugins_line = next(line for line in server.log().splitlines() if "Plugins:" in line)
    assert "audit" in plugins_line.split("Plugins:")[1]  # found by its entry-point name
    return server


# -- clients ----------------------------------------------------------------------


async def _quiet(exc: Exception) -> None:
    pass


async def connect(server: Natsd, token: str | None) -> Any:
    return await nats.connect(server.url, token=token, allow_reconnect=False,
                              max_reconnect_attempts=0, connect_timeout=2, error_cb=_quiet)


async def collect(nc: Any, subject: str) -> list[Any]:
    box: list[Any] = []

    async def cb(msg: Any) -> None:
        box.append(msg)

    await nc.subscribe(subject, cb=cb)
    await nc.flush(timeout=2)
    return box


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- tests ----------------------------------------------------------------------------


async def test_token_puts_clients_in_their_accounts(audit: Natsd) -> None:
    ops1, ops2, team = (await connect(audit, OPS_TOKEN), await connect(audit, OPS_TOKEN),
                        await connect(audit, TEAM_TOKEN))
    try:
        got_ops, got_team = await collect(ops1, "orders.>"), await collect(team, "orders.>")
        await ops2.publish("orders.new", b"from-ops")
        await team.publish("orders.new", b"from-team")
        for nc in (ops2, team, ops1):
            await nc.flush(timeout=2)
        await asyncio.sleep(0.1)
        assert [m.data for m in got_ops] == [b"from-ops"]     # same account: delivered
        assert [m.data for m in got_team] == [b"from-team"]   # other account: isolated
    finally:
        for nc in (ops1, ops2, team):
            await nc.close()


async def test_bad_token_is_refused_and_logged(audit: Natsd) -> None:
    with pytest.raises(Exception, match="Authorization Violation"):
        nc = await connect(audit, "not-a-known-token")
        await nc.close()
    assert wait_for(lambda: "audit: unknown auth_token" in audit.log()), audit.log()
    assert "not-a-known-token" not in audit.log()  # the secret itself is never logged


def test_unix_socket_listener(audit: Natsd, tmp_path: Path) -> None:
    path = tmp_path / "natsd.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        sock.connect(str(path))
        info = read_line(sock)
        assert info.startswith(b"INFO ") and json.loads(info[5:])["auth_required"] is True
        connect_msg = json.dumps({"auth_token": OPS_TOKEN, "verbose": False, "pedantic": False})
        sock.sendall(f"CONNECT {connect_msg}\r\nPING\r\n".encode())
        assert read_line(sock) == b"PONG\r\n"
    assert audit.stop() == 0
    assert not path.exists()  # the listener removed its socket file on shutdown


async def test_bridge_journal_and_stats_service(audit: Natsd, tmp_path: Path) -> None:
    ops, team = await connect(audit, OPS_TOKEN), await connect(audit, TEAM_TOKEN)
    try:
        for payload in (b"alice", b"bob", b"carol"):
            await ops.publish("audit.login", payload)
        await ops.publish("audit.logout", b"alice")
        await ops.publish("orders.new", b"o1")
        await ops.publish("orders.new", b"o2")
        await team.publish("audit.login", b"team-only")   # TEAM's own audit.>: not bridged
        for _ in range(4):
            await team.publish("team.work", b"w")
        await team.flush(timeout=2)
        await ops.flush(timeout=2)

        reply = await ops.request("audit.stats", b"", timeout=2)
        stats = json.loads(reply.data)
        assert stats["connections"] == {"total": 2, "open": 2, "refused": 0}
        ops_counts = {k: v for k, v in stats["messages"]["OPS"].items() if k != "audit.stats"}
        assert ops_counts == {"audit.login": 3, "audit.logout": 1, "orders.new": 2}
        assert stats["messages"]["TEAM"] == {"audit.login": 1, "team.work": 4}
        assert "audit-memory" in stats["storage_backends"]
        assert stats["stored"] >= 4
    finally:
        await ops.close()
        await team.close()

    journal = tmp_path / "audit.jsonl"

    def bridged() -> list[dict[str, Any]]:
        if not journal.exists():
            return []
        lines = [json.loads(line) for line in journal.read_text().splitlines()]
        return [r for r in lines if r["subject"] != "audit.stats"]

    assert wait_for(lambda: len(bridged()) >= 4), journal.read_text() if journal.exists() else ""
    assert [(r["subject"], r["payload"], r["account"]) for r in bridged()] == [
        ("audit.login", "alice", "OPS"), ("audit.login", "bob", "OPS"),
        ("audit.login", "carol", "OPS"), ("audit.logout", "alice", "OPS")]
    assert "team-only" not in journal.read_text()


@pytest.mark.parametrize(("body", "line", "key"), [
    ('  log_file: "{tmp}/audit.jsonl"\n  bridge_subject: "audit..bad"\n', 4, "bridge_subject"),
    ('  tokens {{\n    "{tok}": OPS\n    "short": TEAM\n  }}\n', 5, "short"),
    ('  colour: blue\n', 3, "colour"),
], ids=["bad-subject", "short-token", "unknown-key"])
def test_bad_audit_block_stops_natsd(site: Path, tmp_path: Path, body: str, line: int,
                                     key: str) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("port: 4222\naudit {\n" + body.format(tmp=tmp_path, tok=OPS_TOKEN) + "}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "natsd", "-c", str(conf), "-a", "127.0.0.1", "-p", str(free_port())],
        env=env_with(site), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    assert proc.returncode != 0
    assert f"{conf}:{line}" in proc.stderr and f"key '{key}'" in proc.stderr, proc.stderr


def test_plugin_inactive_without_audit_block(natsd_proc: Callable[[str], Natsd]) -> None:
    server = natsd_proc("# installed but not configured: no audit block\nmax_payload: 65536\n")
    plugins_line = next(line for line in server.log().splitlines() if "Plugins:" in line)
    assert "audit" not in plugins_line
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
        sock.settimeout(3)
        info = json.loads(read_line(sock)[5:])
        assert "auth_required" not in info and info["max_payload"] == 65536
        sock.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')  # no token needed
        assert read_line(sock) == b"PONG\r\n"
