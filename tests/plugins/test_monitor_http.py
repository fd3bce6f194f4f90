"""The monitor plugin's sans-I/O HTTP request parser and response builder, without sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from natsd_plugins.monitor.http import HTTPError, RequestParser, parse_head, response

GET = b"GET /connz?subs=1&limit=5&subs=0 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"


def test_one_request() -> None:
    [req] = RequestParser().receive_data(GET)
    assert (req.method, req.path, req.version, req.keep_alive) == ("GET", "/connz", "HTTP/1.1", True)
    assert req.query == {"subs": "1", "limit": "5"}  # the first of repeated parameters
    assert req.headers == {"host": "x", "accept": "*/*"}


def test_byte_by_byte_and_pipelined() -> None:
    parser = RequestParser()
    data = GET + b"HEAD /varz HTTP/1.1\r\n\r\n" + GET
    seen = []
    for i in range(len(data)):
        seen += parser.receive_data(data[i:i + 1])
    assert [(r.method, r.path) for r in seen] == [("GET", "/connz"), ("HEAD", "/varz"), ("GET", "/connz")]


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=30))
def test_any_split_gives_the_same_requests(cuts: list[int]) -> None:
    data = (GET + b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" + b"\r\nGET /a%20b HTTP/1.0\r\n\r\n")
    parser, seen, pos = RequestParser(), [], 0
    for cut in cuts:
        seen += parser.receive_data(data[pos:pos + cut])
        pos += cut
    seen += parser.receive_data(data[pos:])
    assert [(r.method, r.path, r.keep_alive) for r in seen] == [
        ("GET", "/connz", True), ("POST", "/x", True), ("GET", "/a b", False)]


def test_body_is_dropped() -> None:
    parser = RequestParser()
    assert parser.receive_data(b"PUT /varz HTTP/1.1\r\nContent-Length: 4\r\n\r\nab") == []
    [put, get] = parser.receive_data(b"cdGET / HTTP/1.1\r\n\r\n")
    assert (put.method, get.method, get.path) == ("PUT", "GET", "/")


@pytest.mark.parametrize("head, keep", [
    (b"GET / HTTP/1.1", True),
    (b"GET / HTTP/1.1\r\nConnection: close", False),
    (b"GET / HTTP/1.1\r\nConnection: Upgrade, Close", False),
    (b"GET / HTTP/1.0", False),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive", True),
])
def test_keep_alive(head: bytes, keep: bool) -> None:
    assert parse_head(head)[0].keep_alive is keep


@pytest.mark.parametrize("data, status", [
    (b"GET /\r\n\r\n", 400),
    (b"GET  / HTTP/1.1\r\n\r\n", 400),
    (b"G(T / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET / HTTX/1.1\r\n\r\n", 400),
    (b"GET varz HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", 413),
])
def test_refused(data: bytes, status: int) -> None:
    with pytest.raises(HTTPError) as info:
        RequestParser().receive_data(data)
    assert info.value.status == status


def test_head_size_is_bounded() -> None:
    parser = RequestParser(max_head=64)
    parser.receive_data(b"GET / HTTP/1.1\r\n")
    with pytest.raises(HTTPError) as info:
        parser.receive_data(b"X-Long: " + b"a" * 100)
    assert info.value.status == 431
    with pytest.raises(HTTPError):  # even when it arrives complete
        RequestParser(max_head=64).receive_data(b"GET / HTTP/1.1\r\nX: " + b"a" * 100 + b"\r\n\r\n")


def test_too_many_headers() -> None:
    head = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n"
    with pytest.raises(HTTPError) as info:
        RequestParser().receive_data(head)
    assert info.value.status == 431


def test_absolute_target_and_escapes() -> None:
    req, _ = parse_head(b"GET http://h:1/connz?acc=%24G&user= HTTP/1.1")
    assert req.path == "/connz" and req.query == {"acc": "$G", "user": ""}


def test_response() -> None:
    out = response(404, b"nope\n", keep_alive=False, headers=(("X-A", "1"),))
    head, body = out.split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 404 Not Found" and body == b"nope\n"
    assert b"Content-Length: 5" in lines and b"Connection: close" in lines and b"X-A: 1" in lines
    assert b"Content-Type: text/plain; charset=utf-8" in lines
    assert response(200, b"{}", "application/json", head=True).endswith(b"\r\n\r\n")
    assert b"Content-Length: 2" in response(200, b"{}", head=True)
