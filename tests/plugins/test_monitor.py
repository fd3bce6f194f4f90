"""The monitor plugin (natsd_plugins.monitor) with real nats-py clients, over HTTP and $SYS."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import nats
import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from natsd import NATS_SERVER_VERSION, __version__, hookimpl
from natsd.config.conf import ConfError, digest, parse, parse_file
from natsd.server import Server, free_port
from natsd.testing import read_until
from natsd_plugins.monitor import http_listener

ACCOUNTS = """
accounts {
  A { users: [ {user: a, password: a} ] }
  B { users: [ {user: b, password: b} ] }
  SYS { users: [ {user: sys, password: sys} ] }
}
system_account: SYS
"""


def get(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    """``(status, content type, body)`` of one request."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def getj(url: str) -> Any:
    status, ctype, body = get(url)
    assert status == 200 and ctype == "application/json", (status, body)
    return json.loads(body)


class Monitored:
    """A running server with its HTTP monitoring URL."""

    def __init__(self, running: Any) -> None:
        self.running = running
        self.listener = running.call(http_listener, running.server)
        self.http = self.listener.url if self.listener else ""
        self.url = running.url

    def __call__(self, path: str) -> Any:
        return getj(f"{self.http}/{path}")


@pytest.fixture
def monitored(natsd_factory: Any) -> Any:
    def start(text: str = "", plugins: tuple = ()) -> Monitored:
        return Monitored(natsd_factory(parse("http_port: 0\n" + text), plugins))
    return start


async def until(check: Any, timeout: float = 5.0) -> Any:
    """Poll ``check()`` until it returns something true (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.02)


async def test_varz(monitored: Any) -> None:
    m = monitored(ACCOUNTS)
    a = await nats.connect(m.url, user="a", password="a")
    b = await nats.connect(m.url, user="b", password="b")
    await a.subscribe("foo")
    await a.flush()
    for _ in range(3):
        await a.publish("foo", b"hello")
    await a.flush()
    await until(lambda: m("varz")["out_msgs"] == 3)
    v = m("varz")
    assert (v["connections"], v["total_connections"], v["in_msgs"], v["in_bytes"],
            v["out_msgs"], v["out_bytes"]) == (2, 2, 3, 15, 3, 15)
    assert v["http_port"] == m.listener.port and v["http_host"] == "127.0.0.1"
    assert v["port"] == m.running.port and v["auth_required"] is True
    assert v["system_account"] == "SYS" and v["max_payload"] == 1024 * 1024
    assert v["ping_interval"] == 120_000_000_000 and v["write_deadline"] == 10_000_000_000
    assert v["subscriptions"] >= 1 and v["mem"] > 0 and v["cores"] >= 1
    assert v["http_req_stats"]["/varz"] >= 2
    await b.close()
    await a.close()
    v = await until(lambda: (v := m("varz"))["connections"] == 0 and v)
    assert v["total_connections"] == 2 and v["in_msgs"] == 3  # closed connections still count
    # "version" is the nats-server release natsd follows; natsd's own is a key of its own.
    assert v["version"] == NATS_SERVER_VERSION and v["natsd_version"] == __version__
    assert list(v)[-1] == "natsd_version" and v["proto"] == 1
    assert v["config_digest"] == ""  # no config file
    assert v["tls_timeout"] == 2 and "tls_required" not in v and "tls_cert_not_after" not in v


def test_varz_config_digest_follows_the_file(natsd_factory: Any, tmp_path: Any) -> None:
    path = tmp_path / "natsd.conf"
    path.write_text("host: 127.0.0.1\nport: 0\nhttp_port: 0\nmax_payload: 100\n")
    running = natsd_factory(str(path))
    m = Monitored(running)
    assert m("varz")["config_digest"] == digest(parse_file(path)) != ""
    path.write_text("host: 127.0.0.1\nport: 0\nhttp_port: 0\nmax_payload: 200\n")
    running.reload()
    assert m("varz")["config_digest"] == digest(parse_file(path))


async def test_tls_in_varz_and_connz(natsd_factory: Any, tls_certs: Any) -> None:
    m = Monitored(natsd_factory({"http_port": 0, "tls": tls_certs.block(
        ca_file=tls_certs.ca, verify=True, timeout=0.5)}))
    v = m("varz")
    assert (v["tls_required"], v["tls_verify"], v["tls_timeout"], v["auth_timeout"]) == (True, True, 0.5, 1.5)
    assert v["tls_cert_not_after"] == "3000-01-01T00:00:00Z"  # trustme's certificates
    nc = await nats.connect(m.url, tls=tls_certs.alice())
    (conn,) = m("connz?auth=1")["connections"]
    assert conn["tls_version"] == "1.3" and conn["tls_cipher_suite"].startswith("TLS_AES_")
    assert [c["subject"] for c in conn["tls_peer_certs"]] == ["CN=alice,OU=Unit,O=Org"]
    assert "tls_peer_certs" not in m("connz")["connections"][0]  # with auth only
    await nc.close()
    closed = await until(lambda: m("connz?state=closed")["connections"])
    assert closed[0]["tls_version"] == "1.3"


async def test_connz_sort_paging_and_filters(monitored: Any) -> None:
    m = monitored(ACCOUNTS)
    clients = [await nats.connect(m.url, user=u, password=u, name=f"c{i}")
               for i, u in enumerate(("a", "a", "b"))]
    for i, c in enumerate(clients):
        for _ in range(i + 1):
            await c.publish("x", b"12345")
        for n in range(3 - i):
            await c.subscribe(f"s{n}")
        await c.flush()
    cids = [c["cid"] for c in m("connz")["connections"]]
    assert cids == sorted(cids) and len(cids) == 3
    names = lambda q: [c["name"] for c in m(f"connz?{q}")["connections"]]  # noqa: E731
    assert names("sort=msgs_from") == ["c2", "c1", "c0"]
    assert names("sort=bytes_from") == ["c2", "c1", "c0"]
    assert names("sort=subs") == ["c0", "c1", "c2"]
    assert names("sort=start") == ["c0", "c1", "c2"]
    assert names("sort=uptime") == ["c2", "c1", "c0"]  # as nats-server: shortest first
    assert names("sort=rtt") == ["c0", "c1", "c2"]  # 2.15.1 takes it (2.9.10 refused it); no RTT here: by cid
    assert names("sort=last") == ["c2", "c1", "c0"]
    page = m("connz?sort=msgs_from&limit=1&offset=1")
    assert (page["num_connections"], page["total"], page["offset"], page["limit"]) == (1, 3, 1, 1)
    assert page["connections"][0]["name"] == "c1"
    one = m(f"connz?cid={cids[1]}")
    assert [c["cid"] for c in one["connections"]] == [cids[1]] and one["limit"] == 1
    assert m("connz?cid=999")["connections"] == []
    assert names("acc=A") == ["c0", "c1"] and names("acc=B") == ["c2"] and names("acc=nope") == []
    assert names("user=b") == ["c2"]
    conn = m("connz?auth=true&acc=B")["connections"][0]
    assert conn["authorized_user"] == "b" and conn["account"] == "B"
    assert "authorized_user" not in m("connz")["connections"][0]
    assert m("connz?limit=0")["limit"] == 1024 and m("connz?offset=-4")["offset"] == 0
    for c in clients:
        await c.close()


async def test_connz_subscriptions(monitored: Any) -> None:
    m = monitored()
    nc = await nats.connect(m.url)
    await nc.subscribe("a.*")
    await nc.subscribe("b", queue="q")
    sub = await nc.subscribe("c")
    await sub.unsubscribe(limit=5)
    await nc.publish("a.x", b"hi")
    await nc.flush()
    await until(lambda: m("connz?subs=detail")["connections"][0]["subscriptions_list_detail"][0]["msgs"])
    conn = m("connz?subs=1")["connections"][0]
    assert sorted(conn["subscriptions_list"]) == ["a.*", "b", "c"] and conn["subscriptions"] == 3
    detail = {d["subject"]: d for d in m("connz?subs=detail")["connections"][0]["subscriptions_list_detail"]}
    assert detail["a.*"]["msgs"] == 1 and detail["a.*"]["cid"] == conn["cid"]
    assert detail["b"]["qgroup"] == "q" and "qgroup" not in detail["a.*"]
    assert detail["c"]["max"] == 5 and "account" not in detail["c"]
    assert conn["lang"] == "python3" and conn["type"] == "nats" and conn["kind"] == "Client"
    await nc.close()


async def test_closed_connections(monitored: Any) -> None:
    m = monitored("max_closed_clients: 2\n")
    for name in ("one", "two", "three"):
        nc = await nats.connect(m.url, name=name)
        await nc.subscribe(f"{name}.>")
        await nc.publish("x", b"abc")
        await nc.flush()
        await nc.close()
    closed = await until(lambda: (c := m("connz?state=closed&subs=1"))["total"] == 2 and c)
    assert [c["name"] for c in closed["connections"]] == ["two", "three"]  # the ring keeps the last 2
    conn = closed["connections"][1]
    assert conn["reason"] == "Client Closed" and conn["stop"] >= conn["start"]
    assert conn["subscriptions_list"] == ["three.>"] and conn["in_msgs"] == 1 and conn["in_bytes"] == 3
    assert [c["name"] for c in m("connz?state=closed&sort=stop")["connections"]] == ["three", "two"]
    assert m("connz?state=closed&sort=reason")["num_connections"] == 2
    live = await nats.connect(m.url, name="live")
    assert [c["name"] for c in m("connz?state=all")["connections"]] == ["two", "three", "live"]
    assert m("connz?state=open")["total"] == 1
    await live.close()


async def test_slow_consumer_is_listed(monitored: Any) -> None:
    m = monitored("max_pending: 32KB\n")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", m.running.port))
    sock.settimeout(5)
    sock.sendall(b'CONNECT {"verbose":false,"name":"sleepy"}\r\nSUB big 1\r\nPING\r\n')
    read_until(sock)  # INFO ... PONG: it never reads again
    pub = await nats.connect(m.url)
    for _ in range(400):
        await pub.publish("big", b"x" * 4096)
    await pub.flush()
    closed = await until(lambda: m("connz?state=closed")["connections"])
    assert closed[0]["name"] == "sleepy" and closed[0]["reason"] == "Slow Consumer (Pending Bytes)"
    assert m("varz")["slow_consumers"] == 1
    statz = {s["acc"]: s for s in m("accstatz?unused=1")["account_statz"]}
    assert statz["$G"]["slow_consumers"] == 1
    sock.close()
    await pub.close()


async def test_subsz_accountz_accstatz(monitored: Any) -> None:
    m = monitored(ACCOUNTS)
    a = await nats.connect(m.url, user="a", password="a")
    await a.subscribe("foo.*")
    await a.subscribe("foo.bar", queue="q")
    await a.publish("foo.bar", b"x")
    await a.flush()
    stats = m("subsz")  # nats-server 2.15.1 heads it and pages it even without the list (2.9.10 did not)
    assert list(stats)[:2] == ["server_id", "now"] and list(stats)[-3:] == ["total", "offset", "limit"]
    assert stats["num_subscriptions"] >= 2 and stats["num_cache"] >= 1 and stats["total"] == 0
    listed = m("subsz?subs=1&acc=A")  # the server's own service is listed too, as nats-server's are
    assert listed["total"] == 3 and {s["subject"] for s in listed["subscriptions_list"]} == {
        "foo.*", "foo.bar", "$SYS.REQ.USER.INFO"}
    assert all(s["account"] == s["account_tag"] == "A" for s in listed["subscriptions_list"])
    assert m("subsz?subs=1&acc=A&test=foo.zzz")["total"] == 1
    assert len(m("subsz?subs=1&acc=A&limit=1&offset=1")["subscriptions_list"]) == 1
    assert [s["subject"] for s in m("subsz?subs=1&acc=B")["subscriptions_list"]] == ["$SYS.REQ.USER.INFO"]
    empty = m("subsz?subs=1&acc=B&test=foo")
    assert "subscriptions_list" not in empty and empty["total"] == 0 and "server_id" in empty
    accountz = m("accountz")
    assert set(accountz["accounts"]) >= {"$G", "A", "B", "SYS"} and accountz["system_account"] == "SYS"
    detail = m("accountz?acc=A")["account_detail"]
    assert detail["account_name"] == "A" and detail["client_connections"] == 1
    assert detail["subscriptions"] == 3 and detail["sublist_stats"]["num_subscriptions"] == 3
    assert detail["name_tag"] == "A"
    assert m("accountz?acc=SYS")["account_detail"]["is_system"] is True
    statz = m("accstatz")["account_statz"]
    assert [s["acc"] for s in statz] == ["A"] and statz[0]["name"] == "A"
    none = {"msgs": 0, "bytes": 0}
    assert statz[0]["received"] == {"msgs": 1, "bytes": 1, "gateways": none, "routes": none, "leafs": none}
    assert statz[0]["num_subscriptions"] == 3
    assert {s["acc"] for s in m("accstatz?unused=true")["account_statz"]} >= {"$G", "A", "B", "SYS"}
    await a.close()


def test_accountz_exports_and_imports(monitored: Any) -> None:
    m = monitored("""
        accounts {
          E { exports: [ {stream: "news.>"}, {service: "help", accounts: [I]} ] }
          I { imports: [ {stream: {account: E, subject: "news.>"}},
                         {service: {account: E, subject: "help"}, to: "ask"} ] }
        }
    """)
    exports = m("accountz?acc=E")["account_detail"]["exports"]
    assert exports == [{"subject": "news.>", "type": "stream"},
                       {"subject": "help", "type": "service", "response_type": "Singleton",
                        "approved_accounts": ["I"]}]
    imports = m("accountz?acc=I")["account_detail"]["imports"]
    # nats-server 2.15.1: a service import's "subject" is the exporter's, "to" and "local_subject"
    # the importer's (2.9.10 swapped "subject" and "to").
    assert {(i["type"], i["subject"], i["account"], i.get("to"), i["local_subject"]) for i in imports} == {
        ("stream", "news.>", "E", None, "news.>"), ("service", "help", "E", "ask", "ask")}


def test_other_endpoints(monitored: Any) -> None:
    m = monitored()
    status, ctype, body = get(f"{m.http}/healthz")
    assert (status, ctype, body) == (200, "application/json", b'{"status":"ok"}')
    assert m("routez")["routes"] == [] and m("routez")["num_routes"] == 0
    assert m("routez")["server_name"] == m("varz")["server_name"]
    assert m("leafz")["leafs"] == [] and m("gatewayz")["outbound_gateways"] == {}  # 2.9.10: "leafs": null
    jsz = m("jsz")
    assert jsz["disabled"] is True and jsz["api"] == {"level": 0, "total": 0, "errors": 0} and jsz["total"] == 0


@pytest.mark.parametrize("path, text", [
    ("connz?limit=abc", "Error decoding int for 'limit': strconv.Atoi: parsing \"abc\": invalid syntax"),
    ("connz?sort=bogus", "invalid sorting option: bogus"),
    ("connz?state=xyz", "Error decoding state for xyz"),
    ("connz?subs=maybe", "Error decoding boolean for 'subs': strconv.ParseBool: parsing \"maybe\": invalid syntax"),
    ("connz?sort=stop", "sort by stop only valid on closed connections"),
    ("connz?sort=reason&state=all", "sort by reason only valid on closed connections"),
    ("connz?cid=-1", "Error decoding uint64 for 'cid': strconv.ParseUint: parsing \"-1\": invalid syntax"),
    ("subsz?test=foo.*", "invalid test subject, must be valid publish subject: foo.*"),
    ("accountz?acc=nope", "Account nope does not exist"),
    ("accstatz?unused=x", "Error decoding boolean for 'unused'"),
    ("healthz?js-enabled-only=x", "Error decoding boolean for 'js-enabled-only'"),
    ("routez?subs=x", "Error decoding boolean for 'subs'"),
    ("jsz?limit=x", "Error decoding int for 'limit'"),
])
def test_bad_parameters(monitored: Any, path: str, text: str) -> None:
    m = monitored()
    status, ctype, body = get(f"{m.http}/{path}")
    assert status == 400 and ctype.startswith("text/plain") and body.decode().startswith(text)


def test_http_behaviour(monitored: Any) -> None:
    m = monitored('http_base_path: "/nats"\n')
    assert m.http.endswith("/nats")
    base = m.http[:-len("/nats")]
    assert get(f"{base}/varz")[0] == 404
    assert get(f"{m.http}/varz")[0] == 200
    status, ctype, body = get(f"{m.http}/nope")
    assert (status, body) == (404, b"404 page not found\n")
    status, _, body = get(f"{m.http}/", "GET")
    assert status == 200 and b'href="/nats/varz"' in body
    assert get(f"{m.http}/varz", "POST")[0] == 405
    status, _, body = get(f"{m.http}/varz", "HEAD")
    assert status == 200 and body == b""
    status, ctype, body = get(f"{m.http}/healthz?callback=cb")
    assert (status, ctype, body) == (200, "application/javascript", b'cb({"status":"ok"})')
    assert get(f"{m.http}/healthz?callback=alert(1)")[0] == 400
    with socket.create_connection(("127.0.0.1", m.listener.port), timeout=5) as sock:
        sock.sendall(b"GET /nats/healthz HTTP/1.1\r\n\r\nGET /nats/healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        out = read_until(sock, b"never")
    assert out.count(b"HTTP/1.1 200 OK") == 2 and out.endswith(b'{"status":"ok"}')
    with socket.create_connection(("127.0.0.1", m.listener.port), timeout=5) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        assert read_until(sock, b"never").startswith(b"HTTP/1.1 400 Bad Request")


async def test_metrics(monitored: Any) -> None:
    m = monitored(ACCOUNTS)
    a = await nats.connect(m.url, user="a", password="a")
    await a.subscribe("foo")
    await a.publish("foo", b"12345")
    await a.flush()
    await until(lambda: m("varz")["out_msgs"] == 1)
    status, ctype, body = get(f"{m.http}/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=")
    samples = {(s.name, s.labels.get("account")): s.value
               for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    assert samples[("nats_varz_connections", None)] == 1
    assert samples[("nats_varz_in_msgs", None)] == 1 and samples[("nats_varz_out_bytes", None)] == 5
    assert samples[("nats_varz_total_connections", None)] == 1
    assert samples[("nats_account_connections", "A")] == 1
    assert samples[("nats_account_in_bytes", "A")] == 5 and samples[("nats_account_connections", "B")] == 0
    assert samples[("nats_varz_mem", None)] > 0
    assert ("process_cpu_seconds_total", None) in samples
    await a.close()


class _Extras:
    """A third-party plugin adding a metric and two endpoints."""

    scrapes = 0

    class Collector:
        def collect(self) -> Any:
            _Extras.scrapes += 1
            family = GaugeMetricFamily("nats_extras_widgets", "Widgets in stock")
            family.add_metric([], 42)
            yield family

    @hookimpl
    def natsd_metrics(self, server: Any, registry: Any) -> None:
        registry.register(self.Collector())

    @hookimpl
    def natsd_monitor_endpoints(self, server: Any) -> dict[str, Any]:
        def routez(params: Any) -> dict[str, Any]:
            if params.get("fail"):
                raise ValueError("no such route")
            return {"server_id": server.server_id, "num_routes": 7, "routes": []}
        return {"/routez": routez, "widgetz": lambda params: {"widgets": 42}}


async def test_plugin_metric_and_endpoints(monitored: Any) -> None:
    m = monitored(ACCOUNTS, plugins=(_Extras(),))
    families = {f.name: f for f in text_string_to_metric_families(get(f"{m.http}/metrics")[2].decode())}
    assert families["nats_extras_widgets"].samples[0].value == 42
    assert m("routez")["num_routes"] == 7 and m("widgetz") == {"widgets": 42}
    index = get(f"{m.http}/")[2].decode()
    assert index.count('/routez">routez<') == 1 and '/widgetz">widgetz<' in index
    assert get(f"{m.http}/routez?fail=1")[:3:2] == (400, b"no such route")
    sysc = await nats.connect(m.url, user="sys", password="sys")
    reply = json.loads((await sysc.request("$SYS.REQ.SERVER.PING.ROUTEZ", b"", timeout=2)).data)
    assert reply["data"]["num_routes"] == 7
    await sysc.close()


async def test_system_account_views_without_http(natsd_factory: Any) -> None:
    srv = natsd_factory(parse(ACCOUNTS))
    assert srv.call(http_listener, srv.server) is None
    a = await nats.connect(srv.url, user="a", password="a", name="app")
    await a.subscribe("foo")
    await a.flush()
    sysc = await nats.connect(srv.url, user="sys", password="sys")

    async def req(subject: str, opts: Any = None) -> Any:
        payload = json.dumps(opts).encode() if opts is not None else b""
        return json.loads((await sysc.request(subject, payload, timeout=2)).data)

    varz = (await req("$SYS.REQ.SERVER.PING.VARZ"))["data"]
    assert varz["connections"] == 2 and varz["http_port"] == 0
    connz = (await req("$SYS.REQ.SERVER.PING.CONNZ", {"subscriptions": True, "auth": True, "acc": "A"}))["data"]
    assert connz["connections"][0]["subscriptions_list"] == ["foo"]
    assert connz["connections"][0]["authorized_user"] == "a"
    closed = (await req(f"$SYS.REQ.SERVER.{srv.server.server_id}.CONNZ", {"state": 1}))["data"]
    assert closed["connections"] == []
    subsz = (await req("$SYS.REQ.SERVER.PING.SUBSZ", {"subscriptions": True, "account": "A"}))["data"]
    assert [s["subject"] for s in subsz["subscriptions_list"]] == ["$SYS.REQ.USER.INFO", "foo"]
    assert "A" in (await req("$SYS.REQ.SERVER.PING.ACCOUNTZ"))["data"]["accounts"]
    assert (await req("$SYS.REQ.SERVER.PING.HEALTHZ"))["data"] == {"status": "ok", "status_code": 200}
    assert (await req("$SYS.REQ.SERVER.PING.JSZ"))["data"]["disabled"] is True
    idz = await req("$SYS.REQ.SERVER.PING.IDZ")
    assert idz == {"name": srv.server.name, "host": "127.0.0.1", "id": srv.server.server_id}
    acc = (await req("$SYS.REQ.ACCOUNT.A.CONNZ"))["data"]
    assert [c["name"] for c in acc["connections"]] == ["app"]
    statz = (await req("$SYS.REQ.ACCOUNT.B.STATZ"))["data"]["account_statz"]
    assert [s["acc"] for s in statz] == ["B"] and statz[0]["conns"] == 0
    assert (await req("$SYS.REQ.ACCOUNT.A.INFO"))["data"]["account_name"] == "A"
    bad = await req("$SYS.REQ.SERVER.PING.CONNZ", {"sort": "bogus"})
    assert bad["error"] == {"code": 400, "description": "bad CONNZ request: invalid sorting option: bogus"}
    await sysc.close()
    await a.close()


async def test_views_plugin_can_be_denied(natsd_factory: Any) -> None:
    srv = natsd_factory(parse(ACCOUNTS + "plugins { deny: [monitor_views] }"))
    sysc = await nats.connect(srv.url, user="sys", password="sys")
    reply = json.loads((await sysc.request("$SYS.REQ.SERVER.PING.VARZ", b"", timeout=2)).data)
    assert reply["error"]["code"] == 404
    await sysc.close()


def test_config_errors() -> None:
    with pytest.raises(ConfError, match="HTTPS monitoring uses the server's certificate"):
        asyncio.run(Server(parse("port: -1\nhttps_port: 8443")).start())
    with pytest.raises(ConfError, match="configures HTTP monitoring, which needs a natsd plugin"):
        Server(parse("port: -1\nhttp_port: 0\nplugins { deny: [monitor] }"))


def test_https_with_the_server_certificate(natsd_factory: Any, tls_certs: Any) -> None:
    import ssl
    import urllib.request

    from natsd_plugins.monitor import http_listener

    srv = natsd_factory({"tls": tls_certs.block(), "https_port": 0})
    listener = srv.call(http_listener, srv.server)
    assert listener.url.startswith("https://127.0.0.1:")
    ctx = ssl.create_default_context(cafile=tls_certs.ca)
    with urllib.request.urlopen(listener.url + "/varz", context=ctx, timeout=5) as answer:
        varz = json.loads(answer.read())
    assert varz["https_port"] == listener.port and varz["http_port"] == 0
    with pytest.raises(OSError):  # plain HTTP on the HTTPS port: no answer
        urllib.request.urlopen(listener.url.replace("https:", "http:") + "/varz", timeout=5)
    with pytest.raises(urllib.error.URLError):  # a client that does not trust the CA
        urllib.request.urlopen(listener.url + "/varz", timeout=5,
                               context=ssl.create_default_context(cafile=tls_certs.other_ca))
    assert srv.server.ports["monitoring"] == [listener.url]


def test_command_line_flag(tmp_path: Any) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "natsd", "-a", "127.0.0.1", "-p", "0", "-m", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            lines.append(line)
            if "Server is ready" in line or not line:
                break
        assert any(f"Starting http monitor on 127.0.0.1:{port}" in line for line in lines), lines
        assert getj(f"http://127.0.0.1:{port}/varz")["http_port"] == port
    finally:
        proc.terminate()
        proc.wait(10)
    conf = tmp_path / "deny.conf"
    conf.write_text("plugins { deny: [monitor] }\n")
    out = subprocess.run([sys.executable, "-m", "natsd", "-c", str(conf), "-m", "0"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "-m/--http_port configures HTTP monitoring" in out.stderr


def test_an_endpoint_offered_twice_is_an_error(natsd_factory: Any) -> None:
    from natsd.plugin.manager import PluginError

    class Routes:
        @hookimpl
        def natsd_monitor_endpoints(self) -> dict[str, Any]:
            return {"routez": lambda params: {}}

    with pytest.raises(PluginError, match="monitoring endpoint '/routez' offered twice"):
        natsd_factory(parse("http_port: 0"), (Routes(), Routes()))


async def test_no_closed_ring_still_counts(monitored: Any) -> None:
    m = monitored("max_closed_clients: 0\n")
    nc = await nats.connect(m.url)
    await nc.publish("x", b"abc")
    await nc.close()
    varz = await until(lambda: (v := m("varz"))["connections"] == 0 and v)
    assert varz["in_msgs"] == 1 and varz["in_bytes"] == 3 and varz["total_connections"] == 1
    assert m("connz?state=closed")["connections"] == []
