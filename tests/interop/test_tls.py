"""TLS on the client port side by side with nats-server 2.15.1, with the same certificates.

Both servers run as processes (natsd under uvloop, as ``python -m natsd``
runs it) with the same config text. Compared: INFO (masked) and what a
plaintext client gets, nats-py over TLS and mutual TLS, the client refusing
an untrusted server, a stalled handshake being cut at ``timeout``, and
``verify_and_map`` with permissions, and what monitoring shows of TLS.
(natsd's ``handshake_first`` is tested in tests/core/conn/test_tlsgate.py.)
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from typing import Any

import nats
import pytest

import transcripts as T  # on sys.path via conftest.py
from natsd.testing import read_until

KINDS = (T.NATS_SERVER, T.NATSD)


def plaintext_client(host: str, port: int, send: bytes) -> tuple[bytes, bytes, float]:
    """Masked INFO, what followed ``send`` until PONG or the close, and how long that took."""
    with socket.create_connection((host, port), timeout=5) as sock:
        f = sock.makefile("rb")
        info = T.mask_info(f.readline())
        started = time.monotonic()
        sock.sendall(send)
        try:
            rest = read_until(sock)
        except ConnectionResetError:  # closed with our bytes unread: nothing was sent
            rest = b""
        return info, rest, time.monotonic() - started


def both(server_factory: Any, conf: str, fn: Any, *args: Any) -> dict[str, Any]:
    return {kind: fn(*server_factory(kind, conf), *args) for kind in KINDS}


@pytest.mark.parametrize("extra", ["", "verify: true", "allow_non_tls"])
def test_info_and_plaintext_client(server_factory: Any, tls_certs: Any, extra: str) -> None:
    conf = tls_certs.conf(f'ca_file: "{tls_certs.ca}"\n  {extra}' if extra.startswith("verify") else "")
    if extra == "allow_non_tls":
        conf = "allow_non_tls: true\n" + conf
    seen = both(server_factory, conf, plaintext_client, b"CONNECT {}\r\nPING\r\n")
    (info, rest, _), (info_d, rest_d, _) = seen[T.NATS_SERVER], seen[T.NATSD]
    assert info_d == info
    if extra == "allow_non_tls":
        assert rest_d == rest
        assert b'"tls_available":true' in info and rest.endswith(b"PONG\r\n")
    else:
        # nats-server writes this error too, but closes with the client's bytes
        # unread, so the client gets a reset instead; natsd's arrives.
        assert rest == b""
        assert rest_d == b"-ERR 'Secure Connection - TLS Required'\r\n"
        assert b'"tls_required":true' in info
        assert (b'"tls_verify":true' in info) == (extra != "")


@pytest.mark.parametrize("stall", [b"", b"\x16\x03\x01\x00\xff\x01\x00"])
def test_stalled_handshake_is_cut_at_timeout(server_factory: Any, tls_certs: Any, stall: bytes) -> None:
    seen = both(server_factory, tls_certs.conf("timeout: 0.5"), plaintext_client, stall)
    for kind, (_, rest, elapsed) in seen.items():
        assert rest == b"" and 0.35 < elapsed < 1.5, (kind, rest, elapsed)


async def connect(host: str, port: int, ctx: ssl.SSLContext, **kw: Any) -> Any:
    return await nats.connect(f"nats://{host}:{port}", tls=ctx, allow_reconnect=False,
                              max_reconnect_attempts=0, connect_timeout=2, **kw)


async def tls_scenario(host: str, port: int, certs: Any) -> dict[str, Any]:
    """What happens to good and bad TLS clients of a server with verify."""
    out: dict[str, Any] = {}
    nc = await connect(host, port, certs.alice())
    sub = await nc.subscribe("tls")
    await nc.publish("tls", b"over tls")
    out["pubsub"] = (await sub.next_msg(timeout=2)).data
    await nc.close()
    for name, ctx in (("no cert", certs.client()),
                      ("other CA", certs.client(certs.other_client_cert, certs.other_client_key)),
                      ("untrusted server", certs.client(certs.alice_cert, certs.alice_key,
                                                        ca=certs.other_ca))):
        try:
            bad = await connect(host, port, ctx)
            await bad.flush(timeout=1)
            out[name] = "connected"
            await bad.close()
        except ssl.SSLCertVerificationError:
            out[name] = "client refused the server"
        except Exception:
            out[name] = "refused"
    return out


def test_nats_py_and_mutual_tls(server_factory: Any, tls_certs: Any) -> None:
    conf = tls_certs.conf(f'ca_file: "{tls_certs.ca}"\n  verify: true')
    seen = {kind: asyncio.run(tls_scenario(*server_factory(kind, conf), tls_certs)) for kind in KINDS}
    assert seen[T.NATSD] == seen[T.NATS_SERVER] == {
        "pubsub": b"over tls", "no cert": "refused", "other CA": "refused",
        "untrusted server": "client refused the server"}


MAP_CONF = """
accounts {
  A: { users: [ {user: "CN=alice,OU=Unit,O=Org", permissions: {publish: "alice.>", subscribe: "alice.>"}} ] }
}
"""


def mapped_client(host: str, port: int, ctx: ssl.SSLContext) -> bytes:
    raw = socket.create_connection((host, port), timeout=5)
    raw.makefile("rb").readline()
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(b'CONNECT {"verbose":false}\r\nSUB alice.x 1\r\nPUB alice.x 2\r\nhi\r\n'
                     b"PUB other 2\r\nno\r\nPING\r\n")
        return read_until(sock)  # PONG, or the close after an authorization error


def test_verify_and_map(server_factory: Any, tls_certs: Any) -> None:
    conf = tls_certs.conf(f'ca_file: "{tls_certs.ca}"\n  verify_and_map: true') + MAP_CONF
    alice = both(server_factory, conf, mapped_client, tls_certs.alice())
    assert alice[T.NATSD] == alice[T.NATS_SERVER]
    assert alice[T.NATSD] == (b"MSG alice.x 1 2\r\nhi\r\n"
                              b"-ERR 'Permissions Violation for Publish to \"other\"'\r\nPONG\r\n")
    bob = both(server_factory, conf, mapped_client,
               tls_certs.client(tls_certs.bob_cert, tls_certs.bob_key))
    assert bob[T.NATSD] == bob[T.NATS_SERVER] == b"-ERR 'Authorization Violation'\r\n"
    info = both(server_factory, conf, lambda h, p: json.loads(
        socket.create_connection((h, p), timeout=5).makefile("rb").readline()[5:]))
    assert {k: v for k, v in info[T.NATSD].items() if k.startswith(("tls", "auth"))} == \
        {k: v for k, v in info[T.NATS_SERVER].items() if k.startswith(("tls", "auth"))} == \
        {"auth_required": True, "tls_required": True, "tls_verify": True}


def monitored_tls(host: str, port: int, http_port: int, ctx: ssl.SSLContext | None) -> dict[str, Any]:
    """``/varz`` and ``/connz`` while one client (over TLS when ``ctx`` is given) is connected."""
    import urllib.request

    async def run() -> dict[str, Any]:
        nc = await connect(host, port, ctx) if ctx is not None else None

        def get(path: str) -> Any:
            with urllib.request.urlopen(f"http://{host}:{http_port}/{path}", timeout=5) as resp:
                return json.loads(resp.read())

        out = {"varz": get("varz"), "connz": get("connz?auth=1")}
        if nc is not None:
            await nc.close()
        return out
    return asyncio.run(run())


@pytest.mark.parametrize("extra", ["", "verify: true", "allow_non_tls", "timeout: 0.5"])
def test_monitoring_shows_tls(server_factory: Any, tls_certs: Any, extra: str) -> None:
    """/varz has nats-server 2.15.1's TLS fields (tls_required, tls_verify, tls_timeout,
    tls_cert_not_after, and auth_timeout following the TLS timeout); /connz names a TLS
    client's version and cipher suite."""
    block = {"": "", "verify: true": f'ca_file: "{tls_certs.ca}"\n  verify: true',
             "allow_non_tls": "", "timeout: 0.5": "timeout: 0.5"}[extra]
    conf = tls_certs.conf(block) + ("allow_non_tls: true\n" if extra == "allow_non_tls" else "")
    ctx = tls_certs.alice() if extra == "verify: true" else tls_certs.client()
    seen = {}
    for kind in KINDS:
        http_port = T.free_port()
        seen[kind] = monitored_tls(*server_factory(kind, conf + f"http_port: {http_port}\n"), http_port, ctx)
    mine, real = seen[T.NATSD], seen[T.NATS_SERVER]
    assert set(mine["varz"]) - {"natsd_version"} == set(real["varz"])

    def tls_part(varz: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in varz.items() if k.startswith("tls") or k == "auth_timeout"}

    assert tls_part(mine["varz"]) == tls_part(real["varz"])
    assert "tls_cert_not_after" in real["varz"] and "tls_timeout" in real["varz"]

    def tls_conn(connz: dict[str, Any]) -> dict[str, Any]:
        (conn,) = connz["connections"]
        out = {k: v for k, v in conn.items() if k.startswith("tls")}
        if "tls_peer_certs" in out:
            # nats-server lists the chain the client sent (its certificate, then the CA
            # OpenSSL adds); Python's ssl shows natsd the client's certificate only.
            out["tls_peer_certs"] = out["tls_peer_certs"][:1]
        if "tls_cipher_suite" in out:
            # Both name the suite they negotiated in Go's words, but they negotiate different
            # ones: Go prefers TLS_AES_128_GCM_SHA256, OpenSSL TLS_AES_256_GCM_SHA384, and
            # Python's ssl cannot order TLS 1.3 suites.
            assert out.pop("tls_cipher_suite") in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384")
        return out

    assert tls_conn(mine["connz"]) == tls_conn(real["connz"])
    if extra != "allow_non_tls":  # (nats-py then stays in plaintext, on both)
        assert tls_conn(mine["connz"])["tls_version"] == "1.3"
