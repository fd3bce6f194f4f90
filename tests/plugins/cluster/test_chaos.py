"""Chaos: three natsd processes under steady traffic while nodes are SIGKILLed and restarted.

Three ``python -m natsd`` processes (A, B, C) form a cluster on 127.0.0.1;
each names the other two in ``--routes``. nats-py clients know all three
servers and reconnect: three publishers (one per node at the start) publish
numbered messages (``<publisher>:<seq>:<subject>``, ~300 a second in all)
round-robin on ``chaos.data.x``, ``chaos.data.y`` and ``chaos.work``; ``S_x``
subscribes to ``chaos.data.x``, ``S_y`` to ``chaos.data.y``, ``S_all`` to
``chaos.data.>`` and a queue group ``workers`` (one member per node at the
start) to ``chaos.work``. Every client has its own server order and
``dont_randomize``, so where each lands after a failover is the same in every
run, and in every stable window most deliveries cross a route.

The test alternates, for a fixed schedule of rounds:

- a *stable window*: it starts once every node answers ``/routez`` with a
  route to each of the two other nodes' current incarnation (the same routes
  in two looks 0.3 s apart), every client is connected, and a marker from
  every publisher on every subject has reached every subscriber of it (and
  the queue group): so the publisher's node knew every subscription. Messages
  published in it are *expected*. It ends before the kill: publishers flush
  (PING/PONG), and the test waits until the expected messages have arrived;
- a *chaos window*: one node is killed with SIGKILL, stays down a while and
  is started again on the same ports (in some rounds killed once more while
  its routes are being set up); its clients fail over to the next server of
  their list. A message of this window whose publisher and receivers all
  stayed connected to other nodes for the whole window is expected too: its
  path never involved the killed node. For the others core NATS is
  at-most-once, so they may be lost; the losses are counted and classified by
  the first cause that applies at the moment of the publish (``classify``).

It asserts that every expected message reached each of its subscribers
exactly once and, per publisher, in order, and the queue group exactly once;
that no message (expected or not, markers included) was delivered twice to a
subscriber or twice to the queue group; that the nodes' logs have no
traceback; and that the chaos happened (clients reconnected, routes carried
expected messages in every stable window). The report (``pytest -s``) gives
the counts of each round.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from natsd.server import free_port

NAMES = ("A", "B", "C")
SCHEDULE = [("A", 0.1, 0), ("B", 0.6, 0), ("C", 0.3, 1), ("A", 0.8, 0), ("B", 0.05, 1), ("C", 0.5, 0)]
"""(node to kill, seconds it stays down, extra kills) for each round. An extra kill comes 0.05 s
after the node answers again, while its routes are being set up, and it is started again."""
STABLE_SECONDS = 1.0
PUBLISH_INTERVAL = 0.01  # per publisher: ~100 msgs/s each, ~300 msgs/s in all
MAX_PER_PUBLISHER = 12_000
TRAFFIC_SECONDS = 50.0
START_TIMEOUT = 15.0
MESH_TIMEOUT = 15.0
CONFIRM_TIMEOUT = 10.0
DRAIN_TIMEOUT = 3.0
TOTAL_BUDGET = 55.0

SUBJECTS = ("chaos.data.x", "chaos.data.y", "chaos.work")
QUEUE = "workers"
RECEIVERS = {"chaos.data.x": ("S_x", "S_all"), "chaos.data.y": ("S_y", "S_all"), "chaos.work": (QUEUE,)}
"""Who must get a message on each subject: subscribers by name, or the queue group."""
PUBLISHERS = {"P_A": "ABC", "P_B": "BAC", "P_C": "CBA"}
"""Each client's servers in the order it tries them (the first is where it starts)."""
SUBSCRIBERS = {"S_x": ("ABC", "chaos.data.x"), "S_y": ("BAC", "chaos.data.y"), "S_all": ("CBA", "chaos.data.>")}
MEMBERS = {"Q_A": "ABC", "Q_B": "BAC", "Q_C": "CBA"}


# -- the natsd processes -----------------------------------------------------------------------


class Node:
    """One natsd process; killed and started again on the same ports."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.port, self.mport, self.cport = free_port(), free_port(), free_port()
        self.routes: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.started: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [sys.executable, "-m", "natsd", "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.mport),
               "-n", self.name, "--cluster", f"nats://127.0.0.1:{self.cport}", "--cluster_name", "CHAOS",
               "--routes", ",".join(self.routes)]
        log = self.workdir / f"{self.name}-{len(self.logs) + 1}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.started.append(self.proc)

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} died on its own"
        self.proc.kill()  # SIGKILL to this pid
        self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        return self.logs[-1].read_text(errors="replace")[-3000:] if self.logs else ""


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[str, Node]]:
    cluster = {name: Node(name, tmp_path) for name in NAMES}
    for node in cluster.values():
        node.routes = [f"nats://127.0.0.1:{o.cport}" for o in cluster.values() if o is not node]
    try:
        yield cluster
    finally:  # only the processes this test started, by pid
        for node in cluster.values():
            for proc in node.started:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(5)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as answer:
        return json.loads(answer.read())


async def http_json(port: int, path: str) -> Any:
    try:
        return await asyncio.to_thread(_get_json, f"http://127.0.0.1:{port}{path}")
    except (OSError, ValueError):
        return None


async def wait_ready(node: Node) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while await http_json(node.mport, "/varz") is None:
        assert node.alive(), f"{node.name} exited:\n{node.log_tail()}"
        assert time.monotonic() < deadline, f"{node.name} not ready in {START_TIMEOUT} s:\n{node.log_tail()}"
        await asyncio.sleep(0.05)


async def mesh_snapshot(nodes: dict[str, Node]) -> dict[str, frozenset[tuple[str, str, int]]] | None:
    """Each node's routes (remote name, remote id, rid) if all form a full mesh of the current incarnations."""
    views = await asyncio.gather(*(http_json(n.mport, "/routez") for n in nodes.values()))
    if any(not isinstance(v, dict) for v in views):
        return None
    ids = {v["server_name"]: v["server_id"] for v in views}
    snap = {}
    for v in views:
        routes = v.get("routes") or []
        want = {(name, sid) for name, sid in ids.items() if name != v["server_name"]}
        if len(routes) != len(want) or {(r["remote_name"], r["remote_id"]) for r in routes} != want:
            return None
        snap[v["server_name"]] = frozenset((r["remote_name"], r["remote_id"], r["rid"]) for r in routes)
    return snap


async def wait_mesh(nodes: dict[str, Node]) -> None:
    """Until the full mesh is there, with the same routes in two looks 0.3 s apart."""
    deadline = time.monotonic() + MESH_TIMEOUT
    while True:
        first = await mesh_snapshot(nodes)
        if first is not None:
            await asyncio.sleep(0.3)
            if await mesh_snapshot(nodes) == first:
                return
        for node in nodes.values():
            assert node.alive(), f"{node.name} exited:\n{node.log_tail()}"
        if time.monotonic() > deadline:
            views = [await http_json(n.mport, "/routez") for n in nodes.values()]
            raise AssertionError(f"no stable full mesh in {MESH_TIMEOUT} s: {views}")
        await asyncio.sleep(0.1)


# -- bookkeeping ----------------------------------------------------------------------------------


@dataclass
class Sent:
    pub: str
    seq: int
    subject: str
    payload: bytes
    round: int
    stable: bool
    t: float
    node: str | None  # the publisher's server when it published (None: reconnecting)
    refused: bool = False


@dataclass
class Round:
    index: int
    victim: str | None  # None: the last stable window, no kill after it
    down: float
    flaps: int = 0
    stable_from: float = 0.0
    stable_to: float = 0.0
    drained: bool = True
    drain_wait: float = 0.0
    t_kill: float = float("inf")
    t_restart: float = float("inf")
    t_mesh: float = float("inf")


@dataclass
class Chaos:
    by_port: dict[int, str]
    round: int = 0
    stable: bool = False
    stop: bool = False
    sent: dict[str, list[Sent]] = field(default_factory=lambda: defaultdict(list))
    # what arrived: (receiver key, subject, payload) -> count; receiver key is a subscriber or QUEUE
    deliveries: Counter[tuple[str, str, bytes]] = field(default_factory=Counter)
    arrivals: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    queue_member: dict[bytes, str] = field(default_factory=dict)
    markers: dict[str, set[tuple[int, str, str]]] = field(default_factory=lambda: defaultdict(set))
    expected: Counter[str] = field(default_factory=Counter)  # stable messages each key must get
    got: Counter[str] = field(default_factory=Counter)  # stable messages each key got
    refusals: list[str] = field(default_factory=list)


class Peer:
    """A nats-py client that knows all three servers and records where it is connected over time."""

    def __init__(self, cid: str, order: str, nodes: dict[str, Node], chaos: Chaos) -> None:
        self.cid = cid
        self.order = order
        self.nodes = nodes
        self.chaos = chaos
        self.nc: NATS | None = None
        self.timeline: list[tuple[float, str | None]] = []
        self.reconnects = 0
        self.errors: Counter[str] = Counter()

    def node(self) -> str | None:
        url = self.nc.connected_url if self.nc is not None else None
        return self.chaos.by_port.get(url.port or 0) if url is not None else None

    def node_at(self, t: float) -> str | None:
        i = bisect.bisect_right(self.timeline, t, key=lambda e: e[0]) - 1
        return self.timeline[i][1] if i >= 0 else None

    def stayed(self, t0: float, t1: float) -> str | None:
        """The node this client was connected to from ``t0`` to ``t1`` without a break, if any."""
        if any(t0 <= t <= t1 for t, _ in self.timeline):
            return None
        return self.node_at(t0)

    async def connect(self) -> NATS:
        async def disconnected() -> None:
            self.timeline.append((time.monotonic(), None))

        async def reconnected() -> None:
            self.reconnects += 1
            self.timeline.append((time.monotonic(), self.node()))

        async def error(exc: Exception) -> None:
            self.errors[type(exc).__name__] += 1

        options: dict[str, Any] = {
            "servers": [self.nodes[n].url for n in self.order], "name": self.cid, "dont_randomize": True,
            "allow_reconnect": True, "reconnect_time_wait": 0.05, "max_reconnect_attempts": -1,
            "connect_timeout": 2, "disconnected_cb": disconnected, "reconnected_cb": reconnected,
            "error_cb": error}
        self.nc = await nats.connect(**options)
        self.timeline.append((time.monotonic(), self.node()))
        assert self.node() == self.order[0]
        return self.nc

    def receiver(self, key: str) -> Any:
        chaos, cid = self.chaos, self.cid

        async def cb(msg: Msg) -> None:
            data = msg.data
            chaos.deliveries[(key, msg.subject, data)] += 1
            if data.startswith(b"M:"):
                _, index, pub, _ = data.decode().split(":")
                chaos.markers[key].add((int(index), pub, msg.subject))
                return
            pub, seq, _ = data.decode().split(":")
            chaos.arrivals[cid].append((pub, int(seq)))
            if key == QUEUE:
                chaos.queue_member.setdefault(data, cid)
            if chaos.sent[pub][int(seq) - 1].stable:
                chaos.got[key] += 1

        return cb


async def publish_loop(peer: Peer, chaos: Chaos) -> None:
    assert peer.nc is not None
    nc = peer.nc
    seq = 0
    end = time.monotonic() + TRAFFIC_SECONDS
    while not chaos.stop and seq < MAX_PER_PUBLISHER and time.monotonic() < end:
        seq += 1
        subject = SUBJECTS[seq % len(SUBJECTS)]
        payload = f"{peer.cid}:{seq}:{subject}".encode()
        # The tag and the append to nats-py's buffer happen with no await in between.
        rec = Sent(peer.cid, seq, subject, payload, chaos.round, chaos.stable, time.monotonic(), peer.node())
        chaos.sent[peer.cid].append(rec)
        try:
            await nc.publish(subject, payload)
        except nats.errors.Error as exc:  # the reconnect buffer is full, or the client closed
            rec.refused = True
            chaos.refusals.append(f"{peer.cid}:{seq} {type(exc).__name__}")
        if rec.stable and not rec.refused:
            for key in RECEIVERS[subject]:
                chaos.expected[key] += 1
        await asyncio.sleep(PUBLISH_INTERVAL)


# -- the windows -------------------------------------------------------------------------------------


async def confirm_paths(index: int, pubs: list[Peer], everyone: list[Peer], chaos: Chaos) -> None:
    """Every client connected, and a marker from each publisher reached each receiver of each subject."""
    deadline = time.monotonic() + CONFIRM_TIMEOUT
    while not all(p.nc is not None and p.nc.is_connected for p in everyone):
        assert time.monotonic() < deadline, f"round {index}: clients not connected: " \
            f"{[p.cid for p in everyone if p.nc is None or not p.nc.is_connected]}"
        await asyncio.sleep(0.02)
    for k in range(int(CONFIRM_TIMEOUT / 0.1) + 1):
        missing = [(p.cid, s, key) for p in pubs for s in SUBJECTS for key in RECEIVERS[s]
                   if (index, p.cid, s) not in chaos.markers[key]]
        if not missing:
            return
        assert time.monotonic() < deadline, f"round {index}: no path for (publisher, subject, receiver) {missing}"
        for p in pubs:
            assert p.nc is not None
            for s in SUBJECTS:
                await p.nc.publish(s, f"M:{index}:{p.cid}:{k}".encode())
        await asyncio.sleep(0.1)
    raise AssertionError(f"round {index}: markers did not get through")


async def drain(pubs: list[Peer], chaos: Chaos) -> bool:
    """The stable window's messages are processed by the servers and have arrived (or time is up)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    try:
        await asyncio.wait_for(asyncio.gather(*(p.nc.flush(timeout=2) for p in pubs if p.nc is not None)),
                               DRAIN_TIMEOUT)
    except (TimeoutError, nats.errors.Error):
        pass  # what did not arrive shows up as missing below
    while any(chaos.got[k] < chaos.expected[k] for k in chaos.expected):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


# -- classifying the losses ----------------------------------------------------------------------------


def classify(rec: Sent, key: str, rnd: Round, peers: dict[str, Peer]) -> str:
    """Why a message published in a chaos window missed a receiver: the first cause that applies."""
    victim = rnd.victim
    if rec.t < rnd.t_kill:
        return "in flight when the node was killed"
    if rec.node is None:
        return "publisher reconnecting (held in nats-py's reconnect buffer)"
    if rec.node == victim and rec.t < rnd.t_restart:
        return "publisher still connected to the killed node"
    if key == QUEUE:
        return "queue group: routed to a member on the killed node, or a member reconnecting"
    sub = peers[key].node_at(rec.t)
    if sub is None or (sub == victim and rec.t < rnd.t_restart):
        return "subscriber's node killed / subscriber reconnecting"
    if victim in (rec.node, sub) and rec.t < rnd.t_mesh:
        return "route to the restarted node not yet established"
    return "subscription not yet known at the publisher's node (subscriber reconnected elsewhere)"


# -- the test ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_kill_and_restart_nodes_under_traffic(nodes: dict[str, Node]) -> None:
    began = time.monotonic()
    budget = began + TOTAL_BUDGET
    for node in nodes.values():
        node.start()
    for node in nodes.values():
        await wait_ready(node)
    await wait_mesh(nodes)

    chaos = Chaos(by_port={n.port: n.name for n in nodes.values()})
    pubs = [Peer(cid, order, nodes, chaos) for cid, order in PUBLISHERS.items()]
    subs = [Peer(cid, order, nodes, chaos) for cid, (order, _) in SUBSCRIBERS.items()]
    members = [Peer(cid, order, nodes, chaos) for cid, order in MEMBERS.items()]
    everyone = pubs + subs + members
    peers = {p.cid: p for p in everyone}
    rounds = [Round(i, victim, down, flaps) for i, (victim, down, flaps) in enumerate(SCHEDULE)]
    rounds.append(Round(len(SCHEDULE), None, 0.0))
    tasks: list[asyncio.Task[None]] = []
    try:
        for peer in everyone:
            await peer.connect()
        for peer in subs:
            assert peer.nc is not None
            await peer.nc.subscribe(SUBSCRIBERS[peer.cid][1], cb=peer.receiver(peer.cid))
        for peer in members:
            assert peer.nc is not None
            await peer.nc.subscribe("chaos.work", queue=QUEUE, cb=peer.receiver(QUEUE))
        for peer in subs + members:
            assert peer.nc is not None
            await peer.nc.flush()

        for rnd in rounds:
            assert time.monotonic() < budget, "out of time"
            await confirm_paths(rnd.index, pubs, everyone, chaos)
            chaos.round, chaos.stable = rnd.index, True
            rnd.stable_from = time.monotonic()
            if not tasks:
                tasks = [asyncio.create_task(publish_loop(p, chaos)) for p in pubs]
            await asyncio.sleep(STABLE_SECONDS)
            chaos.stable = False
            rnd.stable_to = time.monotonic()
            if rnd.victim is None:
                chaos.stop = True
                await asyncio.wait_for(asyncio.gather(*tasks), 5)
            rnd.drained = await drain(pubs, chaos)
            rnd.drain_wait = time.monotonic() - rnd.stable_to
            if rnd.victim is None:
                break
            victim = nodes[rnd.victim]
            for flap in range(rnd.flaps + 1):
                if flap:
                    await asyncio.sleep(0.05)
                victim.kill()
                rnd.t_kill = min(rnd.t_kill, time.monotonic())
                await asyncio.sleep(rnd.down)
                victim.start()
                rnd.t_restart = time.monotonic()
                await wait_ready(victim)
            await wait_mesh(nodes)
            rnd.t_mesh = time.monotonic()
        await asyncio.sleep(0.5)  # late arrivals, duplicates included
    finally:
        chaos.stop = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for peer in everyone:
            if peer.nc is not None and not peer.nc.is_closed:
                await peer.nc.close()
    elapsed = time.monotonic() - began

    # -- the accounting --
    def untouched(rec: Sent, key: str) -> bool:
        """A chaos-window message whose publisher and receivers stayed, all along the window, on
        nodes other than the killed one: its path never depended on that node, so it is expected too."""
        rnd = rounds[rec.round]
        t0, t1 = rnd.stable_to, rounds[rec.round + 1].stable_from
        group = members if key == QUEUE else [peers[key]]
        return all(p.stayed(t0, t1) not in (None, rnd.victim) for p in [peers[rec.pub], *group])

    duplicates = [(key, subject, data, n) for (key, subject, data), n in chaos.deliveries.items() if n > 1]
    missing: list[str] = []
    must: set[tuple[str, str, int]] = set()  # (receiver key, publisher, seq) that had to arrive
    cross: Counter[int] = Counter()  # stable-window deliveries that crossed a route, per round
    stable_due: Counter[int] = Counter()
    untouched_due: Counter[int] = Counter()
    losses: Counter[str] = Counter()
    chaos_published: Counter[int] = Counter()
    chaos_due: Counter[int] = Counter()
    chaos_lost: Counter[int] = Counter()
    stable_published: Counter[int] = Counter()
    for recs in chaos.sent.values():
        for rec in recs:
            if rec.refused:
                if rec.stable:
                    missing.append(f"{rec.payload.decode()}: refused by nats-py in a stable window")
                continue
            if rec.stable:
                stable_published[rec.round] += 1
            else:
                chaos_published[rec.round] += 1
            for key in RECEIVERS[rec.subject]:
                n = chaos.deliveries[(key, rec.subject, rec.payload)]
                if rec.stable or untouched(rec, key):
                    (stable_due if rec.stable else untouched_due)[rec.round] += 1
                    must.add((key, rec.pub, rec.seq))
                    if n != 1:
                        window = "stable" if rec.stable else "chaos, untouched path"
                        missing.append(f"{rec.payload.decode()} -> {key}: {n} times (round {rec.round}, {window})")
                        continue
                    if rec.stable:
                        where = peers[chaos.queue_member[rec.payload] if key == QUEUE else key].node_at(rec.t)
                        cross[rec.round] += where != rec.node
                else:
                    chaos_due[rec.round] += 1
                    if n == 0:
                        chaos_lost[rec.round] += 1
                        losses[classify(rec, key, rounds[rec.round], peers)] += 1
    disorder: list[str] = []
    chaos_disorder = 0
    for cid, arrivals in chaos.arrivals.items():
        key = QUEUE if cid in MEMBERS else cid
        last_any: dict[str, int] = {}
        last_must: dict[str, int] = {}
        for pub, seq in arrivals:
            if seq < last_any.get(pub, 0):
                chaos_disorder += 1
            last_any[pub] = max(seq, last_any.get(pub, 0))
            if (key, pub, seq) in must:
                if seq <= last_must.get(pub, 0):
                    disorder.append(f"{cid}: {pub}:{seq} after {pub}:{last_must[pub]}")
                last_must[pub] = seq
    tracebacks = [f"{log.name}: {line}" for node in nodes.values() for log in node.logs
                  for line in log.read_text(errors="replace").splitlines()
                  if "Traceback" in line or "[FTL]" in line]
    errors = Counter(line.split("] ", 2)[-1][:90] for node in nodes.values() for log in node.logs
                     for line in log.read_text(errors="replace").splitlines() if "[ERR]" in line or "[WRN]" in line)

    # -- the report --
    out = [f"\nchaos: {len(SCHEDULE)} kill/restart rounds in {elapsed:.1f} s, "
           f"{sum(len(r) for r in chaos.sent.values())} messages published"]
    out.append("round kill   down mesh-after | stable: msgs due cross drain | chaos: msgs untouched-due other-due lost")
    for rnd in rounds:
        mesh = f"{rnd.t_mesh - rnd.t_restart:4.2f}s" if rnd.victim else "  -  "
        kill = f"{rnd.victim}x{rnd.flaps + 1}" if rnd.victim else "-"
        out.append(f"{rnd.index:5} {kill:6} {rnd.down:4.2f} {mesh:>10} | "
                   f"{stable_published[rnd.index]:12} {stable_due[rnd.index]:4} {cross[rnd.index]:5} "
                   f"{rnd.drain_wait:4.2f}s{'' if rnd.drained else '!'} | "
                   f"{chaos_published[rnd.index]:11} {untouched_due[rnd.index]:13} {chaos_due[rnd.index]:9} "
                   f"{chaos_lost[rnd.index]:4}")
    due, lost = sum(chaos_due.values()), sum(chaos_lost.values())
    out.append(f"expected deliveries: {sum(stable_due.values())} in stable windows + "
               f"{sum(untouched_due.values())} on untouched paths in chaos windows; "
               f"missing or not once: {len(missing)}, out of order: {len(disorder)}")
    out.append(f"other deliveries in chaos windows: {due} due if nothing had failed, {lost} lost "
               f"({100 * lost / max(due, 1):.1f} %), by first cause:")
    for cause, n in losses.most_common():
        out.append(f"  {n:6}  {cause}")
    out.append(f"duplicates anywhere: {len(duplicates)}; out of order in chaos windows: {chaos_disorder}; "
               f"refused publishes: {len(chaos.refusals)}")
    out.append("client reconnects: " + ", ".join(f"{p.cid}={p.reconnects}" for p in everyone))
    out.append("nodes of publishers|subscribers|queue members per stable window: " + ", ".join(
        "|".join("".join(str(p.node_at(r.stable_from)) for p in group) for group in (pubs, subs, members))
        for r in rounds))
    client_errors = sum((p.errors for p in everyone), Counter[str]())
    out.append("nats-py errors: " + (", ".join(f"{n}x {e}" for e, n in client_errors.most_common()) or "none"))
    if errors:
        out.append("node log errors and warnings: " + "; ".join(f"{n}x {e}" for e, n in errors.most_common(8)))
    report = "\n".join(out)
    print(report)

    assert not duplicates, f"delivered more than once: {duplicates[:10]}\n{report}"
    assert not missing, f"expected messages lost or not delivered once: {missing[:10]}\n{report}"
    assert not disorder, f"expected messages out of order: {disorder[:10]}\n{report}"
    assert not tracebacks, f"tracebacks in the nodes' logs: {tracebacks[:10]}\n{report}"
    assert all(rnd.drained for rnd in rounds), report
    # The chaos happened and the routes were exercised.
    assert all(stable_published[r.index] > 50 for r in rounds), report
    assert all(cross[r.index] > 0 for r in rounds), report
    assert sum(p.reconnects for p in everyone) >= len(SCHEDULE), report
    assert sum(chaos_published.values()) > 0, report
