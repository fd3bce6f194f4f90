"""nats-server's message tracing (``Nats-Trace-Dest``) on natsd and on nats-server 2.15.1, side by side.

Each case runs the same raw-protocol steps on both servers (one config, accounts
included) and compares what the trace destination received (the event JSON,
with the fields that vary per run normalised: server id, times, connection ids,
the order of egress events, which is random in nats-server), what each client
received (frames with their exact header blocks) and the errors they got.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import transcripts as T  # on sys.path via conftest.py
from conftest import require_nats_server
from test_jetstream_streams_nats_server import Proc

pytestmark = pytest.mark.timeout(90)

KINDS = ["nats-server", "natsd"]

CONF = """server_name: S1
host: 127.0.0.1
port: {port}
jetstream {{ store_dir: "{store}" }}
accounts {{
  G {{
    jetstream: enabled
    mappings: {{ "map.foo": "map.bar", "w.*": "x.$1" }}
    users: [
      {{user: tracer, password: pw}}
      {{user: pub, password: pw}}
      {{user: sub, password: pw, permissions: {{subscribe: {{allow: ">", deny: "foo.bar"}}}}}}
      {{user: pubnodest, password: pw, permissions: {{publish: {{allow: ["foo.>"]}}}}}}
      {{user: pubdeny, password: pw, permissions: {{publish: {{allow: ["trace.dest"]}}}}}}
    ]
  }}
  A {{
    users: [{{user: a, password: pw}}]
    exports: [ {{stream: "ev.>"}}, {{stream: "ev2.>"}}, {{service: "svc.>"}}, {{service: "svct.>", allow_trace: true}} ]
  }}
  B {{
    users: [{{user: b, password: pw}}]
    imports: [
      {{stream: {{account: A, subject: "ev.>"}}, prefix: "pfx", allow_trace: true}}
      {{stream: {{account: A, subject: "ev2.>"}}}}
      {{service: {{account: A, subject: "svc.>"}}}}
      {{service: {{account: A, subject: "svct.>"}}, to: "remote.>"}}
    ]
  }}
  T {{ users: [{{user: t, password: pw}}], msg_trace: {{dest: "acc.trace.t", sampling: 100}} }}
}}
"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """``kind -> client port`` of a server of each kind with :data:`CONF`."""
    binary = require_nats_server()
    started: dict[str, Proc] = {}
    try:
        for kind in KINDS:
            tmp = tmp_path_factory.mktemp(f"msgtrace-{kind}")
            port = T.free_port()
            conf = tmp / "server.conf"
            conf.write_text(CONF.format(port=port, store=tmp / "js"))
            argv = [binary] if kind == "nats-server" else [sys.executable, "-m", "natsd"]
            started[kind] = Proc(argv + ["-c", str(conf)], port, tmp / "server.log")
        yield {kind: proc.port for kind, proc in started.items()}
    finally:
        for proc in started.values():
            proc.stop()


class Raw:
    """A client speaking the protocol by hand; what it receives is kept as frames and errors."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str) -> None:
        self.reader, self.writer, self.name = reader, writer, name
        self.buf = b""
        self.frames: list[tuple[str, str, str | None, bytes | None, bytes]] = []
        """(verb, subject, reply, header block, payload) of each MSG/HMSG."""
        self.errors: list[str] = []

    @classmethod
    async def open(cls, port: int, user: str, name: str, *, headers: bool = True, echo: bool = True) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()  # INFO
        client = cls(reader, writer, name)
        connect = {"verbose": False, "pedantic": False, "headers": headers, "no_responders": headers,
                   "protocol": 1, "echo": echo, "name": name, "user": user, "pass": "pw"}
        client.send(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        assert (await reader.readline()) == b"PONG\r\n", f"{user} not connected"
        return client

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def hpub(self, subject: str, headers: list[tuple[str, str]], payload: bytes = b"hello",
             reply: str | None = None) -> None:
        block = b"NATS/1.0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers) + b"\r\n"
        rep = f" {reply}" if reply else ""
        self.send(f"HPUB {subject}{rep} {len(block)} {len(block) + len(payload)}\r\n".encode()
                  + block + payload + b"\r\n")

    async def read(self, quiet: float = 0.25) -> None:
        """Read until nothing comes for ``quiet`` seconds, answering PINGs."""
        while True:
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), quiet)
            except TimeoutError:
                break
            if not chunk:
                break
            self.buf += chunk
            self._parse()

    def _parse(self) -> None:
        while True:
            end = self.buf.find(b"\r\n")
            if end < 0:
                return
            line = self.buf[:end].decode()
            parts = line.split(" ")
            if parts[0] in ("MSG", "HMSG"):
                size = int(parts[-1])
                if len(self.buf) < end + 2 + size + 2:
                    return
                body = self.buf[end + 2:end + 2 + size]
                hdr = int(parts[-2]) if parts[0] == "HMSG" else 0
                # "" for the empty reply nats-server frames its own messages with ("MSG s 1  5")
                reply = parts[3] if len(parts) == (6 if hdr else 5) else None
                self.frames.append((parts[0], parts[1], reply, body[:hdr] if hdr else None, body[hdr:]))
                self.buf = self.buf[end + 2 + size + 2:]
                continue
            self.buf = self.buf[end + 2:]
            if parts[0] == "PING":
                self.send(b"PONG\r\n")
            elif parts[0] == "-ERR":
                self.errors.append(line[5:])

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def event_shape(body: bytes) -> dict[str, Any]:
    """A trace event with what varies per run taken out (see the module docstring)."""
    event = json.loads(body)
    server = event["server"]
    for key in ("id", "host", "time", "seq"):
        assert key in server, key
        del server[key]
    events = event["events"]
    for ev in events:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", ev.pop("ts")), ev
        if "cid" in ev:
            ev["cid"] = "*"
    assert events and events[0]["type"] == "in"
    head = [events[0]] + [e for e in events[1:2] if e["type"] == "sm"]
    rest = sorted(events[len(head):], key=lambda e: json.dumps(e, sort_keys=True))
    event["events"] = head + rest
    return event


def masked(frames: list[Any]) -> list[Any]:
    """Frames with generated subjects (service-import replies) masked."""
    out = []
    for verb, subject, reply, hdr, payload in frames:
        if reply is not None:
            reply = re.sub(r"_R_\.\w+\.\w+", "_R_.*", reply)
        if hdr is not None:
            hdr = re.sub(rb'"rtt":\d+', b'"rtt":*', hdr)
        out.append((verb, subject, reply, hdr, payload))
    return out


def difference(reference: dict[str, Any], ours: dict[str, Any]) -> str:
    import difflib
    import pprint

    return "\n".join(difflib.unified_diff(pprint.pformat(reference, width=120).splitlines(),
                                           pprint.pformat(ours, width=120).splitlines(),
                                           "nats-server", "natsd", lineterm=""))


Scenario = Callable[[int], Awaitable[dict[str, Any]]]


async def observe(port: int, steps: Callable[[dict[str, Raw]], Awaitable[None]],
                  clients: dict[str, tuple[str, dict[str, Any]]], subs: dict[str, list[str]],
                  dests: dict[str, str], setup: Callable[[dict[str, Raw]], Awaitable[None]] | None = None
                  ) -> dict[str, Any]:
    """Open ``clients`` (name -> (user, options)), subscribe ``subs`` (name -> SUB lines), open
    a tracer per destination (subject -> user), run ``setup`` (what it receives is not
    compared) and ``steps``; return what everyone saw."""
    conns = {name: await Raw.open(port, user, name, **opts) for name, (user, opts) in clients.items()}
    tracers = {}
    for i, (dest, user) in enumerate(dests.items()):
        tracer = tracers[dest] = await Raw.open(port, user, f"tracer{i}")
        tracer.send(f"SUB {dest} 1\r\nPING\r\n".encode())
    for name, lines in subs.items():
        conns[name].send("".join(f"SUB {line}\r\n" for line in lines).encode() + b"PING\r\n")
    if setup is not None:
        await setup(conns)
    for conn in [*conns.values(), *tracers.values()]:
        await conn.read(0.1)
        conn.frames.clear()
    await steps(conns)
    await asyncio.gather(*(c.read() for c in [*conns.values(), *tracers.values()]))
    seen: dict[str, Any] = {
        # events of messages from different connections come in either order
        "events": {dest: sorted((event_shape(f[4]) if f[3] is None else (f[3], event_shape(f[4]))
                                 for f in t.frames), key=lambda e: json.dumps(e, sort_keys=True, default=repr))
                   for dest, t in tracers.items()},
        "framing": {dest: [(f[0], f[2]) for f in t.frames] for dest, t in tracers.items()},
        "received": {name: masked(c.frames) for name, c in conns.items()},
        "errors": {name: c.errors for name, c in conns.items() if c.errors},
    }
    for conn in [*conns.values(), *tracers.values()]:
        await conn.close()
    return seen


DEST = [("Nats-Trace-Dest", "trace.dest")]
ONLY = [*DEST, ("Nats-Trace-Only", "true")]


async def plain_and_queue(port: int) -> dict[str, Any]:
    async def steps(c: dict[str, Raw]) -> None:
        c["pub"].hpub("foo", [*DEST, ("X-App", "v1"), ("X-App", "v2")], reply="rep.1")
    return await observe(port, steps, {"pub": ("pub", {}), "sub1": ("pub", {}), "qsub": ("pub", {})},
                         {"sub1": ["foo 1"], "qsub": ["foo q1 7"]}, {"trace.dest": "tracer"})


async def trace_only(port: int) -> dict[str, Any]:
    async def steps(c: dict[str, Raw]) -> None:
        c["pub"].hpub("foo", ONLY)
        c["pub"].hpub("nobody", [*DEST, ("Nats-Trace-Only", "1")], reply="_INBOX.x")
    return await observe(port, steps, {"pub": ("pub", {}), "sub1": ("pub", {}), "qsub": ("pub", {})},
                         {"sub1": ["foo 1"], "qsub": ["foo q1 7"], "pub": ["_INBOX.x 99"]},
                         {"trace.dest": "tracer"})


async def permissions(port: int) -> dict[str, Any]:
    async def steps(c: dict[str, Raw]) -> None:
        c["pub"].hpub("foo.bar", DEST)
        c["pubnodest"].hpub("foo.bar", DEST)
        c["pubdeny"].hpub("foo.baz", DEST)
        c["pubdeny"].hpub("foo.baz", ONLY)
    return await observe(port, steps, {"pub": ("pub", {}), "pubnodest": ("pubnodest", {}),
                                       "pubdeny": ("pubdeny", {}), "subwild": ("sub", {})},
                         {"subwild": ["foo.* 1"]}, {"trace.dest": "tracer"})


async def mapping(port: int) -> dict[str, Any]:
    async def steps(c: dict[str, Raw]) -> None:
        c["pub"].hpub("map.foo", DEST)
        c["pub"].hpub("w.1", DEST)
    return await observe(port, steps, {"pub": ("pub", {}), "sub": ("pub", {})},
                         {"sub": ["map.bar 1", "x.> 2"]}, {"trace.dest": "tracer"})


async def stream_imports(port: int) -> dict[str, Any]:
    async def steps(c: dict[str, Raw]) -> None:
        c["pubA"].hpub("ev.x", [("Nats-Trace-Dest", "trace.a")])
        await c["pubA"].read(0.2)
        c["pubA"].hpub("ev2.x", [("Nats-Trace-Dest", "trace.a")])
        await c["pubA"].read(0.2)
        c["pubA"].hpub("ev.y", [("Nats-Trace-Dest", "trace.a"), ("Nats-Trace-Only", "true")])
        await c["pubA"].read(0.2)
        c["pubA"].hpub("ev2.y", [("Nats-Trace-Dest", "trace.a"), ("Nats-Trace-Only", "true")])
    return await observe(port, steps, {"pubA": ("a", {}), "subA": ("a", {}), "subB": ("b", {})},
                         {"subA": ["ev.> 1", "ev2.> 2"], "subB": ["pfx.ev.> 1", "ev2.> 2"]},
                         {"trace.a": "a"})


async def service_imports(port: int) -> dict[str, Any]:
    async def steps(c: dict[str, Raw]) -> None:
        c["pubB"].hpub("svc.x", [("Nats-Trace-Dest", "trace.b")], b"req", reply="_INBOX.b.1")
        await c["pubB"].read(0.2)
        c["pubB"].hpub("remote.x", [("Nats-Trace-Dest", "trace.b")], b"req", reply="_INBOX.b.1")
        await c["pubB"].read(0.2)
        c["pubB"].hpub("svc.y", [("Nats-Trace-Dest", "trace.b"), ("Nats-Trace-Only", "true")], b"req",
                       reply="_INBOX.b.2")
    return await observe(port, steps, {"pubB": ("b", {}), "subA": ("a", {})},
                         {"subA": ["svc.> 3", "svct.> 4", "svct.x qq 5"], "pubB": ["_INBOX.b.> 9"]},
                         {"trace.b": "b"})


async def odd_destinations(port: int) -> dict[str, Any]:
    async def steps(c: dict[str, Raw]) -> None:
        for headers in ([("Nats-Trace-Dest", "trace.*")],
                        [("Nats-Trace-Dest", "trace.*"), ("Nats-Trace-Only", "true")],
                        [("Nats-Trace-Dest", "trace disabled"), ("Nats-Trace-Only", "true")],
                        [*DEST, ("Nats-Trace-Origin-Account", "X"), ("Nats-Trace-Only", "true")],
                        [("Nats-Trace-Only", "true")],
                        [("nats-trace-dest", "trace.dest")],
                        [*DEST, ("Nats-Trace-Only", "yes")],
                        [*DEST, ("Nats-Trace-Only", "ON")],
                        [("Nats-Trace-Dest", "_GR_.abc.def")]):
            c["pub"].hpub("foo", headers)
            await c["pub"].read(0.05)
    return await observe(port, steps, {"pub": ("pub", {}), "sub1": ("pub", {})}, {"sub1": ["foo 1"]},
                         {"trace.dest": "tracer"})


async def no_headers_no_echo(port: int) -> dict[str, Any]:
    async def steps(c: dict[str, Raw]) -> None:
        c["pub"].hpub("foo", DEST)
    return await observe(port, steps, {"pub": ("pub", {"echo": False}), "nohdr": ("pub", {"headers": False})},
                         {"pub": ["foo 1"], "nohdr": ["foo 1"]}, {"trace.dest": "tracer"})


async def traceparent_account(port: int) -> dict[str, Any]:
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    async def steps(c: dict[str, Raw]) -> None:
        c["pub"].hpub("foo", [("traceparent", tp)])
        c["pub"].hpub("foo", [("Traceparent", tp), ("Nats-Trace-Only", "true")])
        c["pub"].hpub("foo", [("traceparent", tp[:-2] + "00")])
        c["pub"].hpub("foo", [("traceparent", tp), ("Nats-Trace-Dest", "explicit.dest")])
    return await observe(port, steps, {"pub": ("t", {}), "sub": ("t", {})}, {"sub": ["foo 1"]},
                         {"acc.trace.t": "t", "explicit.dest": "t"})


async def compressed(port: int) -> dict[str, Any]:
    async def steps(c: dict[str, Raw]) -> None:
        c["pub"].hpub("foo", [*DEST, ("Accept-Encoding", "gzip")])
        await c["pub"].read(0.1)
        c["pub"].hpub("foo", [*DEST, ("Accept-Encoding", "br")])
    conns = {"pub": await Raw.open(port, "pub", "pub")}
    tracer = await Raw.open(port, "tracer", "tracer")
    tracer.send(b"SUB trace.dest 1\r\nPING\r\n")
    await tracer.read(0.1)
    await steps(conns)
    await tracer.read()
    got = []
    for _verb, _subject, _reply, hdr, payload in tracer.frames:
        assert hdr is not None
        got.append((hdr, event_shape(gzip.decompress(payload) if b"gzip" in hdr else payload)))
    await tracer.close()
    await conns["pub"].close()
    return {"events": {"trace.dest": got}}


async def jetstream(port: int) -> dict[str, Any]:
    streams = [{"name": "ORDERS", "subjects": ["orders.>"]},
               {"name": "INT", "subjects": ["int.>"], "retention": "interest"},
               {"name": "LIM", "subjects": ["lim.>"], "max_msgs": 1, "discard": "new"}]

    async def setup(c: dict[str, Raw]) -> None:
        for config in streams:
            body = json.dumps({**config, "storage": "file"}).encode()
            c["pub"].send(b"PUB $JS.API.STREAM.CREATE.%s _INBOX.setup %d\r\n%s\r\n"
                          % (config["name"].encode(), len(body), body))
            await c["pub"].read(0.2)

    async def steps(c: dict[str, Raw]) -> None:
        pub = c["pub"]
        for subject, headers in (("orders.new", DEST), ("orders.new", ONLY),
                                 ("orders.new", [*DEST, ("Nats-Expected-Stream", "WRONG")]),
                                 ("orders.dup", [*DEST, ("Nats-Msg-Id", "m1")]),
                                 ("orders.dup", [*DEST, ("Nats-Msg-Id", "m1")]),
                                 ("int.a", DEST), ("lim.a", DEST), ("lim.a", DEST), ("lim.a", ONLY)):
            pub.hpub(subject, headers, reply="_INBOX.p.1")
            await pub.read(0.15)
        body = b'{"seq":1}'
        pub.send(b"PUB $JS.API.STREAM.MSG.GET.ORDERS _INBOX.p.1 %d\r\n%s\r\n" % (len(body), body))
        await pub.read(0.2)
        stored = json.loads(pub.frames.pop()[4])["message"]
        pub.frames.append(("stored", stored["subject"], None, base64.b64decode(stored["hdrs"]), b""))

    return await observe(port, steps, {"pub": ("pub", {}), "sub": ("pub", {})},
                         {"sub": ["orders.> 1"], "pub": ["_INBOX.p.1 9"]}, {"trace.dest": "tracer"}, setup)


SCENARIOS: dict[str, Scenario] = {
    "plain_and_queue": plain_and_queue, "trace_only": trace_only, "permissions": permissions,
    "mapping": mapping, "stream_imports": stream_imports, "service_imports": service_imports,
    "odd_destinations": odd_destinations, "no_headers_no_echo": no_headers_no_echo,
    "traceparent_account": traceparent_account, "compressed": compressed, "jetstream": jetstream,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_trace_events_and_deliveries_match_nats_server(servers: dict[str, int], name: str) -> None:
    seen = {kind: await SCENARIOS[name](port) for kind, port in servers.items()}
    reference, ours = seen["nats-server"], seen["natsd"]
    if name == "service_imports":
        # nats-server rewrites the trace header it passes on through a service import (to
        # "trace disabled", or to a subject of its own with allow_trace); natsd passes it as it is
        for side in (reference, ours):
            side["received"]["subA"] = [f[:3] + (None,) + f[4:] for f in side["received"]["subA"]]
    assert ours == reference, difference(reference, ours)
    assert any(reference["events"].values()) or name == "odd_destinations"


CONFS = {
    "route": ("""server_name: {name}
host: 127.0.0.1
port: {port}
cluster {{ name: C1, listen: "127.0.0.1:{lport}", routes: ["nats://127.0.0.1:{peer}"] }}
""",) * 2,
    "leaf": ("""server_name: {name}
host: 127.0.0.1
port: {port}
leafnodes {{ listen: "127.0.0.1:{lport}" }}
""", """server_name: {name}
host: 127.0.0.1
port: {port}
leafnodes {{ remotes: [ {{ url: "nats://127.0.0.1:{peer}" }} ] }}
"""),
    "gateway": ("""server_name: {name}
host: 127.0.0.1
port: {port}
gateway {{ name: GA, listen: "127.0.0.1:{lport}", gateways: [ {{ name: GB, url: "nats://127.0.0.1:{peer}" }} ] }}
""", """server_name: {name}
host: 127.0.0.1
port: {port}
gateway {{ name: GB, listen: "127.0.0.1:{lport}", gateways: [ {{ name: GA, url: "nats://127.0.0.1:{peer}" }} ] }}
"""),
}
"""Two servers linked by a route, a hub (S1) and its leaf node (S2), or two clusters' gateways."""


async def until(conn: Raw, publisher: Raw, subject: str) -> None:
    """Publish on ``subject`` until ``conn`` receives it (interest has crossed the route)."""
    for _ in range(100):
        publisher.send(f"PUB {subject} 0\r\n\r\n".encode())
        await conn.read(0.05)
        if any(f[1] == subject for f in conn.frames):
            await conn.read(0.1)
            conn.frames.clear()
            return
    raise AssertionError(f"no interest in {subject} across the route")


async def cluster_trace(ports: tuple[int, int]) -> dict[str, Any]:
    """pub, tracer and subS1 on S1; subS2 (plain and queue) on S2, as in nats-server's tests."""
    s1, s2 = ports
    tracer = await Raw.open(s1, "", "tracer")
    pub = await Raw.open(s1, "", "pub")
    sub1 = await Raw.open(s1, "", "subS1")
    sub2 = await Raw.open(s2, "", "subS2")
    tracer.send(b"SUB trace.dest 1\r\nSUB ready.tracer 2\r\n")
    sub1.send(b"SUB foo 1\r\n")
    sub2.send(b"SUB foo 1\r\nSUB foo q 2\r\nSUB ready.sub 3\r\n")
    await until(sub2, pub, "ready.sub")
    await until(tracer, sub2, "ready.tracer")
    for conn in (tracer, sub1, sub2):
        await conn.read(0.1)
        conn.frames.clear()
    pub.hpub("foo", DEST)
    await asyncio.gather(*(c.read(0.4) for c in (tracer, sub1, sub2)))
    pub.hpub("foo", ONLY)
    await asyncio.gather(*(c.read(0.4) for c in (tracer, sub1, sub2)))
    events = sorted((event_shape(f[4]) for f in tracer.frames), key=lambda e: json.dumps(e, sort_keys=True))
    seen = {"events": events, "received": {c.name: masked(c.frames) for c in (sub1, sub2)},
            "errors": {c.name: c.errors for c in (tracer, pub, sub1, sub2) if c.errors}}
    for conn in (tracer, pub, sub1, sub2):
        await conn.close()
    return seen


@pytest.mark.parametrize("link", ["route", "leaf", "gateway"])
@pytest.mark.parametrize("kinds", [("natsd", "natsd"), ("natsd", "nats-server"), ("nats-server", "natsd")],
                         ids="-".join)
async def test_a_trace_crosses_a_link_with_its_hop_as_in_nats_server(
        kinds: tuple[str, str], link: str, tmp_path: Path) -> None:
    """One event per server, the second naming the hop the first gave the route or leaf link;
    mixed pairs trace as two nats-servers do."""
    binary = require_nats_server()

    async def run(pair: tuple[str, str], tag: str) -> dict[str, Any]:
        ports = [T.free_port() for _ in range(4)]
        procs: list[Proc] = []
        try:
            for i, kind in enumerate(pair):
                conf = tmp_path / f"{tag}-{i}.conf"
                conf.write_text(CONFS[link][i].format(name=f"S{i + 1}", port=ports[i], lport=ports[2 + i],
                                                      peer=ports[2 + (1 - i)]))
                argv = [binary] if kind == "nats-server" else [sys.executable, "-m", "natsd"]
                procs.append(Proc(argv + ["-c", str(conf)], ports[i], tmp_path / f"{tag}-{i}.log"))
            return await cluster_trace((ports[0], ports[1]))
        finally:
            for proc in procs:
                proc.stop()

    reference = await run(("nats-server", "nats-server"), "ref")
    ours = await run(kinds, "ours")
    assert ours == reference, difference(reference, ours)
    assert [e["server"]["name"] for e in reference["events"]] == ["S1", "S1", "S2", "S2"]
    assert reference["events"][0]["hops"] == 1
