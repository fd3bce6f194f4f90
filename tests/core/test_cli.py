"""The natsd command line as a user runs it: flags, config errors, signals."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from natsd import NATS_SERVER_VERSION, __version__

NATSD = [sys.executable, "-m", "natsd"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NATSD, *args], capture_output=True, text=True, timeout=30)


def test_version_and_help() -> None:
    out = run("-v")
    assert out.returncode == 0 and out.stdout == f"natsd: v{__version__} (follows nats-server v{NATS_SERVER_VERSION})\n"
    helptext = run("-h").stdout
    for flag in ("--addr", "--port", "--name", "--config", "--pid", "--log", "-DV", "--plugin"):
        assert flag in helptext


@pytest.mark.parametrize("flags, capability", [
    (["-js"], "JetStream"), (["--jetstream"], "JetStream"), (["-sd", "/tmp/x"], "JetStream"),
])
def test_plugin_flags_name_their_capability(flags: list[str], capability: str, tmp_path: Path) -> None:
    conf = tmp_path / "deny.conf"
    conf.write_text("port: -1\nplugins { deny: [jetstream] }\n")  # the flags' plugin is not there
    out = run("-c", str(conf), *flags)
    assert out.returncode == 2
    assert f"configures {capability}, which needs a natsd plugin" in out.stderr


def test_unsupported_flag_is_explained() -> None:
    out = run("--client_advertise", "x:4222")
    assert out.returncode == 2
    assert "--client_advertise is a nats-server option not supported by natsd" in out.stderr


def test_config_error_names_file_line_key(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("port: 4222\nplugins { deny: [mqtt] }\nmqtt {\n  port: 1883\n}\n")
    out = run("-c", str(conf))
    assert out.returncode == 1
    assert f"{conf}:3: key 'mqtt'" in out.stderr and "configures MQTT, which needs a natsd plugin" in out.stderr


def test_check_config_prints_every_error(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("port: 4222\ntrace_verbose: true\nno_sublist_cache: true\nmax_payload: lots\n"
                    "mqtt { port: 1883 }\nplugins { deny: [mqtt] }\n")
    out = run("-t", "-c", str(conf))
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.splitlines() == [
        f"natsd: configuration error: {conf}:3: key 'no_sublist_cache': a nats-server option not "
        "supported by natsd",
        f"natsd: configuration error: {conf}:4: key 'max_payload': invalid size 'lots'",
        f"natsd: configuration error: {conf}:5: key 'mqtt': configures MQTT, which needs a "
        "natsd plugin: none installed and enabled provides it"]


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    conf = tmp_path / "broken.conf"
    conf.write_text("port: 4222\nmax_payload: {\n")
    out = run("-c", str(conf))
    assert out.returncode == 1 and f"{conf}:" in out.stderr


def test_check_config(tmp_path: Path) -> None:
    conf = tmp_path / "ok.conf"
    conf.write_text("port: 4222\n")
    out = run("-c", str(conf), "-t")
    assert out.returncode == 0 and f"configuration file {conf} is valid" in out.stdout


def test_runs_with_flags_and_stops_on_sigterm(tmp_path: Path) -> None:
    pid_file, log_file = tmp_path / "natsd.pid", tmp_path / "natsd.log"
    started = time.monotonic()
    proc = subprocess.Popen([*NATSD, "-a", "127.0.0.1", "-p", "-1", "-n", "cli-test",
                             "-P", str(pid_file), "-l", str(log_file), "-D"])
    try:
        port = 0
        deadline = time.monotonic() + 10
        while not port and time.monotonic() < deadline:
            text = log_file.read_text() if log_file.exists() else ""
            m = re.search(r"Listening for client connections on 127\.0\.0\.1:(\d+)", text)
            port = int(m.group(1)) if m else 0
            time.sleep(0.01)
        assert port, "natsd did not log its port"
        ready = time.monotonic() - started
        assert ready < 5, f"took {ready:.2f}s to listen"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            info = sock.recv(4096)
            assert b'"server_name":"cli-test"' in info
            sock.sendall(b"PING\r\n")
            assert sock.recv(100) == b"PONG\r\n"
        assert pid_file.read_text() == str(proc.pid)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        assert time.monotonic() - t0 < 2
        assert not pid_file.exists()
        assert "Server Exiting" in log_file.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("given, port", [("0", 4222), ("-1", 0), ("5222", 5222)])
def test_port_flag_reads_as_nats_server(given: str, port: int) -> None:
    """``-p 0`` is the default port and ``-p -1`` a random one (ServerConfig's 0), as nats-server."""
    from natsd.cli import _overrides, make_parser

    assert _overrides(make_parser().parse_args(["-p", given]), None)["port"] == port


def test_logging_flags_of_nats_server() -> None:
    from natsd.cli import _overrides, make_parser

    args = make_parser().parse_args(["--log_size_limit", "1KB", "--logtime_utc", "--max_traced_msg_len",
                                     "9", "-VV"])
    assert _overrides(args, None) == {"logfile_size_limit": 1024, "logtime_utc": True,
                                      "max_traced_msg_len": 9, "trace": True}
    assert _overrides(make_parser().parse_args(["-DVV"]), None) == {"debug": True, "trace": True}


def test_auth_flags_become_an_authorization_block() -> None:
    from natsd.cli import _overrides, make_parser

    args = make_parser().parse_args(["--user", "u", "--pass", "p"])
    assert _overrides(args, {"timeout": 3, "token": "old"})["authorization"] == {
        "timeout": 3, "user": "u", "password": "p"}
    args = make_parser().parse_args(["--auth", "tok"])
    assert _overrides(args, None)["authorization"] == {"token": "tok"}


def _serve(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    """natsd with ``flags`` on a random port, logging to a file; (process, port, log file)."""
    log_file = tmp_path / "natsd.log"
    proc = subprocess.Popen([*NATSD, "-a", "127.0.0.1", "-p", "-1", "-l", str(log_file), *flags])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = log_file.read_text() if log_file.exists() else ""
        m = re.search(r"Listening for client connections on 127\.0\.0\.1:(\d+)", text)
        if m:
            return proc, int(m.group(1)), log_file
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("natsd did not log its port")


@pytest.mark.parametrize("flag, debug", [("-V", False), ("-DV", True), ("-VV", False), ("-DVV", True)])
def test_trace_flags(tmp_path: Path, flag: str, debug: bool) -> None:
    """``-V`` traces without debug lines, as nats-server; ``-DV`` shows both."""
    proc, port, log_file = _serve(tmp_path, flag)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.recv(4096)
            sock.sendall(b'CONNECT {"verbose":false,"name":"t","lang":"py","version":"1.0"}\r\nPING\r\n')
            assert sock.recv(100) == b"PONG\r\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        text = log_file.read_text()
        assert '[TRC] 127.0.0.1:' in text and '"v1.0:py:t" - ->> [PONG]' in text
        assert ("[DBG]" in text) is debug
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
