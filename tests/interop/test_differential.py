"""Differential wire test: the same raw-socket transcripts against nats-server and natsd.

Each transcript in ``transcripts.TRANSCRIPTS`` is played on both servers at
once and what every connection received (Read by Read) and whether the server
closed it must be identical, byte for byte, after masking the INFO values that
legitimately differ (``transcripts.MASKED_INFO_KEYS``).  -ERR texts are never
masked.

``NATSD_INTEROP_PAIR`` picks the two sides (default ``nats-server,natsd``);
``NATSD_INTEROP_PAIR=nats-server,nats-server`` plays every transcript on two
separate nats-servers, which checks that the transcripts themselves give
stable replies.  To just look at replies: ``python tests/interop/transcripts.py``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

import transcripts as T  # on sys.path via conftest.py

PAIR = tuple(os.environ.get("NATSD_INTEROP_PAIR", f"{T.NATS_SERVER},{T.NATSD}").split(","))
assert len(PAIR) == 2 and all(k in T.KINDS for k in PAIR), f"bad NATSD_INTEROP_PAIR: {PAIR}"

#: INFO keys nats-server 2.15.1 sends to a client of a default server, in order.
#: natsd must send the same keys in the same order (auth adds "auth_required").
#: Unlike 2.9.10: git_commit (the release build has one), api_lvl and xkey.
NATS_SERVER_INFO_KEYS = [
    "server_id",
    "server_name",
    "version",
    "proto",
    "git_commit",
    "go",
    "host",
    "port",
    "headers",
    "max_payload",
    "client_id",
    "client_ip",
    "api_lvl",
    "xkey",
]


def _play_pair(server_factory, t: T.Transcript) -> tuple[T.Recording, T.Recording]:
    a_kind, b_kind = PAIR
    a = server_factory(a_kind, t.conf)
    b = server_factory(b_kind, t.conf, instance=1 if a_kind == b_kind else 0)
    with ThreadPoolExecutor(2) as ex:
        fa = ex.submit(T.play, t, *a)
        fb = ex.submit(T.play, t, *b)
        return fa.result(), fb.result()


@pytest.mark.parametrize("transcript", T.TRANSCRIPTS, ids=lambda t: t.name)
def test_differential(server_factory, transcript: T.Transcript):
    rec_a, rec_b = _play_pair(server_factory, transcript)
    a_name, b_name = PAIR if PAIR[0] != PAIR[1] else (f"{PAIR[0]}#0", f"{PAIR[1]}#1")
    diff = T.describe_differences(rec_a, rec_b, transcript, a_name, b_name)
    if diff:
        pytest.fail(
            f"transcript {transcript.name!r} differs ({transcript.doc})\n{diff}\n\n"
            f"--- {a_name} (masked):\n{T.render(rec_a, transcript)}\n"
            f"--- {b_name} (masked):\n{T.render(rec_b, transcript)}",
            pytrace=False,
        )


def test_info_keys(server_factory):
    """natsd's INFO has exactly nats-server's keys, in nats-server's order."""
    t = T.by_name("info_on_connect")
    rec_a, rec_b = _play_pair(server_factory, t)
    info_a = T.info_objects(rec_a.conns[0].chunks[0])
    info_b = T.info_objects(rec_b.conns[0].chunks[0])
    assert len(info_a) == 1 and len(info_b) == 1, (rec_a, rec_b)
    if PAIR[0] == T.NATS_SERVER:
        assert list(info_a[0]) == NATS_SERVER_INFO_KEYS, "nats-server's INFO keys changed (not 2.15.1?)"
    assert list(info_b[0]) == list(info_a[0])
    for k, v in info_a[0].items():
        assert type(info_b[0][k]) is type(v), f"INFO[{k!r}]: {info_b[0][k]!r} vs {v!r}"


# --- the masking itself (no servers needed) -------------------------------------------


def test_mask_info_keeps_keys_types_and_order():
    raw = (
        b'INFO {"server_id":"NABC","server_name":"n1","version":"2.15.1","proto":1,"go":"go1.19",'
        b'"host":"127.0.0.1","port":4222,"headers":true,"max_payload":1048576,"client_id":5,'
        b'"client_ip":"127.0.0.1","connect_urls":["a:1","b:2"],"nonce":"x\\"y"} \r\nPONG\r\n'
    )
    assert T.normalize(raw) == (
        b'INFO {"server_id":"<str>","server_name":"<str>","version":"<str>","proto":1,"go":"<str>",'
        b'"host":"<str>","port":<num>,"headers":true,"max_payload":1048576,"client_id":<num>,'
        b'"client_ip":"<str>","connect_urls":[<list>],"nonce":"<str>"} \r\nPONG\r\n'
    )
    # Unmasked values and layout still count.
    assert T.normalize(raw.replace(b'"proto":1', b'"proto":2')) != T.normalize(raw)
    assert T.normalize(raw.replace(b"} \r\n", b"}\r\n")) != T.normalize(raw)
    assert T.normalize(raw.replace(b'"port":4222', b'"port":"4222"')) != T.normalize(raw)


def test_sort_copies_only_reorders_copies_of_one_message():
    t = T.Transcript("x", (), unordered_copies=True)
    a = b"MSG a 2 1\r\nx\r\nMSG a 1 1\r\nx\r\nMSG a 1 1\r\ny\r\nPONG\r\n"
    b = b"MSG a 1 1\r\nx\r\nMSG a 2 1\r\nx\r\nMSG a 1 1\r\ny\r\nPONG\r\n"
    c = b"MSG a 1 1\r\ny\r\nMSG a 1 1\r\nx\r\nMSG a 2 1\r\nx\r\nPONG\r\n"
    assert T.normalize(a, t) == T.normalize(b, t)
    assert T.normalize(a, t) != T.normalize(c, t)
    assert T.frames(b"HMSG s 1 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n+OK\r\n") == [
        b"HMSG s 1 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
        b"+OK\r\n",
    ]
