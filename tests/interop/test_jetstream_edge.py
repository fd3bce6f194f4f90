"""Store and forward from the edge: a natsd leaf with JetStream (domain ``edge``) under a hub (domain
``hub``), run once with natsd and once with nats-server 2.15.1 as the hub.

The hub's ``GLOBAL`` stream sources the leaf's ``EDGE`` stream through
``$JS.edge.API``. The hub goes away; the leaf keeps taking metrics
(acknowledged by its own JetStream); the hub comes back on the same store,
and ``GLOBAL`` catches up: every edge message exactly once and in order, with
no application code involved.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import nats
import pytest
import transcripts as T  # on sys.path via conftest.py
from conftest import require_nats_server
from test_jetstream_streams_nats_server import Proc

pytestmark = pytest.mark.timeout(180)

OFFLINE = 10_000


def hub_argv(kind: str, conf: Path) -> list[str]:
    program = [require_nats_server()] if kind == "nats-server" else [sys.executable, "-m", "natsd"]
    return program + ["-c", str(conf)]


def topology(tmp_path: Path, hub_domain: str = "hub", leaf_domain: str = "edge") -> tuple[int, int, Path, Path]:
    """``(hub port, leaf port, hub.conf, leaf.conf)``: a hub in domain ``hub`` with a leafnodes port,
    a leaf in domain ``edge`` linked to it, each with its own store under ``tmp_path``."""
    hub_port, leaf_port, hub_leaf_port = T.free_port(), T.free_port(), T.free_port()
    hub_conf = tmp_path / "hub.conf"
    hub_conf.write_text(f'port: {hub_port}\nhost: 127.0.0.1\njetstream {{ store_dir: "{tmp_path / "hub"}", '
                        f'domain: {hub_domain} }}\nleafnodes {{ listen: "127.0.0.1:{hub_leaf_port}" }}\n')
    leaf_conf = tmp_path / "leaf.conf"
    leaf_conf.write_text(f'port: {leaf_port}\nhost: 127.0.0.1\njetstream {{ store_dir: "{tmp_path / "leaf"}", '
                         f'domain: {leaf_domain} }}\nleafnodes {{ reconnect: 1, remotes: [ {{ url: '
                         f'"nats://127.0.0.1:{hub_leaf_port}" }} ] }}\n')
    return hub_port, leaf_port, hub_conf, leaf_conf


async def count(nc: nats.NATS, stream: str) -> int:
    info = json.loads((await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=5)).data)
    return int(info["state"]["messages"])


async def until_count(nc: nats.NATS, stream: str, wanted: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    got = -1
    while time.monotonic() < deadline:
        try:
            got = await count(nc, stream)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            got = -1
        if got >= wanted:
            return got
        await asyncio.sleep(0.5)
    return got


async def publish_all(js: nats.js.JetStreamContext, first: int, total: int) -> None:
    """Publish ``total`` metrics, 200 in flight at a time, each acknowledged by the edge."""
    for start in range(first, first + total, 200):
        acks = await asyncio.gather(*(js.publish(f"metrics.host{i % 8}", b"%d" % i)
                                      for i in range(start, min(start + 200, first + total))))
        assert all(ack.stream == "EDGE" for ack in acks)


async def one_metric_sourced(leaf: nats.NATS, hub_port: int) -> nats.js.JetStreamContext:
    """The edge's ``EDGE`` stream and the hub's ``GLOBAL`` sourcing it, with one metric through:
    the edge's JetStream context, once ``GLOBAL`` has that metric."""
    edge = leaf.jetstream()
    await edge.add_stream(name="EDGE", subjects=["metrics.>"])
    hub_nc = await nats.connect(f"nats://127.0.0.1:{hub_port}")
    await hub_nc.request("$JS.API.STREAM.CREATE.GLOBAL", json.dumps({
        "name": "GLOBAL", "sources": [{"name": "EDGE", "external": {"api": "$JS.edge.API"}}]}).encode(),
        timeout=5)
    await publish_all(edge, 0, 1)
    assert await until_count(hub_nc, "GLOBAL", 1, 30) == 1
    await hub_nc.close()
    return edge


async def answers(nc: nats.NATS, subject: str, wait: float = 0.5) -> list[str]:
    """The domains of every server answering ``subject`` (an account INFO request) within ``wait``."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(subject, b"", reply=inbox)
    await asyncio.sleep(wait)
    domains = []
    while True:
        try:
            msg = await sub.next_msg(timeout=0.01)
        except nats.errors.TimeoutError:
            break
        domains.append(json.loads(msg.data).get("domain", ""))
    await sub.unsubscribe()
    return domains


async def until_answered(nc: nats.NATS, subject: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await answers(nc, subject, 0.3):
            return
    raise AssertionError(f"nothing answers {subject}")


@pytest.mark.parametrize(("hub", "leaf"), [("natsd", "natsd"), ("natsd", "nats-server"), ("nats-server", "natsd")])
async def test_each_side_answers_its_own_clients_and_the_other_domain_by_name(hub: str, leaf: str,
                                                                                 tmp_path: Path) -> None:
    """``$JS.API`` stays on each side of the link (nats-server denies it both ways on a leaf link
    between domains); ``$JS.<domain>.API`` reaches the other side, and a server told of the other
    side's domain in INFO or CONNECT logs it."""
    hub_port, leaf_port, hub_conf, leaf_conf = topology(tmp_path)
    hub_proc = Proc(hub_argv(hub, hub_conf), hub_port, tmp_path / "hub.log")
    leaf_proc = Proc(hub_argv(leaf, leaf_conf), leaf_port, tmp_path / "leaf.log")
    try:
        hub_nc = await nats.connect(f"nats://127.0.0.1:{hub_port}")
        leaf_nc = await nats.connect(f"nats://127.0.0.1:{leaf_port}")
        await until_answered(leaf_nc, "$JS.hub.API.INFO")
        await until_answered(hub_nc, "$JS.edge.API.INFO")
        assert await answers(leaf_nc, "$JS.API.INFO") == ["edge"]
        assert await answers(hub_nc, "$JS.API.INFO") == ["hub"]
        assert await answers(leaf_nc, "$JS.hub.API.INFO") == ["hub"]
        assert await answers(hub_nc, "$JS.edge.API.INFO") == ["edge"]
        assert await answers(leaf_nc, "$JS.edge.API.INFO") == ["edge"]
        assert await answers(hub_nc, "$JS.hub.API.INFO") == ["hub"]
        await hub_nc.close()
        await leaf_nc.close()
    finally:
        hub_proc.stop()
        leaf_proc.stop()
    for side, local, remote in (("hub", "hub", "edge"), ("leaf", "edge", "hub")):
        log = (tmp_path / f"{side}.log").read_text()
        assert f'JetStream using domains: local "{local}", remote "{remote}"' in log, log[-2000:]


@pytest.mark.parametrize(("hub", "leaf"), [("natsd", "natsd"), ("natsd", "nats-server"), ("nats-server", "natsd")])
async def test_a_hub_and_a_leaf_given_one_domain_do_not_answer_each_other(hub: str, leaf: str,
                                                                         tmp_path: Path) -> None:
    """A misconfiguration nats-server guards against: requests for a server's own domain never
    leave it over a leaf link, so each side's clients hear their own JetStream only."""
    hub_port, leaf_port, hub_conf, leaf_conf = topology(tmp_path, "same", "same")
    hub_proc = Proc(hub_argv(hub, hub_conf), hub_port, tmp_path / "hub.log")
    leaf_proc = Proc(hub_argv(leaf, leaf_conf), leaf_port, tmp_path / "leaf.log")
    try:
        hub_nc = await nats.connect(f"nats://127.0.0.1:{hub_port}")
        leaf_nc = await nats.connect(f"nats://127.0.0.1:{leaf_port}")
        # the link is up once a plain subscription on one side is heard on the other
        async def pong(msg: nats.aio.msg.Msg) -> None:
            await msg.respond(b"hub")

        probe = await hub_nc.subscribe("probe", cb=pong)
        deadline = time.monotonic() + 20
        while True:
            try:
                assert (await leaf_nc.request("probe", b"", timeout=0.3)).data == b"hub"
                break
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                assert time.monotonic() < deadline, "the leaf link did not come up"
        await probe.unsubscribe()
        await leaf_nc.jetstream().add_stream(name="LEAF_ONLY", subjects=["leaf.>"])
        await hub_nc.jetstream().add_stream(name="HUB_ONLY", subjects=["hub.>"])
        for nc, mine in ((leaf_nc, "LEAF_ONLY"), (hub_nc, "HUB_ONLY")):
            assert await answers(nc, "$JS.same.API.INFO") == ["same"]  # one answer: its own server's
            names = json.loads((await nc.request("$JS.same.API.STREAM.NAMES", b"", timeout=2)).data)
            assert names["streams"] == [mine]
        await hub_nc.close()
        await leaf_nc.close()
    finally:
        hub_proc.stop()
        leaf_proc.stop()


@pytest.mark.parametrize("hub", ["natsd", "nats-server"])
async def test_the_edge_stores_while_the_hub_is_away_and_the_hub_catches_up(hub: str, tmp_path: Path) -> None:
    hub_port, leaf_port, hub_conf, leaf_conf = topology(tmp_path)
    hub_proc = Proc(hub_argv(hub, hub_conf), hub_port, tmp_path / "hub.log")
    leaf_proc = Proc([sys.executable, "-m", "natsd", "-c", str(leaf_conf)], leaf_port, tmp_path / "leaf.log")
    try:
        leaf = await nats.connect(f"nats://127.0.0.1:{leaf_port}")
        edge = leaf.jetstream()
        await edge.add_stream(name="EDGE", subjects=["metrics.>"])
        hub_nc = await nats.connect(f"nats://127.0.0.1:{hub_port}")
        created = json.loads((await hub_nc.request("$JS.API.STREAM.CREATE.GLOBAL", json.dumps({
            "name": "GLOBAL", "sources": [{"name": "EDGE", "external": {"api": "$JS.edge.API"}}]}).encode(),
            timeout=5)).data)
        assert "error" not in created, created
        await publish_all(edge, 0, 100)
        assert await until_count(hub_nc, "GLOBAL", 100, 30) == 100
        await hub_nc.close()

        hub_proc.stop()  # the link is down: the edge keeps storing
        await publish_all(edge, 100, OFFLINE)
        assert (await edge.stream_info("EDGE")).state.messages == 100 + OFFLINE

        hub_proc = Proc(hub_argv(hub, hub_conf), hub_port, tmp_path / "hub2.log")
        hub_nc = await nats.connect(f"nats://127.0.0.1:{hub_port}")
        total = 100 + OFFLINE
        assert await until_count(hub_nc, "GLOBAL", total, 90) == total, (tmp_path / "hub2.log").read_text()[-2000:]
        await asyncio.sleep(1.5)
        assert await count(hub_nc, "GLOBAL") == total  # and nothing more: no message twice

        reader = await hub_nc.jetstream().pull_subscribe(
            "metrics.>", durable="audit", stream="GLOBAL",
            config=nats.js.api.ConsumerConfig(ack_policy=nats.js.api.AckPolicy.NONE))
        seen: list[int] = []
        while len(seen) < total:
            for msg in await reader.fetch(1000, timeout=10):
                origin = int(msg.headers["Nats-Stream-Source"].split(" ")[1])
                assert msg.data == b"%d" % (origin - 1)
                seen.append(origin)
        assert seen == list(range(1, total + 1))  # every edge message once, in the edge's order
        await hub_nc.close()
        await leaf.close()
    finally:
        hub_proc.stop()
        leaf_proc.stop()


async def test_a_restarted_natsd_hub_resumes_sourcing_as_soon_as_the_leaf_is_back(tmp_path: Path) -> None:
    """A natsd hub asks the edge for its source consumer at start-up, before the leaf link is back:
    nobody receives that request. The hub asks again once the edge's API is reachable (the leaf's
    interest arrives), and the edge gives the new consumer its own name beside the one the
    previous hub left behind. The catch-up starts within seconds, well before the source's 10 s
    health check would have asked again. (nats-server as the hub waits for its own 30 s request
    timeout here.)"""
    hub_port, leaf_port, hub_conf, leaf_conf = topology(tmp_path)
    hub_proc = Proc(hub_argv("natsd", hub_conf), hub_port, tmp_path / "hub.log")
    leaf_proc = Proc([sys.executable, "-m", "natsd", "-c", str(leaf_conf)], leaf_port, tmp_path / "leaf.log")
    try:
        leaf = await nats.connect(f"nats://127.0.0.1:{leaf_port}")
        edge = await one_metric_sourced(leaf, hub_port)
        hub_proc.stop()
        await publish_all(edge, 1, 100)

        started = time.monotonic()
        hub_proc = Proc(hub_argv("natsd", hub_conf), hub_port, tmp_path / "hub2.log")
        hub_nc = await nats.connect(f"nats://127.0.0.1:{hub_port}")
        assert await until_count(hub_nc, "GLOBAL", 101, 8) == 101, (tmp_path / "hub2.log").read_text()[-2000:]
        assert time.monotonic() - started < 8
        await hub_nc.close()
        await leaf.close()
    finally:
        hub_proc.stop()
        leaf_proc.stop()


@pytest.mark.parametrize("hub", ["natsd", "nats-server"])
async def test_a_key_value_bucket_mirrored_to_the_edge_is_read_offline_and_catches_up(hub: str,
                                                                                     tmp_path: Path) -> None:
    hub_port, leaf_port, hub_conf, leaf_conf = topology(tmp_path)
    hub_proc = Proc(hub_argv(hub, hub_conf), hub_port, tmp_path / "hub.log")
    leaf_proc = Proc([sys.executable, "-m", "natsd", "-c", str(leaf_conf)], leaf_port, tmp_path / "leaf.log")
    try:
        hub_nc = await nats.connect(f"nats://127.0.0.1:{hub_port}")
        config = await hub_nc.jetstream().create_key_value(bucket="config", history=1)
        await config.put("device.rate", b"10")
        leaf = await nats.connect(f"nats://127.0.0.1:{leaf_port}")
        made = json.loads((await leaf.request("$JS.API.STREAM.CREATE.KV_config", json.dumps({
            "name": "KV_config", "max_msgs_per_subject": 1, "allow_direct": True,
            "mirror": {"name": "KV_config", "external": {"api": "$JS.hub.API"}}}).encode(), timeout=5)).data)
        assert "error" not in made, made
        local = await leaf.jetstream().key_value("config")

        async def reads(value: bytes, timeout: float) -> bool:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    if (await local.get("device.rate")).value == value:
                        return True
                except nats.js.errors.KeyNotFoundError:
                    pass
                await asyncio.sleep(0.3)
            return False

        assert await reads(b"10", 20)
        await hub_nc.close()
        hub_proc.stop()  # the link is down: the edge still reads its configuration
        assert (await local.get("device.rate")).value == b"10"

        hub_proc = Proc(hub_argv(hub, hub_conf), hub_port, tmp_path / "hub2.log")
        hub_nc = await nats.connect(f"nats://127.0.0.1:{hub_port}")
        await (await hub_nc.jetstream().key_value("config")).put("device.rate", b"20")
        assert await reads(b"20", 60), "the edge did not catch up with the hub's update"
        await hub_nc.close()
        await leaf.close()
    finally:
        hub_proc.stop()
        leaf_proc.stop()


KILL_ATTEMPTS = 5


@pytest.mark.parametrize("hub", ["natsd", "nats-server"])
async def test_a_hub_killed_in_the_middle_of_the_catch_up_loses_and_doubles_nothing(hub: str,
                                                                                   tmp_path: Path) -> None:
    """As above, but the hub is killed (SIGKILL) while it is catching up, and started again.

    A catch-up of 10,000 small messages can finish between two looks at the count, so each
    attempt that missed the middle kills the hub anyway (after it caught up), lets the edge take
    another 10,000 and tries again."""
    hub_port, leaf_port, hub_conf, leaf_conf = topology(tmp_path)
    hub_proc = Proc(hub_argv(hub, hub_conf), hub_port, tmp_path / "hub.log")
    leaf_proc = Proc([sys.executable, "-m", "natsd", "-c", str(leaf_conf)], leaf_port, tmp_path / "leaf.log")
    try:
        leaf = await nats.connect(f"nats://127.0.0.1:{leaf_port}")
        edge = await one_metric_sourced(leaf, hub_port)
        total = 1
        hub_proc.stop()

        seen: list[int] = []
        for attempt in range(KILL_ATTEMPTS):
            before = total
            await publish_all(edge, total, OFFLINE)  # the hub is down: the edge keeps them
            total += OFFLINE
            hub_proc = Proc(hub_argv(hub, hub_conf), hub_port, tmp_path / f"hub-{attempt}.log")
            hub_nc = await nats.connect(f"nats://127.0.0.1:{hub_port}")
            deadline = time.monotonic() + 90
            got = before
            while time.monotonic() < deadline and got <= before:
                try:
                    got = await count(hub_nc, "GLOBAL")
                except nats.errors.TimeoutError:
                    pass
                await asyncio.sleep(0.01)
            hub_proc.proc.kill()  # SIGKILL, in the middle of the catch-up if it is still under way
            hub_proc.proc.wait(10)
            await hub_nc.close()
            seen.append(got)
            if before < got < total:
                break
        else:
            pytest.fail(f"the catch-up was never seen under way in {KILL_ATTEMPTS} attempts (counts {seen})")

        hub_proc = Proc(hub_argv(hub, hub_conf), hub_port, tmp_path / "hub-last.log")
        hub_nc = await nats.connect(f"nats://127.0.0.1:{hub_port}")
        assert await until_count(hub_nc, "GLOBAL", total, 90) == total
        await asyncio.sleep(1.5)
        assert await count(hub_nc, "GLOBAL") == total
        reader = await hub_nc.jetstream().pull_subscribe(
            "metrics.>", durable="audit", stream="GLOBAL",
            config=nats.js.api.ConsumerConfig(ack_policy=nats.js.api.AckPolicy.NONE))
        origins: list[int] = []
        while len(origins) < total:
            origins.extend(int(m.headers["Nats-Stream-Source"].split(" ")[1])
                           for m in await reader.fetch(1000, timeout=10))
        assert origins == list(range(1, total + 1))
        await hub_nc.close()
        await leaf.close()
    finally:
        hub_proc.stop()
        leaf_proc.stop()
