"""Accounts exports and imports: isolation by default, sharing only when declared."""

from __future__ import annotations

from typing import Any

import nats
import pytest

from natsd.config.conf import ConfError, parse
from natsd.server import Server

ACCOUNTS = """
accounts {
  A: {
    users: [ {user: a, password: p} ]
    exports: [
      {stream: "news.>"}
      {stream: "secret.>", accounts: [C]}
      {service: "svc.help"}
      {service: "svc.stream", response_type: stream}
    ]
  }
  B: {
    users: [ {user: b, password: p} ]
    imports: [
      {stream: {account: A, subject: "news.>"}, prefix: "from_a"}
      {service: {account: A, subject: "svc.help"}, to: "help"}
      {service: {account: A, subject: "svc.stream"}}
    ]
  }
  C: {
    users: [ {user: c, password: p} ]
    imports: [ {stream: {account: A, subject: "secret.>"}} ]
  }
}
"""


async def connect(srv: Any, user: str) -> Any:
    return await nats.connect(srv.url, user=user, password="p")


async def test_stream_import_with_prefix_and_isolation(natsd_factory: Any) -> None:
    srv = natsd_factory(parse(ACCOUNTS))
    a, b, c = await connect(srv, "a"), await connect(srv, "b"), await connect(srv, "c")
    b_news = await b.subscribe("from_a.news.>")
    b_plain = await b.subscribe("news.>")
    c_secret = await c.subscribe("secret.>")
    b_secret = await b.subscribe(">")
    for nc in (b, c):
        await nc.flush()
    await a.publish("news.today", b"headline")
    await a.publish("secret.plan", b"shh")
    await a.publish("other", b"private to A")
    await a.flush()
    msg = await b_news.next_msg(timeout=2)
    assert (msg.subject, msg.data) == ("from_a.news.today", b"headline")
    assert (await c_secret.next_msg(timeout=2)).data == b"shh"
    seen = []
    with pytest.raises(Exception):
        while True:
            seen.append((await b_secret.next_msg(timeout=0.3)).subject)
    assert seen == ["from_a.news.today"]  # B never sees secret.plan, other, or news.* unprefixed
    with pytest.raises(Exception):
        await b_plain.next_msg(timeout=0.1)
    for nc in (a, b, c):
        await nc.close()


async def test_service_import_request_reply(natsd_factory: Any) -> None:
    srv = natsd_factory(parse(ACCOUNTS))
    a, b = await connect(srv, "a"), await connect(srv, "b")

    async def helper(msg: Any) -> None:
        await msg.respond(b"A says: " + msg.data)

    await a.subscribe("svc.help", cb=helper)

    async def streamer(msg: Any) -> None:
        for i in range(3):
            await a.publish(msg.reply, b"part%d" % i)

    await a.subscribe("svc.stream", cb=streamer)
    await a.flush()
    reply = await b.request("help", b"hi", timeout=2)
    assert reply.data == b"A says: hi"
    inbox = b.new_inbox()
    parts = await b.subscribe(inbox)
    await b.publish("svc.stream", b"go", reply=inbox)
    got = [(await parts.next_msg(timeout=2)).data for _ in range(3)]
    assert got == [b"part0", b"part1", b"part2"]
    # B's request subject is not visible in A under B's name, and A cannot reach B's inboxes.
    with pytest.raises(Exception):
        await a.request("help", b"x", timeout=0.3)
    for nc in (a, b):
        await nc.close()


@pytest.mark.parametrize("accounts, key", [
    ("A: { exports: [ {stream: x} ] }\nB: { imports: [ {stream: {account: A, subject: y}} ] }", "subject"),
    ("A: { exports: [ {stream: x, accounts: [C]} ] }\nB: { imports: [ {stream: {account: A, subject: x}} ] }\nC: {}", "subject"),
    ("B: { imports: [ {stream: {account: Z, subject: x}} ] }", "account"),
    ("A: { exports: [ {service: x, response_type: bogus} ] }", "response_type"),
])
def test_bad_links_name_file_line_key(accounts: str, key: str) -> None:
    server = Server(parse(f"accounts {{\n{accounts}\n}}\n", "links.conf"))
    with pytest.raises(ConfError) as info:
        server.configure()
    assert info.value.key == key and info.value.file == "links.conf" and info.value.line
