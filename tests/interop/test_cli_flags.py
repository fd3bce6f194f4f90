"""Every flag of ``nats-server --help`` (2.15.1) is accepted or refused by name by natsd.

natsd never answers a nats-server command line with argparse's "unrecognized
arguments": flags it honours are taken, the others are refused with a
message that names them. ``-t`` without ``-c`` fails as in nats-server.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from natsd import cli
from reference import reference_server

#: A value for the flags that take one (by the placeholder nats-server's help shows).
VALUES = {"<port>": "-1", "<len>": "64", "<limit>": "1024", "<number>": "3", "<bool>": "true"}


def help_flags(text: str) -> list[tuple[list[str], bool]]:
    """(spellings, takes a value) of each option line of nats-server's help."""
    entries: list[tuple[list[str], bool]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("-") and not pending:
            continue
        part = re.split(r"\s{2,}", (pending + " " + stripped).strip())[0]
        if part == (pending + " " + stripped).strip() and part.endswith(("--name", ",")):
            pending = part  # "-n, --name" goes on with "--server_name <server_name>"
            continue
        pending = ""
        flags = re.findall(r"(?<![\w-])--?[A-Za-z][\w]*", part.split("<")[0])
        entries.append((flags, "<" in part))
    return entries


def _value(part_flags: list[str], text: str) -> str:
    for flag in part_flags:
        m = re.search(re.escape(flag) + r" (<[^>]+>)", text)
        if m:
            return VALUES.get(m.group(1), "x")
    return "x"


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse: help, version, usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out + out.err


def test_every_nats_server_flag_is_accepted_or_refused_by_name(capsys, tmp_path: Path) -> None:
    text = subprocess.run([reference_server(), "--help"], capture_output=True, text=True,
                          timeout=10).stdout
    entries = help_flags(text)
    flags = {f for names, _ in entries for f in names}
    assert {"-p", "--port", "--server_name", "-VV", "-DVV", "--log_size_limit", "--help_tls",
            "--max_traced_msg_len", "--logtime_utc", "--client_advertise", "-ms"} <= flags
    conf = tmp_path / "n.conf"
    conf.write_text("port: -1\n")
    refused = []
    for names, takes_value in entries:
        for flag in names:
            extra = [flag, _value(names, text)] if takes_value else [flag]
            if flag in ("-sl", "--signal"):
                extra = [flag, f"reload={tmp_path / 'none.pid'}"]
            code, output = _run(capsys, ["-t", "-c", str(conf), *extra])
            if flag in ("-h", "--help"):
                assert code == 0 and "usage: natsd" in output
                continue
            assert "unrecognized arguments" not in output and "usage:" not in output, (flag, output)
            if code == 2:  # refused: by name
                assert any(name in output for name in names), (flag, output)
                refused.append(flag)
            else:  # taken; -ms without a tls {} is refused by the monitor, -sl finds no natsd
                assert code in (0, 1), (flag, code, output)
    assert "--client_advertise" in refused and "--profile" in refused
    assert "-VV" not in refused and "--log_size_limit" not in refused
    assert "--routes" not in refused and "--cluster_name" not in refused  # the cluster plugin
    assert "-js" not in refused and "--store_dir" not in refused  # the jetstream plugin


def test_check_without_config_fails_as_nats_server() -> None:
    theirs = subprocess.run([reference_server(), "-t"], capture_output=True, text=True, timeout=10)
    ours = subprocess.run([sys.executable, "-m", "natsd", "-t"], capture_output=True, text=True,
                          timeout=30)
    assert ours.returncode == theirs.returncode == 1
    assert ours.stderr.replace("natsd:", "nats-server:") == theirs.stderr


def test_go_style_single_dash_long_flags(capsys) -> None:
    """``-port -1 -addr 127.0.0.1`` as nats-server reads it, not ``-p ort``."""
    argv = cli.long_flags(["-port", "-1", "-addr", "127.0.0.1", "-DV", "-js", "-max_traced_msg_len=5"],
                          cli.known_flags())
    assert argv == ["--port", "-1", "--addr", "127.0.0.1", "-DV", "-js", "--max_traced_msg_len=5"]
    args = cli.make_parser().parse_args(argv[:5] + argv[6:])
    assert cli._overrides(args, None) == {"host": "127.0.0.1", "port": 0, "max_traced_msg_len": 5,
                                          "debug": True, "trace": True}
