"""The HTTP monitoring endpoints side by side with nats-server 2.15.1.

Both servers run the same configuration (three accounts, an export and its
imports, ``http_port``) and the same workload: two clients subscribe and
publish, a third subscribes and leaves. Every endpoint's JSON must have the
same keys, recursively (the keys of a list are those of all its objects),
except the few natsd deliberately leaves out (:data:`NOT_FILLED`,
:data:`NOT_FILLED_IN`) or adds (:data:`NATSD_ONLY`); so must the system account's ``$SYS.REQ`` answers
built from the same views. The counts that do not depend on a server's
internals must be equal, and bad query parameters must get the same status
and text.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import nats
import pytest

import transcripts as T  # on sys.path via conftest.py

CONF = """
accounts {
  A { users: [ {user: a, password: a} ], exports: [ {stream: "news.>"}, {service: "help"} ] }
  B { users: [ {user: b, password: b} ],
      imports: [ {stream: {account: A, subject: "news.>"}}, {service: {account: A, subject: "help"}} ] }
  SYS { users: [ {user: sys, password: sys} ] }
}
system_account: SYS
http_port: %d
"""

#: Keys nats-server has that natsd leaves out, and why.
NOT_FILLED = {
    "rtt": "natsd does not measure a round trip to each client",
}

#: Top-level keys of an answer that natsd adds, and why: (path, key) -> reason.
NATSD_ONLY = {
    ("varz", "natsd_version"): "natsd's own version (\"version\" is the nats-server release it follows)",
    ("$SYS.REQ.SERVER.PING.VARZ", "natsd_version"): "the same, over the system account",
}

#: Keys of one answer that natsd leaves out, and why.
NOT_FILLED_IN = {
    ("accountz?acc=A", "account_detail", "imports"): (
        "nats-server imports the $SYS.REQ.ACCOUNT.PING.CONNZ/STATZ, $SYS.REQ.SERVER.PING.CONNZ "
        "and $SYS.REQ.USER.INFO services into every account, so that its users can ask about "
        "their own account; natsd answers the first three in the system account only and "
        "$SYS.REQ.USER.INFO in every account without an import (A imports nothing else)"),
}

PATHS = [
    "varz", "connz", "connz?subs=1", "connz?subs=detail", "connz?auth=1",
    "connz?state=closed", "connz?state=closed&subs=detail", "connz?state=closed&subs=1&auth=1",
    "connz?state=all&sort=start", "connz?sort=rtt", "subsz", "subsz?subs=1&acc=A&test=foo.x", "accountz",
    "accountz?acc=A", "accountz?acc=B", "accstatz", "accstatz?unused=1", "healthz", "routez", "leafz",
    "gatewayz", "jsz",
]

#: System account requests answered by the same views: (subject, JSON options).
SYSTEM = [
    ("$SYS.REQ.SERVER.PING.VARZ", {}),
    ("$SYS.REQ.SERVER.PING.CONNZ", {"subscriptions": True, "auth": True}),
    ("$SYS.REQ.SERVER.PING.CONNZ", {"state": 1, "subscriptions_detail": True}),
    ("$SYS.REQ.SERVER.PING.SUBSZ", {"subscriptions": True, "account": "A", "test": "foo.x"}),
    ("$SYS.REQ.SERVER.PING.ACCOUNTZ", {}), ("$SYS.REQ.SERVER.PING.HEALTHZ", {}),
    ("$SYS.REQ.SERVER.PING.ROUTEZ", {}), ("$SYS.REQ.SERVER.PING.LEAFZ", {}),
    ("$SYS.REQ.SERVER.PING.GATEWAYZ", {}), ("$SYS.REQ.SERVER.PING.JSZ", {}),
    ("$SYS.REQ.ACCOUNT.A.CONNZ", {}), ("$SYS.REQ.ACCOUNT.A.SUBSZ", {}),
    ("$SYS.REQ.ACCOUNT.A.STATZ", {}), ("$SYS.REQ.ACCOUNT.B.INFO", {}), ("$SYS.REQ.ACCOUNT.A.LEAFZ", {}),
]

BAD = [  # (2.9.10 also refused connz?sort=rtt; 2.15.1 sorts by it, see PATHS)
    "connz?limit=abc", "connz?offset=1.5", "connz?sort=bogus", "connz?state=xyz",
    "connz?subs=maybe", "connz?auth=x", "connz?cid=-1", "connz?sort=stop", "connz?sort=reason",
    "subsz?test=foo.*", "subsz?subs=x", "subsz?limit=x", "accountz?acc=nope", "accstatz?unused=x",
    "healthz?js-enabled-only=x", "routez?subs=x", "leafz?subs=x", "gatewayz?accs=x",
    "jsz?accounts=x", "jsz?limit=x", "nope", "varz/",
]


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


async def workload(url: str) -> None:
    a = await nats.connect(url, user="a", password="a", name="app-a")
    b = await nats.connect(url, user="b", password="b", name="app-b")
    await a.subscribe("foo.*")
    await a.subscribe("bar", queue="q")
    await b.subscribe("news.>")
    await a.flush()
    await b.flush()
    for _ in range(3):
        await a.publish("foo.x", b"hello")
    await a.publish("news.1", b"extra!")
    await a.flush()
    gone = await nats.connect(url, user="a", password="a", name="gone")
    await gone.subscribe("zzz")
    await gone.flush()
    await gone.close()
    await asyncio.sleep(0.3)
    # a and b stay connected while the endpoints are read
    workload.clients = (a, b)  # type: ignore[attr-defined]


def shape(value: Any) -> Any:
    """Keys, recursively; a list's keys are those of all its objects; NOT_FILLED left out."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items()) if k not in NOT_FILLED}
    if isinstance(value, list):
        merged: dict[str, Any] = {}
        for item in value:
            if isinstance(item, dict):
                merged.update({k: v for k, v in item.items() if k not in merged})
        return [shape(merged)] if merged else []
    return None


@pytest.fixture(scope="module")
def observed(server_factory: Any) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for kind in (T.NATS_SERVER, T.NATSD):
        http_port = T.free_port()
        host, port = server_factory(kind, CONF % http_port)

        async def run() -> None:
            await workload(f"nats://{host}:{port}")
            base = f"http://{host}:{http_port}"
            answers: dict[str, Any] = {p: fetch(f"{base}/{p}") for p in PATHS + BAD}
            sysc = await nats.connect(f"nats://{host}:{port}", user="sys", password="sys")
            for subject, opts in SYSTEM:
                reply = await sysc.request(subject, json.dumps(opts).encode(), timeout=2)
                answers[subject + json.dumps(opts)] = json.loads(reply.data)
            await sysc.close()
            for c in workload.clients:  # type: ignore[attr-defined]
                await c.close()
            results[kind] = answers

        asyncio.run(run())
    return results


def without_not_filled(path: str, answer: Any) -> Any:
    for where in NOT_FILLED_IN:
        if where[0] == path:
            parent = answer
            for key in where[1:-1]:
                parent = parent[key]
            parent.pop(where[-1], None)
    return answer


def without_natsd_only(path: str, answer: Any) -> Any:
    """``answer`` without the keys natsd adds (:data:`NATSD_ONLY`), which must be there."""
    for where, key in NATSD_ONLY:
        if where == path:
            assert key in answer, (path, key)
            del answer[key]
    return answer


@pytest.mark.parametrize("path", PATHS)
def test_same_keys(observed: dict[str, Any], path: str) -> None:
    (s1, mine), (s2, real) = observed[T.NATSD][path], observed[T.NATS_SERVER][path]
    assert s1 == s2 == 200
    assert shape(without_natsd_only(path, json.loads(mine))) == shape(without_not_filled(path, json.loads(real)))


@pytest.mark.parametrize("subject, opts", SYSTEM)
def test_same_system_replies(observed: dict[str, Any], subject: str, opts: dict[str, Any]) -> None:
    mine, real = (observed[kind][subject + json.dumps(opts)] for kind in (T.NATSD, T.NATS_SERVER))
    assert "error" not in mine and "error" not in real
    assert shape(without_natsd_only(subject, mine["data"])) == shape(real["data"])


@pytest.mark.parametrize("path", BAD)
def test_same_refusals(observed: dict[str, Any], path: str) -> None:
    assert observed[T.NATSD][path] == observed[T.NATS_SERVER][path]


def test_same_counts(observed: dict[str, Any]) -> None:
    def counts(kind: str) -> dict[str, Any]:
        got = {p: json.loads(observed[kind][p][1]) for p in PATHS}
        varz, connz, closed = got["varz"], got["connz?subs=1"], got["connz?state=closed&subs=1&auth=1"]
        return {
            "varz": {k: varz[k] for k in ("connections", "in_msgs", "out_msgs", "in_bytes", "out_bytes",
                                           "slow_consumers", "max_payload", "auth_required")},
            "connz": [(c["name"], c["in_msgs"], c["out_msgs"], c["subscriptions"],
                       sorted(c["subscriptions_list"])) for c in connz["connections"]],
            "closed": [(c["name"], c["reason"], c["authorized_user"], c["account"],
                        c["subscriptions_list"]) for c in closed["connections"]
                       if "name" in c],  # not the launcher's start-up probe
            "auth": [(c["authorized_user"], c["account"]) for c in got["connz?auth=1"]["connections"]],
            # Not "sent": nats-server counts a message delivered through an import (news.1 to
            # B) as sent by the account it was published in, natsd by the receiving account.
            "accstatz": sorted((s["acc"], s["conns"], s["received"]["msgs"], s["received"]["bytes"])
                               for s in got["accstatz"]["account_statz"]),
            "accounts": sorted(got["accountz"]["accounts"]),
            "subsz": [(s["account"], s["subject"], s["msgs"])
                      for s in got["subsz?subs=1&acc=A&test=foo.x"]["subscriptions_list"]],
            "exports": sorted(e["subject"] for e in got["accountz?acc=A"]["account_detail"]["exports"]),
            "healthz": got["healthz"],
        }

    assert counts(T.NATSD) == counts(T.NATS_SERVER)
