#!/usr/bin/env python3
"""MQTT brokers side by side: natsd, Mosquitto, nats-server 2.15.1's MQTT and amqtt.

A standalone benchmark, not a test::

    python benchmarks/mqtt.py                          # every case, every broker found
    python benchmarks/mqtt.py --messages 20000 --devices 50
    python benchmarks/mqtt.py --amqtt /path/to/venv/bin/python   # a Python with amqtt installed

Each case starts a fresh broker on a free port of 127.0.0.1: natsd and
nats-server with JetStream (where both keep QoS 1 messages), Mosquitto as
Debian ships it (no persistence), ``natsd-memory`` if asked for
(``--brokers``: natsd without JetStream, keeping MQTT state in memory as
Mosquitto does), amqtt (the Python broker on PyPI) when a
Python that has it is given. The load comes from raw MQTT 3.1.1 clients
(natsd's own packet encoder; nats-server speaks no MQTT 5), the publishers
in one process and the subscriber in another:

- ``qos0`` / ``qos1``: ``--devices`` device connections publish
  ``--messages`` messages in all, each on its own topic
  (``bench/d<n>/t``) with a distinct payload; one subscriber on
  ``bench/+/t`` at the same QoS. QoS 1 devices keep 10 messages in flight.
  The rate is messages received over the time from the first publish to the
  last message received.
- ``persistent``: ``qos1`` with the subscriber on a persistent session
  (clean session 0): natsd and nats-server write each message to JetStream
  before the PUBACK (for a clean subscriber natsd need not: its session would
  not outlive a restart), Mosquitto keeps it in memory.
- ``fleet``: ``qos1`` again while ``--fleet`` more devices (900) sit
  connected, each subscribed at QoS 1 to a command topic of its own
  (``fleet/<n>/cmd``), as a fleet waiting for orders: a broker that asks
  every subscription about every message slows down here. (nats-server
  2.15.1 refused the 1,001st QoS 1 subscription of one account here:
  "maximum consumers limit reached".)
- ``latency``: one device publishes at QoS 1 and waits until the subscriber
  (QoS 1) has the message; p50 and p99 of 2,000 round trips.
- ``idle``: the broker's resident memory per idle connected device (1,000
  of them).
- ``devices``: 10,000 devices connected at once (``--many``): how long it
  takes and the broker's resident memory then.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugins"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import find_nats_server, free_port

from natsd_plugins.mqtt import packets as P

WINDOW = 10
SYNC = ""
"""natsd's JetStream sync setting (``--sync 2m``: nats-server's default; natsd's is before every ack)."""


# -- brokers ----------------------------------------------------------------------------------------------

class Broker:
    def __init__(self, kind: str, tmp: Path, amqtt_python: str | None) -> None:
        self.kind, self.port = kind, free_port()
        conf = tmp / f"{kind}.conf"
        if kind in ("natsd", "nats-server", "natsd-memory"):
            jetstream = f'jetstream {{ store_dir: "{tmp / kind}"{SYNC} }}\n' if kind != "natsd-memory" else ""
            conf.write_text(f"server_name: bench\nport: {free_port()}\nhost: 127.0.0.1\n{jetstream}"
                            f'mqtt {{ listen: "127.0.0.1:{self.port}" }}\n')
            argv = ([find_nats_server()] if kind == "nats-server" else [sys.executable, "-m", "natsd"]) + [
                "-c", str(conf)]
        elif kind == "mosquitto":
            conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n"
                            f"max_inflight_messages {WINDOW * 2}\n")
            argv = [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)]
        else:
            conf = tmp / "amqtt.yaml"
            conf.write_text(f"listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:{self.port}\n"
                            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
                            "    allow_anonymous: true\n  amqtt.plugins.sys.broker.BrokerSysPlugin:\n"
                            "    sys_interval: 0\n")
            assert amqtt_python is not None
            argv = [str(Path(amqtt_python).parent / "amqtt"), "-c", str(conf)]
        self.log = open(tmp / f"{kind}.log", "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        import socket

        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} did not start: {(tmp / f'{kind}.log').read_text()[-2000:]}") from None
                time.sleep(0.05)

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# -- a raw MQTT 3.1.1 client ------------------------------------------------------------------------------

class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = Parser311()

    @classmethod
    async def connect(cls, port: int, client_id: str, keep_alive: int = 600, clean: bool = True) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        client = cls(reader, writer)
        writer.write(P.encode(P.Connect(client_id, clean_start=clean, keep_alive=keep_alive), P.MQTT_311))
        (ack,) = await client.packets()
        assert isinstance(ack, P.ConnAck) and ack.reason == 0, ack
        return client

    async def packets(self) -> list[P.Packet]:
        while True:
            data = await self.reader.read(1 << 20)
            if not data:
                raise ConnectionError("closed")
            got = self.parser.feed(data)
            if got:
                return got

    async def subscribe(self, topic: str, qos: int) -> None:
        self.writer.write(P.encode(P.Subscribe(1, [P.SubscriptionRequest(topic, qos)]), P.MQTT_311))
        (ack,) = await self.packets()
        assert isinstance(ack, P.SubAck), ack

    def close(self) -> None:
        self.writer.close()


def Parser311() -> P.Parser:
    """The packet parser reading what a broker sends (a client's side of MQTT 3.1.1)."""
    parser = P.Parser()
    parser.version = P.MQTT_311
    return parser


# -- cases ---------------------------------------------------------------------------------------------------

def subscriber(port: int, qos: int, total: int, ready: Any, done: Any, clean: bool = True) -> None:
    async def run() -> None:
        sub = await Client.connect(port, "bench-sub", clean=clean)
        await sub.subscribe("bench/+/t", qos)
        ready.set()
        got, last = 0, 0.0
        deadline = time.monotonic() + 120
        while got < total and time.monotonic() < deadline:
            try:
                packets = await asyncio.wait_for(sub.packets(), 10)
            except TimeoutError:
                break
            acks = []
            for p in packets:
                if isinstance(p, P.Publish):
                    got += 1
                    if p.qos:
                        acks.append(P.encode(P.Ack(P.PUBACK, p.packet_id), P.MQTT_311))
            if acks:
                sub.writer.write(b"".join(acks))
            last = time.time()
        done.put((got, last))
        sub.close()
    asyncio.run(run())


def publishers(port: int, qos: int, devices: int, total: int, start: Any) -> None:
    async def device(i: int, count: int) -> None:
        client = await Client.connect(port, f"bench-d{i}")
        topic = f"bench/d{i}/t".encode()
        frames = [P.encode_publish(topic, b"%08d-%d" % (n, i) + b"x" * 16, qos, packet_id=(n % 60000) + 1)
                  for n in range(count)]
        await barrier
        if not qos:
            for k in range(0, count, 500):
                client.writer.write(b"".join(frames[k:k + 500]))
                await client.writer.drain()
        else:
            sent = min(WINDOW, count)
            client.writer.write(b"".join(frames[:sent]))
            acked = 0
            while acked < count:
                packets = await client.packets()
                n = sum(1 for p in packets if isinstance(p, P.Ack))
                acked += n
                more = frames[sent:sent + n]
                sent += len(more)
                if more:
                    client.writer.write(b"".join(more))
        await asyncio.sleep(0.2)
        client.close()

    async def run() -> None:
        nonlocal barrier
        barrier = asyncio.get_running_loop().create_future()
        share = total // devices
        tasks = [asyncio.create_task(device(i, share)) for i in range(devices)]
        await asyncio.sleep(1.0)  # every device connected
        start.value = time.time()
        barrier.set_result(None)
        await asyncio.gather(*tasks)
    barrier: Any = None
    asyncio.run(run())


def throughput(port: int, qos: int, devices: int, messages: int, clean: bool = True) -> float:
    total = (messages // devices) * devices
    ready, done, start = mp.Event(), mp.Queue(), mp.Value("d", 0.0)
    sub = mp.Process(target=subscriber, args=(port, qos, total, ready, done, clean))
    sub.start()
    ready.wait(20)
    pub = mp.Process(target=publishers, args=(port, qos, devices, total, start))
    pub.start()
    got, last = done.get(timeout=180)
    pub.join(60)
    sub.join(10)
    elapsed = last - start.value
    return got / elapsed if elapsed > 0 and got else 0.0


async def fleet(port: int, devices: int, messages: int, idle: int) -> float:
    """``qos1``'s rate with ``idle`` more devices connected, each subscribed at QoS 1 to its own topic."""
    clients: list[Client] = []
    try:
        for k in range(0, idle, 100):
            batch = await asyncio.gather(*(Client.connect(port, f"fleet-{n}") for n in range(k, min(k + 100, idle))))
            clients += batch
            await asyncio.gather(*(c.subscribe(f"fleet/{k + j}/cmd", 1) for j, c in enumerate(batch)))
        return await asyncio.get_running_loop().run_in_executor(None, throughput, port, 1, devices, messages)
    finally:
        for c in clients:
            c.close()


async def latency(port: int, samples: int = 2000) -> tuple[float, float]:
    sub = await Client.connect(port, "lat-sub")
    await sub.subscribe("bench/lat/t", 1)
    pub = await Client.connect(port, "lat-pub")
    times = []
    for n in range(samples):
        t0 = time.perf_counter()
        pub.writer.write(P.encode_publish(b"bench/lat/t", b"%d" % n, 1, packet_id=n % 60000 + 1))
        while True:
            packets = await sub.packets()
            publish = next((p for p in packets if isinstance(p, P.Publish)), None)
            if publish is not None:
                sub.writer.write(P.encode(P.Ack(P.PUBACK, publish.packet_id), P.MQTT_311))
                break
        times.append(time.perf_counter() - t0)
        await pub.packets()  # its PUBACK
    sub.close()
    pub.close()
    times.sort()
    return statistics.median(times) * 1e6, times[int(len(times) * 0.99)] * 1e6


async def connected(broker: Broker, count: int) -> tuple[float, int]:
    """Connect ``count`` idle devices: seconds it took and the broker's RSS growth."""
    before = broker.rss()
    t0 = time.perf_counter()
    clients: list[Client] = []
    for k in range(0, count, 200):
        clients += await asyncio.gather(*(Client.connect(broker.port, f"idle-{n}") for n in range(k, min(k + 200,
                                                                                                          count))))
    took = time.perf_counter() - t0
    await asyncio.sleep(1.0)
    grown = broker.rss() - before
    for c in clients:
        c.close()
    await asyncio.sleep(0.5)
    return took, grown


# -- main ----------------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--many", type=int, default=10_000)
    ap.add_argument("--fleet", type=int, default=900, help="idle QoS 1 subscribers of the fleet case")
    ap.add_argument("--amqtt", metavar="PYTHON", help="a Python interpreter with amqtt installed")
    ap.add_argument("--brokers", default="natsd,mosquitto,nats-server,amqtt")
    ap.add_argument("--cases", default="qos0,qos1,persistent,fleet,latency,idle,devices")
    ap.add_argument("--sync", metavar="INTERVAL", help="JetStream's sync_interval for natsd and nats-server "
                    "(always, 2m ...; default: each server's own, natsd always, nats-server 2m)")
    args = ap.parse_args()
    global SYNC
    SYNC = f", sync_interval: {args.sync}" if args.sync else ""
    kinds = [k for k in args.brokers.split(",") if k != "amqtt" or args.amqtt]
    if not (shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto")):
        kinds = [k for k in kinds if k != "mosquitto"]
    cases = args.cases.split(",")
    results: dict[str, dict[str, str]] = {k: {} for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            for case in cases:
                workdir = Path(tmp) / f"{kind}-{case}"
                workdir.mkdir(parents=True)
                broker = Broker(kind, workdir, args.amqtt)
                try:
                    if case in ("qos0", "qos1"):
                        rate = throughput(broker.port, int(case[-1]), args.devices, args.messages)
                        results[kind][case] = f"{rate:,.0f} msg/s"
                    elif case == "persistent":
                        rate = throughput(broker.port, 1, args.devices, args.messages, clean=False)
                        results[kind][case] = f"{rate:,.0f} msg/s"
                    elif case == "fleet":
                        rate = asyncio.run(fleet(broker.port, args.devices, args.messages, args.fleet))
                        results[kind][case] = f"{rate:,.0f} msg/s"
                    elif case == "latency":
                        p50, p99 = asyncio.run(latency(broker.port))
                        results[kind][case] = f"{p50:,.0f} / {p99:,.0f} µs"
                    elif case == "idle":
                        _, grown = asyncio.run(connected(broker, 1000))
                        results[kind][case] = f"{grown / 1000 / 1024:,.1f} KiB"
                    elif case == "devices":
                        took, grown = asyncio.run(connected(broker, args.many))
                        results[kind][case] = f"{took:.1f} s, +{grown / 2**20:,.0f} MiB"
                except Exception as exc:  # a broker that cannot do a case says so in the table
                    results[kind][case] = f"failed: {type(exc).__name__}"
                finally:
                    broker.stop()
                print(f"{kind:12} {case:8} {results[kind][case]}", flush=True)
    print()
    print("| case | " + " | ".join(kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for case in cases:
        print(f"| {case} | " + " | ".join(results[k].get(case, "") for k in kinds) + " |")


if __name__ == "__main__":
    main()
