"""The documentation's examples: every Python block compiles, the ones marked to run run,
and every ``natsd`` command line in a shell block is one natsd accepts.

A Python block preceded by ``<!-- runs -->`` is a complete program: it runs in
its own process, against a natsd this test starts when the program connects
to ``nats://127.0.0.1:4222`` (the address is rewritten to the test server's).
``<!-- runs: cluster -->`` gets two clustered natsd servers for the
addresses ``127.0.0.1:4222`` and ``127.0.0.1:4224``. ``<!-- runs: leaf -->``
starts the page's ``# hub.conf`` and ``# leaf.conf`` blocks (on free ports)
for ``central.example.com:4222`` and ``127.0.0.1:4223``. ``<!-- runs: websocket -->``
gets a natsd with a WebSocket port for ``127.0.0.1:8080`` beside its client port;
``<!-- runs: jetstream -->`` a natsd with JetStream in a temporary store directory.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from natsd.config.conf import parse

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARK = re.compile(r"<!-- runs(?:: (\w+))? -->")
FENCE = re.compile(r"^( *)```(\w*)\s*$")


def blocks(language: str) -> list[tuple[str, int, str, str | None]]:
    """``(page, line, code, run mode)`` of every fenced block in ``language``."""
    found = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if not m or not m.group(2):
                i += 1
                continue
            indent, lang, start = m.group(1), m.group(2), i
            mark = MARK.fullmatch(lines[i - 1].strip()) if i else None
            i += 1
            body = []
            while i < len(lines) and lines[i].rstrip() != indent + "```":
                body.append(lines[i][len(indent):])
                i += 1
            i += 1
            if lang == language:
                mode = (mark.group(1) or "single") if mark else None
                found.append((page.name, start + 1, "\n".join(body), mode))
    return found


PYTHON = blocks("python")
RUNNABLE = [b for b in PYTHON if b[3] is not None]


@pytest.mark.parametrize("page, line, code, mode", PYTHON, ids=[f"{b[0]}:{b[1]}" for b in PYTHON])
def test_python_blocks_compile(page: str, line: int, code: str, mode: str | None) -> None:
    compile(code, f"{page}:{line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_some_examples_are_marked_to_run() -> None:
    assert {b[0] for b in RUNNABLE} >= {"README.md", "plugins.md", "clustering.md", "leafnodes.md",
                                        "websocket.md", "jetstream.md", "mqtt.md", "tracing.md"}


@pytest.mark.parametrize("page, line, code, mode", RUNNABLE, ids=[f"{b[0]}:{b[1]}" for b in RUNNABLE])
def test_marked_examples_run(page: str, line: int, code: str, mode: str, natsd_factory: object,
                             tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if "127.0.0.1:4222" in code or mode in ("leaf", "websocket", "jetstream", "mqtt", "bridge"):
        if mode == "cluster":
            cport = _free_port()
            a = natsd_factory(parse(f"host: 127.0.0.1\nport: -1\ncluster {{ name: D, listen: 127.0.0.1:{cport} }}"))
            c = natsd_factory(parse(f"host: 127.0.0.1\nport: -1\ncluster {{ name: D, listen: 127.0.0.1:-1, "
                                    f"routes: [nats-route://127.0.0.1:{cport}] }}"))
            deadline = time.monotonic() + 10
            while not a.call(lambda: bool(a.server.stash[_cluster_key()].routes)):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            code = code.replace("127.0.0.1:4222", f"127.0.0.1:{a.port}").replace(
                "127.0.0.1:4224", f"127.0.0.1:{c.port}")
        elif mode == "leaf":
            code = _leaf_pair(page, code, natsd_factory)
        elif mode == "jetstream":
            srv = natsd_factory(parse(f'host: 127.0.0.1\nport: -1\njetstream {{ store_dir: "{tmp_path}" }}'))
            code = code.replace("127.0.0.1:4222", f"127.0.0.1:{srv.port}")  # type: ignore[attr-defined]
        elif mode == "mqtt":
            mqtt_port = _free_port()
            srv = natsd_factory(parse(f'host: 127.0.0.1\nport: -1\njetstream {{ store_dir: "{tmp_path}" }}\n'
                                      f"mqtt {{ listen: 127.0.0.1:{mqtt_port} }}"))
            code = code.replace("127.0.0.1:4222", f"127.0.0.1:{srv.port}").replace(  # type: ignore[attr-defined]
                '"127.0.0.1", 1883', f'"127.0.0.1", {mqtt_port}')
        elif mode == "bridge":
            code = _bridge(page, code, natsd_factory, tmp_path, request)
        elif mode == "websocket":
            ws_port = _free_port()
            srv = natsd_factory(parse(f"host: 127.0.0.1\nport: -1\n"
                                      f"websocket {{ listen: 127.0.0.1:{ws_port}, no_tls: true }}"))
            code = code.replace("127.0.0.1:4222", f"127.0.0.1:{srv.port}").replace(  # type: ignore[attr-defined]
                "127.0.0.1:8080", f"127.0.0.1:{ws_port}")
        else:
            srv = natsd_factory()
            code = code.replace("127.0.0.1:4222", f"127.0.0.1:{srv.port}")  # type: ignore[attr-defined]
    script = tmp_path / "example.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.returncode == 0, f"{page}:{line}\n{out.stdout}\n{out.stderr}"
    assert out.stdout.strip(), f"{page}:{line} printed nothing"


def _leaf_pair(page: str, code: str, natsd_factory: Any) -> str:
    """Start the page's hub.conf and leaf.conf on free ports; point ``code`` at them."""
    confs = {c.splitlines()[0].strip("# ").strip(): c for p, _, c, _ in blocks("conf") if p == page}
    hub_port, leaf_port, lport = _free_port(), _free_port(), _free_port()

    def local(text: str) -> str:
        return (text.replace("port: 4222", f"port: {hub_port}").replace("port: 4223", f"port: {leaf_port}")
                .replace("0.0.0.0:7422", f"127.0.0.1:{lport}")
                .replace("central.example.com:7422", f"127.0.0.1:{lport}")) + "\nhost: 127.0.0.1\n"

    natsd_factory(parse(local(confs["hub.conf"])))
    leaf = natsd_factory(parse(local(confs["leaf.conf"])))
    from natsd_plugins.leafnode import LEAFNODES

    deadline = time.monotonic() + 10
    while not leaf.call(lambda: any(leaf.server.stash[LEAFNODES].links.values())):
        assert time.monotonic() < deadline, "the documented leaf never linked to its hub"
        time.sleep(0.05)
    return (code.replace("central.example.com:4222", f"127.0.0.1:{hub_port}")
            .replace("127.0.0.1:4223", f"127.0.0.1:{leaf_port}"))


def _bridge(page: str, code: str, natsd_factory: Any, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Start Mosquitto and the page's bridge.conf (on free ports); point ``code`` at them."""
    import getpass
    import shutil
    import socket
    import subprocess as sp

    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto not found; CI must run the bridge example", pytrace=False)
        pytest.skip("mosquitto not found (apt-get install mosquitto)")
    mq_port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {mq_port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n")
    proc = sp.Popen([binary, "-c", str(conf)], stdout=sp.DEVNULL, stderr=sp.DEVNULL)
    request.addfinalizer(lambda: (proc.terminate(), proc.wait(10)))
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", mq_port), timeout=0.5).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)
    confs = {c.splitlines()[0].strip("# ").strip(): c for p, _, c, _ in blocks("conf") if p == page}
    text = (confs["bridge.conf"].replace("port: 4222", "port: -1\nhost: 127.0.0.1")
            .replace("/tmp/natsd-bridge", str(tmp_path / "js")).replace("127.0.0.1:1883", f"127.0.0.1:{mq_port}"))
    srv = natsd_factory(parse(text))
    return (code.replace("127.0.0.1:4222", f"127.0.0.1:{srv.port}")
            .replace('"127.0.0.1", 1883', f'"127.0.0.1", {mq_port}'))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cluster_key() -> object:
    from natsd_plugins.cluster import CLUSTER

    return CLUSTER


def _command_lines() -> list[tuple[str, int, list[str]]]:
    lines = []
    for page, line, code, _ in blocks("sh"):
        for offset, text in enumerate(code.splitlines()):
            text = text.split(" #")[0].strip()
            if text.startswith("natsd "):
                lines.append((page, line + offset + 1, shlex.split(text)[1:]))
    return lines


COMMANDS = _command_lines()


@pytest.mark.parametrize("page, line, argv", COMMANDS, ids=[f"{c[0]}:{c[1]}" for c in COMMANDS])
def test_command_lines_are_accepted(page: str, line: int, argv: list[str]) -> None:
    """Every flag of a documented ``natsd`` command is one the command line takes."""
    from natsd.cli import add_unprovided_flags, known_flags, long_flags, make_parser, refuse_unprovided
    from natsd.config import PluginSettings
    from natsd.plugin.manager import OptionParser, PluginManager

    plugins = PluginManager()
    plugins.load(PluginSettings(), [])
    parser = make_parser()
    options = OptionParser(parser)
    plugins.addoption(options)
    add_unprovided_flags(parser, options.flags())
    args, unknown = parser.parse_known_args(long_flags(argv, known_flags()))
    assert not unknown, f"{page}:{line}: {unknown}"
    assert not refuse_unprovided(args), f"{page}:{line}: {refuse_unprovided(args)}"


def test_there_are_command_lines_to_check() -> None:
    assert len(COMMANDS) >= 10
