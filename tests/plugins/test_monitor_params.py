"""Monitoring request options: query-string and JSON forms, and nats-server's error texts."""

from __future__ import annotations

import pytest

from natsd_plugins.monitor.params import BadRequest, Options
from natsd_plugins.monitor.settings import MonitorSettings, load
from natsd.config.conf import ConfError, parse


@pytest.mark.parametrize("value, expected", [
    ("1", True), ("t", True), ("TRUE", True), ("True", True), ("true", True),
    ("0", False), ("f", False), ("FALSE", False), ("false", False), (None, False), ("", False),
    (True, True), (False, False),
])
def test_flag(value: object, expected: bool) -> None:
    assert Options({"auth": value}).flag("auth") is expected


@pytest.mark.parametrize("value", ["yes", "maybe", "TrUe", "2", 1])
def test_bad_flag(value: object) -> None:
    with pytest.raises(BadRequest) as info:
        Options({"auth": value}).flag("auth")
    if value == "maybe":
        assert str(info.value) == ("Error decoding boolean for 'auth': strconv.ParseBool: "
                                   'parsing "maybe": invalid syntax')


def test_int_and_uint() -> None:
    o = Options({"limit": "12", "offset": "-3", "cid": "7", "plus": "+4", "json": 5})
    assert (o.integer("limit"), o.integer("offset"), o.unsigned("cid"), o.integer("plus"), o.integer("json")) == (12, -3, 7, 4, 5)
    assert Options({}).integer("limit") == 0 and Options({"limit": ""}).integer("limit") == 0
    with pytest.raises(BadRequest, match=r"""^Error decoding int for 'limit': strconv.Atoi: parsing "abc": invalid syntax$"""):
        Options({"limit": "abc"}).integer("limit")
    for bad in ("1.5", " 1", "1_0", "0x10"):
        with pytest.raises(BadRequest):
            Options({"limit": bad}).integer("limit")
    with pytest.raises(BadRequest, match="value out of range"):
        Options({"limit": "9" * 30}).integer("limit")
    with pytest.raises(BadRequest, match=r"""^Error decoding uint64 for 'cid': strconv.ParseUint: parsing "-1": invalid syntax$"""):
        Options({"cid": "-1"}).unsigned("cid")


def test_names_are_tried_in_order() -> None:
    o = Options({"subscriptions": True, "account": "A"})
    assert o.flag("subs", "subscriptions") is True
    assert o.text("acc", "account") == "A"
    assert Options({"acc": "B", "account": "A"}).text("acc", "account") == "B"


@pytest.mark.parametrize("params, expected", [
    ({}, (False, False)), ({"subs": "1"}, (True, False)), ({"subs": "detail"}, (False, True)),
    ({"subs": "DETAIL"}, (False, True)), ({"subscriptions": True}, (True, False)),
    ({"subscriptions": True, "subscriptions_detail": True}, (False, True)),
])
def test_subs(params: dict, expected: tuple[bool, bool]) -> None:
    assert Options(params).subs() == expected


def test_state() -> None:
    for value, state in (("open", "open"), ("OPEN", "open"), ("closed", "closed"), ("all", "all"),
                         ("any", "all"), (0, "open"), (1, "closed"), (2, "all"), (None, "open")):
        assert Options({"state": value}).state() == state
    with pytest.raises(BadRequest, match="^Error decoding state for xyz$"):
        Options({"state": "xyz"}).state()
    with pytest.raises(BadRequest):
        Options({"state": 3}).state()


def test_names() -> None:
    assert Options({"accounts": ["A", "B"]}).names("accounts") == ["A", "B"]
    assert Options({"accounts": "A"}).names("accounts") == ["A"]
    assert Options({}).names("accounts") == []
    with pytest.raises(BadRequest):
        Options({"accounts": [1]}).names("accounts")


@pytest.mark.parametrize("text, expected", [
    ("http_port: 8222", MonitorSettings("", 8222, "")),
    ("monitor_port: 8222", MonitorSettings("", 8222, "")),
    ("http_port: -1", MonitorSettings("", 0, "")),
    ('http: "127.0.0.1:8222"', MonitorSettings("127.0.0.1", 8222, "")),
    ('http: "[::1]:8222"', MonitorSettings("::1", 8222, "")),
    ("http: 8222", MonitorSettings("", 8222, "")),
    ('http: "0.0.0.0:1"\nhttp_port: 2', MonitorSettings("0.0.0.0", 2, "")),
    ('http_port: 1\nhttp_base_path: "/nats/"', MonitorSettings("", 1, "/nats")),
    ('http_base_path: "nats"', MonitorSettings("", None, "/nats")),
    ('http_base_path: "/"', MonitorSettings("", None, "")),
    ('https: "127.0.0.1:7"', MonitorSettings("127.0.0.1", 7, "", https=True)),
    ("https_port: 0", MonitorSettings("", 0, "", https=True)),
])
def test_settings(text: str, expected: MonitorSettings) -> None:
    assert load(parse(text), tls=object()) == expected


@pytest.mark.parametrize("text, match", [
    ("https_port: 8443", "HTTPS monitoring uses the server's certificate"),
    ('https: "0.0.0.0:8443"', "HTTPS monitoring uses the server's certificate"),
    ("http_port: 1\nhttps_port: 2", "either HTTP or HTTPS"),
    ('http_port: "abc"', "expected a port number"),
    ("http_port: 70000", "out of range"),
    ('http: "nohost"', "could not parse address string"),
    ('http: "h:x"', "could not parse address string"),
    ("http_base_path: 5", "expected a path"),
])
def test_bad_settings(text: str, match: str) -> None:
    with pytest.raises(ConfError, match=match) as info:
        load(parse(text))
    assert info.value.line == 1 or "\n" in text
