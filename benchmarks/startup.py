#!/usr/bin/env python3
"""Time from launch to a listening client port: natsd and nats-server, side by side.

    python benchmarks/startup.py [--runs 7]

Each run starts the server on a free port of 127.0.0.1, connects as soon as the
port accepts, and stops it (SIGTERM). natsd is measured twice: as its modules
are on a fresh editable install where bytecode is not written
(``PYTHONDONTWRITEBYTECODE``, as in this project's CI), and with bytecode
compiled beforehand. ``python -X importtime -m natsd`` shows what the imports
cost, module by module.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import find_nats_server, free_port  # noqa: E402


def until_listening(argv: list[str], env: dict[str, str] | None = None) -> float:
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([*argv, "-a", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = start + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return time.perf_counter() - start
            except OSError:
                if time.perf_counter() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{argv[0]} did not listen") from None
                time.sleep(0.002)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    runs = ap.parse_args().runs
    import natsd

    source = Path(natsd.__file__).resolve().parent.parent
    copy = Path(tempfile.mkdtemp(prefix="natsd-startup-"))
    for src, dst in (("core", "natsd"), ("plugins", "natsd_plugins"), ("jwtlib", "natsd_jwt")):
        shutil.copytree(source / src, copy / dst, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    natsd_argv = [sys.executable, "-m", "natsd"]
    rows = {"natsd, no bytecode": [until_listening(natsd_argv, env) for _ in range(runs)]}
    compileall.compile_dir(str(copy), quiet=1)
    rows["natsd, bytecode compiled"] = [until_listening(natsd_argv, env) for _ in range(runs)]
    rows["nats-server 2.15.1"] = [until_listening([find_nats_server()]) for _ in range(runs)]
    shutil.rmtree(copy, ignore_errors=True)
    print(f"| server | median | best (of {runs}) |")
    print("|---|---|---|")
    for name, times in rows.items():
        print(f"| {name} | {statistics.median(times) * 1000:.0f} ms | {min(times) * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
