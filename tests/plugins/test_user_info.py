"""``$SYS.REQ.USER.INFO`` (nats-server 2.10), answered in every account."""

from __future__ import annotations

import json
import time

import nats

from natsd import hookimpl
from natsd.plugin.contracts import AuthResult
from natsd.security.permissions import Permissions

CONF = {
    "accounts": {
        "APP": {"users": [{"user": "a", "password": "a", "permissions": {
            "publish": {"allow": ["x", "$SYS.REQ.USER.INFO"], "deny": ["x.secret"]},
            "subscribe": "_INBOX.>", "allow_responses": True}}]},
        "SYS": {"users": [{"user": "sys", "password": "sys"}]},
    },
    "system_account": "SYS",
}


async def _ask(url: str, **credentials) -> dict:
    nc = await nats.connect(url, **credentials)
    try:
        reply = await nc.request("$SYS.REQ.USER.INFO", b"", timeout=2)
    finally:
        await nc.close()
    return json.loads(reply.data)


async def test_users_see_their_account_and_permissions(natsd_factory):
    running = natsd_factory(CONF)
    app = await _ask(running.url, user="a", password="a")
    assert set(app) == {"server", "data"}
    assert app["server"]["id"] == running.server.server_id
    assert app["data"] == {"user": "a", "account": "APP", "permissions": {
        "publish": {"allow": ["x", "$SYS.REQ.USER.INFO"], "deny": ["x.secret"]},
        "subscribe": {"allow": ["_INBOX.>"]},
        "responses": {"max": 1, "ttl": 120_000_000_000}}}
    assert (await _ask(running.url, user="sys", password="sys"))["data"] == {
        "user": "sys", "account": "SYS"}


class Expiring:
    """Accepts anyone into account TEMP for an hour, with a publish limit."""

    @hookimpl
    def natsd_authenticators(self):
        return [self]

    def authenticate(self, request):
        return AuthResult(ok=True, account="TEMP", user="temp", expires=time.time() + 3600,
                          permissions=Permissions(publish_allow=("$SYS.REQ.USER.INFO",)))


async def test_accounts_made_later_and_expiry(natsd_factory):
    running = natsd_factory(plugins=[Expiring()])
    data = (await _ask(running.url))["data"]
    assert data["account"] == "TEMP" and data["user"] == "temp"
    assert data["permissions"] == {"publish": {"allow": ["$SYS.REQ.USER.INFO"]}}
    assert 3590e9 < data["expires"] <= 3600e9
