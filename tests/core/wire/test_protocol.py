"""The sans-I/O parser: bytes in, handler calls out, no sockets."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from natsd.wire import errors
from natsd.wire.errors import ProtocolError
from natsd.wire.protocol import Parser, encode_err, encode_hmsg, encode_info, encode_msg, split_run


class Recorder:
    """A handler that records every operation as a tuple."""

    def __init__(self) -> None:
        self.ops: list[tuple[Any, ...]] = []

    def on_connect(self, options: dict[str, Any]) -> None:
        self.ops.append(("CONNECT", options))

    def on_info(self, info: dict[str, Any]) -> None:
        self.ops.append(("INFO", info))

    def on_pub(self, subject: bytes, reply: bytes | None, size: bytes, payload: bytes) -> None:
        self.ops.append(("PUB", subject, reply, size, payload))

    def on_hpub(self, subject: bytes, reply: bytes | None, hdr: int, size: bytes, payload: bytes) -> None:
        self.ops.append(("HPUB", subject, reply, hdr, size, payload))

    def on_pub_run(self, subject: bytes, size: bytes, line: bytes, frames: bytes, count: int) -> None:
        payloads = split_run(line, frames, count)
        assert len(payloads) == count >= 2
        for payload in payloads:
            self.on_pub(subject, None, size, payload)

    def on_sub(self, subject: bytes, queue: bytes | None, sid: bytes) -> None:
        self.ops.append(("SUB", subject, queue, sid))

    def on_unsub(self, sid: bytes, max_msgs: int | None) -> None:
        self.ops.append(("UNSUB", sid, max_msgs))

    def on_ping(self) -> None:
        self.ops.append(("PING",))

    def on_pong(self) -> None:
        self.ops.append(("PONG",))

    def on_ok(self) -> None:
        self.ops.append(("+OK",))

    def on_err(self, text: bytes) -> None:
        self.ops.append(("-ERR", text))


def parse(*chunks: bytes, **kw: int) -> list[tuple[Any, ...]]:
    rec = Recorder()
    parser = Parser(rec, **kw)
    for chunk in chunks:
        parser.feed(chunk)
    return rec.ops


STREAM = (
    b'CONNECT {"verbose":false,"headers":true}\r\n'
    b"PING\r\nPONG\r\n"
    b"SUB foo.* 1\r\nSUB bar q1 2\r\n"
    b"PUB foo.a 5\r\nhello\r\n"
    b"PUB foo.b _INBOX.1 0\r\n\r\n"
    b"HPUB foo.c 12 17\r\nNATS/1.0\r\n\r\nhello\r\n"
    b"HPUB foo.c rep 12 12\r\nNATS/1.0\r\n\r\n\r\n"
    b"pub foo.d 3\r\n\r\n\n\r\n"
    b"UNSUB 1 10\r\nunsub 2\r\n"
    b"+OK\r\n-ERR 'x'\r\n"
)

EXPECTED = [
    ("CONNECT", {"verbose": False, "headers": True}),
    ("PING",), ("PONG",),
    ("SUB", b"foo.*", None, b"1"), ("SUB", b"bar", b"q1", b"2"),
    ("PUB", b"foo.a", None, b"5", b"hello\r\n"),
    ("PUB", b"foo.b", b"_INBOX.1", b"0", b"\r\n"),
    ("HPUB", b"foo.c", None, 12, b"17", b"NATS/1.0\r\n\r\nhello\r\n"),
    ("HPUB", b"foo.c", b"rep", 12, b"12", b"NATS/1.0\r\n\r\n\r\n"),
    ("PUB", b"foo.d", None, b"3", b"\r\n\n\r\n"),
    ("UNSUB", b"1", 10), ("UNSUB", b"2", None),
    ("+OK",), ("-ERR", b"'x'"),
]


def test_stream_in_one_read() -> None:
    assert parse(STREAM) == EXPECTED


def test_byte_by_byte() -> None:
    assert parse(*(STREAM[i:i + 1] for i in range(len(STREAM)))) == EXPECTED


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_every_chunking_parses_the_same(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)])]
    assert parse(*chunks) == EXPECTED


def test_case_insensitive_ops_and_tabs() -> None:
    ops = parse(b"PuB\tfoo\t2\r\nhi\r\nsUb foo 1\r\nPiNg\r\nhpub x 12 12\r\nNATS/1.0\r\n\r\n\r\n")
    assert ops == [("PUB", b"foo", None, b"2", b"hi\r\n"), ("SUB", b"foo", None, b"1"),
                   ("PING",), ("HPUB", b"x", None, 12, b"12", b"NATS/1.0\r\n\r\n\r\n")]


def test_lf_only_line_endings() -> None:
    assert parse(b"PING\nSUB a 1\n") == [("PING",), ("SUB", b"a", None, b"1")]


@pytest.mark.parametrize("data, text", [
    (b"FOO\r\n", errors.UNKNOWN_PROTOCOL),
    (b"PUB foo 5\r\nhelloXX", errors.UNKNOWN_PROTOCOL),
    (b"PUB foo 2000\r\n", errors.MAX_PAYLOAD),
    (b"HPUB foo 10 2000\r\n", errors.MAX_PAYLOAD),
    (b"PUB foo\r\n", None),
    (b"PUB foo -1\r\n", None),
    (b"PUB foo 1x\r\n", None),
    (b"HPUB foo 5 2\r\n", None),
    (b"SUB foo\r\n", None),
    (b"UNSUB\r\n", errors.UNKNOWN_PROTOCOL),
    (b"UNSUB \r\n", None),
    (b" PING\r\n", errors.UNKNOWN_PROTOCOL),
    (b"PUB foo 1234567890\r\n", None),
    (b"CONNECT {bad json\r\n", None),
    (b"CONNECT [1]\r\n", None),
    (b"SUB " + b"x" * 5000 + b" 1\r\n", errors.MAX_CONTROL_LINE),
    (b"SUB " + b"x" * 5000, errors.MAX_CONTROL_LINE),
])
def test_errors(data: bytes, text: str | None) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(data, max_payload=1000)
    assert info.value.text == text


def test_large_payload_in_many_chunks_is_joined_once() -> None:
    body = bytes(range(256)) * 1000
    frame = b"PUB big %d\r\n" % len(body) + body + b"\r\n"
    chunks = [frame[i:i + 1000] for i in range(0, len(frame), 1000)]
    rec = Recorder()
    parser = Parser(rec, max_payload=1 << 20)
    for chunk in chunks[:-1]:
        parser.feed(chunk)
        assert rec.ops == []
    assert parser.buffered == len(frame) - len(chunks[-1])
    parser.feed(chunks[-1])
    assert rec.ops == [("PUB", b"big", None, str(len(body)).encode(), body + b"\r\n")]
    assert parser.buffered == 0


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_garbage_raises_only_protocol_errors(chunks: list[bytes]) -> None:
    rec = Recorder()
    parser = Parser(rec, max_payload=4096, max_control_line=256)
    try:
        for chunk in chunks:
            parser.feed(chunk)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([
    b"PING\r\n", b"PUB a.b 3\r\nxyz\r\n", b"SUB a.* 9\r\n", b"HPUB h 12 14\r\nNATS/1.0\r\n\r\nab\r\n",
    b"UNSUB 9 3\r\n", b"PONG\r\n", b"PUB r x 0\r\n\r\n"]), max_size=30), st.data())
def test_random_valid_streams_any_chunking(frames: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(frames)
    whole = parse(stream)
    assert len(whole) == len(frames)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=20))))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    assert parse(*chunks) == whole


def test_encoders() -> None:
    assert encode_err("Invalid Subject") == b"-ERR 'Invalid Subject'\r\n"
    assert encode_info({"a": 1}) == b'INFO {"a":1} \r\n'
    assert encode_msg(b"s", b"1", None, b"hi") == b"MSG s 1 2\r\nhi\r\n"
    assert encode_msg(b"s", b"1", b"r", b"") == b"MSG s 1 r 0\r\n\r\n"
    h = b"NATS/1.0\r\n\r\n"
    assert encode_hmsg(b"s", b"1", b"r", h, b"x") == b"HMSG s 1 r 12 13\r\n" + h + b"x\r\n"


def test_run_of_identical_frames_stops_at_a_bad_frame() -> None:
    rec = Recorder()
    parser = Parser(rec)
    with pytest.raises(ProtocolError):
        parser.feed(b"PUB a 1\r\nx\r\n" * 4 + b"PUB a 1\r\nyZZ")
    assert rec.ops == [("PUB", b"a", None, b"1", b"x\r\n")] * 4


def test_runs_with_payloads_containing_the_control_line() -> None:
    line = b"PUB a 12\r\n"
    frames = (line + b"PUB a 12\r\nzz\r\n") * 3 + line + b"0123456789ab\r\n"
    assert [op[4] for op in parse(frames)] == [b"PUB a 12\r\nzz\r\n"] * 3 + [b"0123456789ab\r\n"]


def test_a_remembered_hpub_line_is_checked_like_a_new_one() -> None:
    rec = Recorder()
    parser = Parser(rec)
    frame = b"HPUB h r 12 14\r\nNATS/1.0\r\n\r\nab\r\n"
    parser.feed(frame * 3)
    assert rec.ops == [("HPUB", b"h", b"r", 12, b"14", b"NATS/1.0\r\n\r\nab\r\n")] * 3
    with pytest.raises(ProtocolError):
        parser.feed(b"HPUB h r 12 14\r\nNATS/1.0\r\n\r\nabZZ")  # the remembered line, a bad frame
    parser = Parser(rec)
    parser.feed(frame)
    parser.set_limits(10, 4096)  # a lower max_payload forgets the lines checked against the old one
    with pytest.raises(ProtocolError) as info:
        parser.feed(frame)
    assert info.value.text == errors.MAX_PAYLOAD
