"""The msgtrace plugin's sans-I/O part: reading trace headers and writing nats-server's JSON."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from natsd.config import ConfigError
from natsd.config.conf import parse
from natsd_plugins.msgtrace import account_dests
from natsd_plugins.msgtrace.events import (
    TraceEvent,
    go_json,
    parse_headers,
    sampled,
    set_header,
    timestamp,
    trace_only,
    traceparent,
)


def test_headers_are_read_as_nats_server_reads_them_for_tracing() -> None:
    block = (b"NATS/1.0\r\nNats-Trace-Dest: trace.dest\r\nX-App: v1\r\nX-App:\tv2 \r\nX-Empty:\r\n"
             b":novalue\r\nTraceParent: 00-ab-cd-01\r\n\r\n")
    assert parse_headers(block) == {"Nats-Trace-Dest": ["trace.dest"], "X-App": ["v1", "v2"],
                                    "TraceParent": ["00-ab-cd-01"]}
    assert parse_headers(b"NATS/1.0 503\r\nNats-Trace-Dest: x\r\n\r\n") is None  # a status: never traced
    assert traceparent({"TraceParent": ["x"]}) == "x"
    assert [trace_only({"Nats-Trace-Only": [v]}) for v in ("1", "true", "ON", "yes", "0")] == [
        True, True, True, False, False]
    assert [sampled(v) for v in ("00-a-b-01", "00-a-b-03", "00-a-b-00", "garbage", "00-a-b-1")] == [
        True, True, False, False, False]


_token = st.text(alphabet="abcdefghijkXYZ-_.", min_size=1, max_size=8)


@given(st.lists(st.tuples(_token, _token), max_size=6), _token)
def test_setting_a_header_replaces_every_line_of_it_and_moves_it_last(
        fields: list[tuple[str, str]], value: str) -> None:
    block = b"NATS/1.0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in fields) + b"\r\n"
    out = set_header(block, "Nats-Trace-Hop", value)
    parsed = parse_headers(out)
    assert parsed is not None and list(parsed)[-1] == "Nats-Trace-Hop"
    assert parsed["Nats-Trace-Hop"] == [value]
    before = parse_headers(block) or {}
    assert {k: v for k, v in parsed.items() if k != "Nats-Trace-Hop"} == {
        k: v for k, v in before.items() if k != "Nats-Trace-Hop"}
    assert out.endswith(b"\r\n\r\n")


def test_the_json_is_go_s() -> None:
    assert go_json({"sub": "a.>", "x": "<&>"}) == b'{"sub":"a.\\u003e","x":"\\u003c\\u0026\\u003e"}'
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?(Z|[+-]\d\d:\d\d)", timestamp())
    record = TraceEvent({"b": ["2"], "A": ["1"]}, 46)
    record.ingress(0, 7, "", "$G", "foo")
    record.add("js", stream="S", subject=None, nointerest=False, error="")
    record.egress(1, 3, "S2", hop="1")
    body = json.loads(record.json({"name": "S1"}))
    assert list(body) == ["server", "request", "events"]  # no hops: none counted
    assert list(body["request"]["header"]) == ["A", "b"]  # sorted bytewise, as Go's maps
    assert [list(e) for e in body["events"]] == [["type", "ts", "kind", "cid", "acc", "subj"],
                                                 ["type", "ts", "stream"],
                                                 ["type", "ts", "kind", "cid", "name", "hop"]]


def test_account_msg_trace_is_checked_with_nats_server_s_words() -> None:
    conf = parse('accounts { A { msg_trace: { dest: "t.a", sampling: "50%" } }, B { trace_dest: "t.b" },\n'
                 ' C { msg_trace: { sampling: 20 } } }')
    assert account_dests(conf["accounts"]) == {"A": ("t.a", 50), "B": ("t.b", 100)}
    with pytest.raises(ConfigError, match='Trace destination "t.\\*" is not valid'):
        account_dests(parse('accounts { A { msg_trace: { dest: "t.*" } } }')["accounts"])
    with pytest.raises(ConfigError, match=r"Ttrace destination sampling value 101 is invalid, needs to be \[1..100\]"):
        account_dests(parse('accounts { A { msg_trace: { dest: "t", sampling: 101 } } }')["accounts"])
