"""TLS on the client port (natsd.conn.tlsgate) with nats-py and raw sockets against an in-process natsd."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
from typing import Any

import nats
import pytest

from natsd.testing import read_until
from natsd.config.tls import load_tls

PARTIAL_CLIENT_HELLO = b"\x16\x03\x01\x00\xff\x01\x00"


def info_of(port: int) -> tuple[socket.socket, dict[str, Any]]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    line = read_until(sock, b"\r\n")
    assert line.startswith(b"INFO ")
    return sock, json.loads(line[5:])


async def connect(url: str, **kw: Any) -> Any:
    return await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0,
                              connect_timeout=2, **kw)


async def across(receiver: Any, sender: Any, subject: str = "greet") -> bytes:
    """What ``receiver`` gets of the message ``sender`` publishes to ``subject``."""
    sub = await receiver.subscribe(subject)
    await receiver.flush()
    await sender.publish(subject, b"hello")
    msg = await sub.next_msg(timeout=2)
    await sub.unsubscribe()
    return msg.data


async def roundtrip(nc: Any) -> bytes:
    return await across(nc, nc)


async def test_pub_sub_over_tls(natsd_factory: Any, tls_certs: Any) -> None:
    srv = natsd_factory({"tls": tls_certs.block()})
    sock, info = info_of(srv.port)
    sock.close()
    assert info["tls_required"] is True and "tls_verify" not in info and "tls_available" not in info
    nc = await connect(srv.url, tls=tls_certs.client())
    assert await roundtrip(nc) == b"hello"
    clients = srv.call(lambda: list(srv.server.clients.values()))
    assert [c.tls.version for c in clients] == ["1.3"] and clients[0].tls.peer is None
    await nc.close()


def test_plaintext_client_is_told_tls_is_required(natsd_factory: Any, tls_certs: Any,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    srv = natsd_factory({"tls": tls_certs.block()})
    caplog.set_level(logging.DEBUG, logger="natsd.client")
    sock, _ = info_of(srv.port)
    sock.sendall(b"CONNECT {}\r\nPING\r\n")
    assert read_until(sock) == b"-ERR 'Secure Connection - TLS Required'\r\n"  # then closed
    sock.close()
    deadline = time.monotonic() + 2
    while "TLS Handshake Failure" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "TLS handshake error: first record does not look like a TLS handshake" in caplog.text
    assert "Client connection closed: TLS Handshake Failure" in caplog.text


async def test_mutual_tls(natsd_factory: Any, tls_certs: Any) -> None:
    srv = natsd_factory({"tls": tls_certs.block(verify=True, ca_file=tls_certs.ca)})
    sock, info = info_of(srv.port)
    sock.close()
    assert info["tls_required"] is True and info["tls_verify"] is True
    nc = await connect(srv.url, tls=tls_certs.alice())
    assert await roundtrip(nc) == b"hello"
    peer = srv.call(lambda: next(iter(srv.server.clients.values())).tls.peer)
    assert peer.subject_dn == "CN=alice,OU=Unit,O=Org" and peer.emails == ("alice@example.com",)
    await nc.close()
    for ctx in (tls_certs.client(),  # no client certificate
                tls_certs.client(tls_certs.other_client_cert, tls_certs.other_client_key)):
        with pytest.raises(Exception):
            bad = await connect(srv.url, tls=ctx)
            await bad.flush(timeout=1)  # TLS 1.3: the refusal may come after the client's Finished
    assert srv.call(lambda: len(srv.server.clients)) == 0


async def test_client_refuses_a_server_from_another_ca(natsd_factory: Any, tls_certs: Any) -> None:
    srv = natsd_factory({"tls": tls_certs.block()})
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(srv.url, tls=tls_certs.client(ca=tls_certs.other_ca))


@pytest.mark.parametrize("stall", [b"", PARTIAL_CLIENT_HELLO])
async def test_stalled_handshake_is_cut_without_blocking_others(natsd_factory: Any, tls_certs: Any,
                                                                 stall: bytes) -> None:
    srv = natsd_factory({"tls": tls_certs.block(timeout=1)})
    staller, _ = info_of(srv.port)
    staller.sendall(stall)
    started = time.monotonic()
    nc = await connect(srv.url, tls=tls_certs.client())  # accepted while the other one stalls
    assert time.monotonic() - started < 0.8
    assert await roundtrip(nc) == b"hello"
    closed = await asyncio.get_running_loop().run_in_executor(None, read_until, staller)
    elapsed = time.monotonic() - started
    assert closed == b"" and 0.85 < elapsed < 2.5
    staller.close()
    assert await roundtrip(nc) == b"hello"
    await nc.close()


async def test_handshake_first(natsd_factory: Any, tls_certs: Any) -> None:
    srv = natsd_factory({"tls": tls_certs.block(handshake_first=True, timeout=0.5)})
    with socket.create_connection(("127.0.0.1", srv.port), timeout=2) as sock:
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            sock.recv(100)  # no INFO before the handshake
    nc = await connect(srv.url, tls=tls_certs.client(), tls_handshake_first=True)
    assert await roundtrip(nc) == b"hello"
    assert nc._server_info["tls_required"] is True
    await nc.close()
    with pytest.raises(Exception):
        await connect(srv.url, tls=tls_certs.client())  # waits for an INFO that never comes


async def test_handshake_first_with_fallback(natsd_factory: Any, tls_certs: Any) -> None:
    srv = natsd_factory({"tls": tls_certs.block(handshake_first="100ms")})
    first = await connect(srv.url, tls=tls_certs.client(), tls_handshake_first=True)
    late = await connect(srv.url, tls=tls_certs.client())  # INFO after 100 ms of silence
    assert await across(first, late) == b"hello"
    await first.close()
    await late.close()


async def test_allow_non_tls(natsd_factory: Any, tls_certs: Any) -> None:
    srv = natsd_factory({"tls": tls_certs.block(), "allow_non_tls": True})
    sock, info = info_of(srv.port)
    sock.sendall(b"PING\r\n")
    assert read_until(sock) == b"PONG\r\n"
    sock.close()
    assert info.get("tls_available") is True and "tls_required" not in info
    plain = await connect(srv.url)
    sub = await plain.subscribe("mixed")
    await plain.flush()
    # nats-py upgrades only on tls_required; a client that wants TLS starts it after INFO.
    raw, _ = info_of(srv.port)
    with tls_certs.client().wrap_socket(raw, server_hostname="127.0.0.1") as secure:
        secure.sendall(b'CONNECT {"verbose":false}\r\nPUB mixed 6\r\nacross\r\nPING\r\n')
        assert read_until(secure) == b"PONG\r\n"
        assert (await sub.next_msg(timeout=2)).data == b"across"
        tls_states = srv.call(lambda: sorted(c.tls is not None for c in srv.server.clients.values()))
    assert tls_states == [False, True]
    await plain.close()


async def test_pinned_certs(natsd_factory: Any, tls_certs: Any) -> None:
    from natsd.security.peercert import PeerCertificate

    der = ssl.PEM_cert_to_DER_cert(open(tls_certs.alice_cert).read())
    pin = PeerCertificate(der=der).spki_sha256()
    srv = natsd_factory({"tls": tls_certs.block(verify=True, ca_file=tls_certs.ca, pinned_certs=[pin])})
    nc = await connect(srv.url, tls=tls_certs.alice())
    await nc.flush()
    await nc.close()
    with pytest.raises(Exception):
        bob = await connect(srv.url, tls=tls_certs.client(tls_certs.bob_cert, tls_certs.bob_key))
        await bob.flush(timeout=1)


async def test_reload_tls_applies_to_new_connections_only(natsd_factory: Any, tls_certs: Any) -> None:
    srv = natsd_factory({"tls": tls_certs.block()})
    old = await connect(srv.url, tls=tls_certs.client())
    renewed = load_tls({"tls": {"cert_file": tls_certs.other_server_cert,
                                "key_file": tls_certs.other_server_key}})
    srv.call(srv.server.reload_tls, renewed)
    with pytest.raises(Exception):
        await connect(srv.url, tls=tls_certs.client())  # trusts only the first CA
    new = await connect(srv.url, tls=tls_certs.client(ca=tls_certs.other_ca))
    assert await across(old, new) == b"hello"  # the old connection keeps its session
    assert await roundtrip(old) == b"hello"
    srv.call(srv.server.reload_tls, None)  # TLS off for new connections
    sock, info = info_of(srv.port)
    sock.close()
    assert "tls_required" not in info
    await old.close()
    await new.close()


def test_commands_sent_with_the_handshake_are_not_lost(natsd_factory: Any, tls_certs: Any) -> None:
    """A client writing right after its Finished: the server decrypts it before handing over."""
    srv = natsd_factory({"tls": tls_certs.block()})
    raw, _ = info_of(srv.port)
    with tls_certs.client().wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(b'CONNECT {"verbose":false}\r\nSUB a 1\r\nPUB a 2\r\nhi\r\nPING\r\n')
        assert read_until(sock) == b"MSG a 1 2\r\nhi\r\nPONG\r\n"
