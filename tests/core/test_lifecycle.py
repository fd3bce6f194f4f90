"""Process lifecycle: signals, ``natsd --signal``, pid and ports files, log files."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from natsd.config import log as natsd_log
from natsd import signals
from natsd.config import ConfigError, load
from natsd.testing import read_until


def _wait(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def natsd_process(tmp_path):
    """Start ``python -m natsd -c natsd.config.conf`` with a pid file and a log file."""
    procs: list[subprocess.Popen] = []

    def start(conf: str) -> tuple[subprocess.Popen, dict]:
        path = tmp_path / "natsd.conf"
        path.write_text(conf)
        pid_file, log_file = tmp_path / "natsd.pid", tmp_path / "natsd.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "natsd", "-c", str(path), "-a", "127.0.0.1", "-p", "0",
             "-P", str(pid_file), "-l", str(log_file), "--ports_file_dir", str(tmp_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        ports = tmp_path / f"natsd_{proc.pid}.ports"
        _wait(lambda: ports.exists() or proc.poll() is not None, 10, "the ports file")
        assert proc.poll() is None, proc.stderr.read().decode()
        return proc, {"conf": path, "pid": pid_file, "log": log_file, "ports": ports}

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        proc.stderr.close()


def _signal(command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "natsd", "--signal", command],
                          capture_output=True, text=True, timeout=10)


def test_signal_commands_reach_the_process(natsd_process):
    proc, files = natsd_process("authorization { token: one }\n")
    ports = json.loads(files["ports"].read_text())
    url = ports["nats"][0]
    assert url.startswith("nats://127.0.0.1:")
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    assert files["pid"].read_text() == str(proc.pid)

    sock = socket.create_connection((host, int(port)), timeout=3)
    read_until(sock, b"\r\n")
    sock.sendall(b'CONNECT {"auth_token":"one","verbose":false}\r\nPING\r\n')
    assert read_until(sock) == b"PONG\r\n"

    files["conf"].write_text("authorization { token: two }\nmax_payload: 100\n")
    result = _signal(f"reload={files['pid']}")
    assert result.returncode == 0 and f"pid {proc.pid}" in result.stdout
    _wait(lambda: "Reloaded server configuration" in files["log"].read_text(), what="the reload")
    assert read_until(sock, b"\r\n") == b"-ERR 'Authorization Violation'\r\n"

    files["log"].rename(files["log"].with_suffix(".old"))  # what logrotate does
    assert _signal(f"reopen={proc.pid}").returncode == 0
    _wait(lambda: files["log"].exists() and "Reopened log file" in files["log"].read_text(),
          what="the reopened log file")

    assert _signal(f"term={files['pid']}").returncode == 0
    assert proc.wait(5) == 0
    assert not files["pid"].exists() and not files["ports"].exists()
    assert "Server Exiting" in files["log"].read_text()


def test_broken_reload_is_logged_and_the_server_keeps_going(natsd_process):
    proc, files = natsd_process("max_payload: 1000\n")
    files["conf"].write_text("max_payload: 2000\nmax_payload {\n")
    proc.send_signal(signal.SIGHUP)
    _wait(lambda: "Failed to reload" in files["log"].read_text(), what="the failure")
    line = next(x for x in files["log"].read_text().splitlines() if "Failed to reload" in x)
    assert f"{files['conf']}:" in line and "[ERR]" in line
    assert proc.poll() is None
    proc.send_signal(signal.SIGUSR2)  # lame duck with nobody connected: exits at once
    assert proc.wait(5) == 0
    assert "Entering lame duck mode" in files["log"].read_text()


def test_signal_errors():
    assert signals.parse("ldm=12") == (signal.SIGUSR2, "12")
    with pytest.raises(signals.SignalError, match="unknown signal 'hup'"):
        signals.parse("hup")
    with pytest.raises(signals.SignalError, match="cannot read pid file"):
        signals.resolve("/nonexistent/natsd.pid")
    result = _signal("reload=999999999")
    assert result.returncode == 1 and "no process with pid" in result.stderr


def test_natsd_processes_are_recognised():
    ok = signals._is_natsd
    assert ok([b"/usr/bin/natsd", b"-c", b"x.conf"])
    assert ok([b"/venv/bin/python3", b"-m", b"natsd"])
    assert ok([b"python", b"/venv/bin/natsd", b"-p", b"0"])
    assert not ok([b"/venv/bin/natsd", b"--signal", b"reload"])
    assert not ok([b"python", b"-m", b"pytest"])
    assert not ok([b""])


def test_lame_duck_settings_are_checked():
    with pytest.raises(ConfigError, match="grace period .* must be shorter"):
        load({"lame_duck_duration": "5s", "lame_duck_grace_period": "10s"})
    with pytest.raises(ConfigError, match="positive"):
        load({"lame_duck_duration": "0s"})
    assert load({"lame_duck_duration": "5s", "lame_duck_grace_period": "1s"}).lame_duck_duration == 5


def test_log_file_rotates_by_size(tmp_path):
    path = tmp_path / "natsd.log"
    handler = natsd_log.RotatingLogFile(str(path), size_limit=200, max_num=2)
    handler.setFormatter(natsd_log.NatsFormatter(logtime=False))
    logger = logging.getLogger("natsd.test-rotation")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for i in range(40):
            logger.warning("line %03d of the rotation test", i)
            time.sleep(0.001)  # rotated names carry microseconds
    finally:
        logger.removeHandler(handler)
        handler.close()
    rotated = sorted(p.name for p in tmp_path.iterdir() if p.name != "natsd.log")
    assert len(rotated) == 2 and all(n.startswith("natsd.log.20") for n in rotated)
    assert path.stat().st_size <= 200 + 60
    assert "line 039" in path.read_text()


def test_logtime_utc():
    record = logging.LogRecord("natsd", logging.INFO, __file__, 1, "hello", None, None)
    record.created = 86400 * 365 + 0.25  # 1971-01-01 00:00:00.25 UTC
    utc = natsd_log.NatsFormatter(utc=True).format(record)
    assert utc.endswith("1971/01/01 00:00:00.250000 [INF] hello")
    local = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(record.created))
    assert local in natsd_log.NatsFormatter().format(record)


def test_trace_clips_payloads(natsd_factory, caplog):
    running = natsd_factory({"trace": True, "max_traced_msg_len": 4})
    sock = socket.create_connection(("127.0.0.1", running.port), timeout=3)
    read_until(sock, b"\r\n")
    with caplog.at_level(natsd_log.TRACE, logger="natsd"):
        sock.sendall(b'CONNECT {"verbose":false}\r\nPUB x 10\r\n0123456789\r\nPING\r\n')
        read_until(sock)
    assert '<<- MSG_PAYLOAD: ["0123..."]' in caplog.text


def test_trace_shows_whole_payloads_and_deliveries(natsd_factory, caplog):
    """Without max_traced_msg_len a payload is traced whole (nats-server's default), deliveries
    too; an untraced server's clients keep plain output lists (tracing costs them nothing)."""
    plain = natsd_factory()
    sock = socket.create_connection(("127.0.0.1", plain.port), timeout=3)
    read_until(sock, b"\r\n")
    sock.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
    read_until(sock)
    assert [type(c.out) for c in plain.server.clients.values()] == [list]
    running = natsd_factory({"trace": True})
    sock = socket.create_connection(("127.0.0.1", running.port), timeout=3)
    read_until(sock, b"\r\n")
    payload = b"x" * 300 + b"\n\x00"
    with caplog.at_level(natsd_log.TRACE, logger="natsd"):
        sock.sendall(b'CONNECT {"verbose":false,"headers":true}\r\nSUB x 1\r\nPUB x %d\r\n%s\r\n'
                     b'HPUB x 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\nPING\r\n' % (len(payload), payload))
        read_until(sock)
    text = caplog.text
    assert f'<<- MSG_PAYLOAD: ["{"x" * 300}\\n\\x00"]' in text
    assert "->> [MSG x 1 302]" in text and f'->> MSG_PAYLOAD: ["{"x" * 300}\\n\\x00"]' in text
    assert '->> [HMSG x 1 18 20]' in text and '->> MSG_PAYLOAD: ["NATS/1.0\\r\\nA: b\\r\\n\\r\\nhi"]' in text


def test_trace_headers_traces_headers_only(natsd_factory, caplog):
    running = natsd_factory({"trace_headers": True})
    assert running.server.config.trace
    sock = socket.create_connection(("127.0.0.1", running.port), timeout=3)
    read_until(sock, b"\r\n")
    with caplog.at_level(natsd_log.TRACE, logger="natsd"):
        sock.sendall(b'CONNECT {"verbose":false,"headers":true}\r\nSUB x 1\r\nPUB x 4\r\nbody\r\n'
                     b'HPUB x 18 22\r\nNATS/1.0\r\nA: b\r\n\r\nbody\r\nPING\r\n')
        read_until(sock)
    payloads = [r.getMessage().split("MSG_PAYLOAD: ")[1] for r in caplog.records if "MSG_PAYLOAD" in r.getMessage()]
    assert payloads == ['["NATS/1.0\\r\\nA: b"]'] * 2  # in and out; the plain PUB shows none


def test_ports_file_of_an_embedded_server(natsd_factory, tmp_path):
    running = natsd_factory({"ports_file_dir": str(tmp_path)})
    path = tmp_path / f"natsd_{os.getpid()}.ports"
    assert json.loads(path.read_text()) == {"nats": [running.url]}
    running.stop()
    assert not path.exists()
