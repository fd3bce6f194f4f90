"""``natsd --workers N``: one port, N processes, one cluster, supervised."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nats


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    log = tmp_path / "workers.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "natsd", "-a", "127.0.0.1", "-p", str(port),
                                 "--workers", "2", *args], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while log.read_text().count("Server is ready") < 2:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return proc, port, log


async def server_names(port: int, tries: int = 12) -> set[str]:
    names = set()
    for _ in range(tries):
        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        names.add(nc._server_info["server_name"])
        await nc.close()
    return names


def test_workers_share_the_port_and_the_messages(tmp_path: Path) -> None:
    proc, port, log = start(tmp_path)
    try:
        async def check() -> None:
            names = await server_names(port)
            assert {n.rsplit("-", 1)[1] for n in names} == {"w0", "w1"}  # both took connections
            subs, pubs = [], []
            for _ in range(6):
                subs.append(await nats.connect(f"nats://127.0.0.1:{port}"))
            got: list[bytes] = []

            async def cb(msg: Any) -> None:
                got.append(msg.data)

            for nc in subs:
                await nc.subscribe("across", cb=cb)
                await nc.flush()
            await asyncio.sleep(0.5)
            for _ in range(4):
                pubs.append(await nats.connect(f"nats://127.0.0.1:{port}"))
            for nc in pubs:
                await nc.publish("across", b"x")
                await nc.flush()
            deadline = time.monotonic() + 5
            while len(got) < 24 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            assert len(got) == 24  # every subscriber, once, whichever worker holds it
            for nc in subs + pubs:
                await nc.close()

        asyncio.run(check())
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert log.read_text().count("Server Exiting..") == 2


def test_a_dead_worker_is_started_again(tmp_path: Path) -> None:
    proc, port, log = start(tmp_path)
    try:
        before = log.read_text()
        pids = {int(line.split("]")[0].lstrip("[")) for line in before.splitlines()
                if "Server is ready" in line}
        assert len(pids) == 2 and proc.pid not in pids
        victim = max(pids)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while log.read_text().count("Server is ready") < 3:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        assert "starting it again" in log.read_text()
        assert len(asyncio.run(server_names(port))) >= 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_signals_reach_every_worker(tmp_path: Path) -> None:
    conf = tmp_path / "w.conf"
    conf.write_text("debug: false\n")
    proc, port, log = start(tmp_path, "-c", str(conf))
    try:
        conf.write_text("debug: true\n")
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while log.read_text().count("Reloaded server configuration") < 2:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_a_worker_that_cannot_start_stops_them_all(tmp_path: Path) -> None:
    """The client port is held by a socket without SO_REUSEPORT: the workers cannot listen,
    and the supervisor exits with an error instead of restarting them in a loop."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        t0 = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "natsd", "-a", "127.0.0.1", "-p", str(port),
                               "--workers", "2"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1, done.stderr
    assert "could not start" in done.stderr
    assert time.monotonic() - t0 < 15


def test_workers_refuse_a_cluster_block(tmp_path: Path) -> None:
    conf = tmp_path / "w.conf"
    conf.write_text("workers: 2\ncluster { listen: 127.0.0.1:-1 }\n")
    done = subprocess.run([sys.executable, "-m", "natsd", "-c", str(conf)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 1
    assert f"{conf}:2: key 'cluster'" in done.stderr and "not supported yet" in done.stderr
