"""TLS for natsd's ports: the ``tls {}`` block, its SSL context, what a connection negotiated.

:func:`load_tls` validates a ``tls {}`` block into :class:`TLSSettings` and
builds its :class:`ssl.SSLContext` at once, so a missing or unreadable
certificate, a key that does not match it, an unknown key or a bad
``timeout`` is a :data:`~natsd.config.ConfigError` naming the file, line and
key (``natsd -t`` reports it). The client port uses it for the top-level
``tls {}``; a plugin that opens a port with its own ``tls {}`` (WebSocket,
MQTT, leafnodes) calls the same function on its block::

    from .tls import load_tls

    settings = load_tls(block, "tls")            # block: the plugin's ConfMap
    server = await loop.create_server(factory, host, port, ssl=settings.context)

The context follows nats-server: TLS 1.2 at least, nats-server's default
cipher suites, ``verify: true`` requests and checks a client certificate
against ``ca_file`` (or the system's CAs). nats-server's cipher-suite and
curve names are mapped to OpenSSL's; what OpenSSL through Python cannot honour
is refused with a reason. :class:`TLSConnection` is what a connection
negotiated, with the client's :class:`~natsd.security.peercert.PeerCertificate`.
"""

from __future__ import annotations

import hashlib
import re
import ssl
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .conf import ConfError, parse_duration
from .options import config_error

TLS_TIMEOUT = 2.0
"""nats-server's default TLS handshake timeout, in seconds."""

HANDSHAKE_FIRST_FALLBACK = 0.05
"""The fallback delay of ``handshake_first: auto`` (nats-server's 50 ms)."""

#: nats-server (Go) cipher-suite names -> OpenSSL names (TLS 1.2 and lower).
CIPHER_SUITES: dict[str, str] = {
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
}

#: TLS 1.3 suites: always enabled, as in Go (which ignores them in the list too).
TLS13_SUITES = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                          "TLS_CHACHA20_POLY1305_SHA256"})

#: Suites nats-server names but OpenSSL 3 no longer provides.
WITHDRAWN_SUITES = frozenset({"TLS_RSA_WITH_RC4_128_SHA", "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
                              "TLS_ECDHE_RSA_WITH_RC4_128_SHA"})

DEFAULT_CIPHER_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
)
"""nats-server's default cipher suites (for TLS 1.2)."""

#: nats-server curve names -> OpenSSL group names.
CURVES: dict[str, str] = {"X25519": "X25519", "CurveP256": "prime256v1",
                          "CurveP384": "secp384r1", "CurveP521": "secp521r1"}

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}

#: Keys of nats-server's ``tls {}`` block that natsd does not implement yet.
NOT_YET_KEYS = frozenset({"cert_store", "cert_match_by", "cert_match", "cert_match_skip_invalid",
                          "ca_certs_match", "certs", "certificates", "ocsp_peer",
                          "connection_rate_limit", "allow_insecure_cipher_suites"})

KEYS = frozenset({"cert_file", "key_file", "ca_file", "verify", "verify_and_map",
                  "verify_cert_and_check_known_urls", "insecure", "timeout", "handshake_first",
                  "first", "immediate", "cipher_suites", "curve_preferences", "pinned_certs",
                  "min_version"})


@dataclass(frozen=True)
class TLSSettings:
    """A validated ``tls {}`` block and the server-side context built from it.

    ``map_users`` is ``verify_and_map``; ``fallback_delay`` is how long a
    ``handshake_first`` port waits for a ClientHello before sending INFO in
    plaintext (0: never falls back). ``timeout`` bounds the handshake.
    """

    cert_file: str
    key_file: str
    context: ssl.SSLContext = field(repr=False, compare=False)
    ca_file: str | None = None
    verify: bool = False
    map_users: bool = False
    check_known_urls: bool = False
    insecure: bool = False
    timeout: float = TLS_TIMEOUT
    handshake_first: bool = False
    fallback_delay: float = 0.0
    cipher_suites: tuple[str, ...] = DEFAULT_CIPHER_SUITES
    curve_preferences: tuple[str, ...] = ()
    pinned_certs: frozenset[str] = frozenset()
    min_version: str = "1.2"
    fingerprint: str = ""
    """SHA-256 over the certificate, key and CA files as read: settings loaded
    again from renewed files compare unequal, so a reload sees the change."""


def load_tls(parent: Mapping[str, Any], key: str = "tls", value: Any = None, *,
             known_urls: bool = False, default_timeout: float = TLS_TIMEOUT,
             client: bool = False) -> TLSSettings:
    """Validate the ``tls {}`` block ``parent[key]`` (or ``value``) and build its context.

    Errors name the file, line and key. ``known_urls`` allows
    ``verify_cert_and_check_known_urls`` (only meaningful where the server
    knows its peers' URLs: routes, gateways, leafnodes), as nats-server does.
    ``client`` is for blocks used only to dial (a leaf node's remote): the
    certificate is then optional (``cert_file`` and ``key_file`` are ``""``
    without one), a ``ca_file`` alone is enough.
    """
    block = parent[key] if value is None else value
    if not isinstance(block, Mapping):
        raise config_error(parent, key, f"expected a block {{ ... }}, got {block!r}")
    opts: dict[str, Any] = {"timeout": default_timeout}
    for k, v in block.items():
        name = k.lower()
        if name in NOT_YET_KEYS:
            raise config_error(block, k, "a nats-server TLS option not supported by natsd")
        if name not in KEYS:
            raise config_error(block, k, "unknown field in the tls block (known: "
                               + ", ".join(sorted(KEYS)) + ")")
        _option(block, k, name, v, opts, known_urls)
    if client and "cert_file" not in opts and "key_file" not in opts:
        opts["cert_file"] = opts["key_file"] = ""
        ca_pem = _read(block, "ca_file", opts["ca_file"]) if "ca_file" in opts else ""
        return TLSSettings(context=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
                           fingerprint=hashlib.sha256(ca_pem.encode()).hexdigest(), **opts)
    for required in ("cert_file", "key_file"):
        if required not in opts:
            raise config_error(parent, key, f"missing '{required}' in TLS configuration")
    context, fingerprint = _context(block, opts)
    return TLSSettings(context=context, fingerprint=fingerprint, **opts)


def _option(block: Mapping[str, Any], k: str, name: str, v: Any, opts: dict[str, Any],
            known_urls: bool) -> None:
    if name in ("cert_file", "key_file", "ca_file"):
        if not isinstance(v, str) or not v:
            raise config_error(block, k, f"expected '{name}' to be a file name")
        opts[name] = v
    elif name in ("verify", "verify_and_map", "verify_cert_and_check_known_urls", "insecure"):
        if not isinstance(v, bool):
            raise config_error(block, k, f"expected '{name}' to be a boolean, got {v!r}")
        if name == "verify_cert_and_check_known_urls" and v and not known_urls:
            raise config_error(block, k, "verify_cert_and_check_known_urls not supported in this context")
        if name == "verify_and_map":
            opts["map_users"] = v
        elif name == "verify_cert_and_check_known_urls":
            opts["check_known_urls"] = v
        else:
            opts[name] = v
        if v and name != "insecure":
            opts["verify"] = True
    elif name == "timeout":
        file, line = _position(block, k)
        seconds = parse_duration(v, file=file, line=line, key=k)
        if seconds < 0:
            raise config_error(block, k, f"the TLS handshake timeout must not be negative, got {v!r}")
        if seconds > 0:  # 0 keeps the default, as in nats-server
            opts["timeout"] = seconds
    elif name in ("handshake_first", "first", "immediate"):
        opts["handshake_first"], opts["fallback_delay"] = _handshake_first(block, k, v)
    elif name == "cipher_suites":
        opts["cipher_suites"] = tuple(_names(block, k, v, set(CIPHER_SUITES) | TLS13_SUITES,
                                             withdrawn=WITHDRAWN_SUITES))
    elif name == "curve_preferences":
        curves = tuple(_names(block, k, v, set(CURVES)))
        if len(curves) > 1:
            raise config_error(block, k, (
                "natsd can apply one curve only (Python's ssl module sets a single ECDH "
                "group): list one, or leave curve_preferences out to offer OpenSSL's "
                "defaults, which include X25519, P-256, P-384 and P-521"))
        opts["curve_preferences"] = curves
    elif name == "pinned_certs":
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise config_error(block, k, "expected 'pinned_certs' to be a list of strings")
        for entry in v:
            if not re.fullmatch(r"[0-9a-fA-F]{64}", entry):
                raise config_error(block, k, f"'pinned_certs' key {entry} does not look like "
                                   "hex-encoded sha256 of DER encoded SubjectPublicKeyInfo")
        opts["pinned_certs"] = frozenset(x.lower() for x in v)
    elif name == "min_version":
        text = str(v)
        if text not in _VERSIONS:
            raise config_error(block, k, f"unsupported TLS version {v!r} (1.2 or 1.3)")
        opts["min_version"] = text


def _position(block: Mapping[str, Any], key: str) -> tuple[str | None, int | None]:
    pos = getattr(block, "positions", {}).get(key)
    return (pos.file, pos.line) if pos is not None else (None, None)


def _handshake_first(block: Mapping[str, Any], k: str, v: Any) -> tuple[bool, float]:
    """``true``/``false``, ``"auto"`` (50 ms fallback) or a fallback duration like ``"300ms"``."""
    if isinstance(v, bool):
        return v, 0.0
    if isinstance(v, str):
        low = v.lower()
        if low in ("true", "on"):
            return True, 0.0
        if low in ("false", "off"):
            return False, 0.0
        if low in ("auto", "auto_fallback"):
            return True, HANDSHAKE_FIRST_FALLBACK
        try:
            return True, parse_duration(v)
        except ConfError:
            pass
        raise config_error(block, k, f"field {k!r} value {v!r} is invalid")
    raise config_error(block, k, f"field {k!r} should be a boolean or string, got {v!r}")


def _names(block: Mapping[str, Any], k: str, v: Any, known: set[str],
           withdrawn: frozenset[str] = frozenset()) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise config_error(block, k, f"expected '{k}' to be a list of names")
    if not v:
        raise config_error(block, k, f"'{k}' cannot be empty")
    for name in v:
        if name in withdrawn:
            raise config_error(block, k, f"cipher {name} is not available in OpenSSL 3")
        if name not in known:
            raise config_error(block, k, f"unrecognized name {name} (known: "
                               + ", ".join(sorted(known)) + ")")
    return list(v)


def _context(block: Mapping[str, Any], opts: dict[str, Any]) -> tuple[ssl.SSLContext, str]:
    """The server-side context and the files' fingerprint; errors name the key at fault."""
    cert_file, key_file = opts["cert_file"], opts["key_file"]
    cert_pem = _read(block, "cert_file", cert_file)
    key_pem = _read(block, "key_file", key_file)
    ca_pem = _read(block, "ca_file", opts["ca_file"]) if "ca_file" in opts else ""
    fingerprint = hashlib.sha256("\0".join((cert_pem, key_pem, ca_pem)).encode()).hexdigest()
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=cert_pem)
    except (ssl.SSLError, ValueError):
        raise config_error(block, _key(block, "cert_file"),
                           f"{cert_file}: not a PEM certificate") from None
    if "PRIVATE KEY-----" not in key_pem:
        raise config_error(block, _key(block, "key_file"), f"{key_file}: not a PEM private key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[opts.get("min_version", "1.2")]
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            reason = f"private key {key_file} does not match certificate {cert_file}"
        else:
            reason = f"{key_file}: cannot load the private key ({exc.reason or exc})"
        raise config_error(block, _key(block, "key_file"), reason) from None
    ca_file = opts.get("ca_file")
    if ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except ssl.SSLError:
            raise config_error(block, _key(block, "ca_file"),
                               f"{ca_file}: no PEM certificates in it") from None
    if opts.get("verify"):
        ctx.verify_mode = ssl.CERT_REQUIRED
        if ca_file is None:
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    tls12 = [CIPHER_SUITES[s] for s in opts.get("cipher_suites", DEFAULT_CIPHER_SUITES)
             if s in CIPHER_SUITES]
    if tls12:
        try:
            ctx.set_ciphers(":".join(tls12))
        except ssl.SSLError:
            raise config_error(block, _key(block, "cipher_suites"),
                               "none of these cipher suites is available in this OpenSSL") from None
    else:  # only TLS 1.3 suites listed: TLS 1.2 would have no cipher (as in Go)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    for curve in opts.get("curve_preferences", ()):
        ctx.set_ecdh_curve(CURVES[curve])
    return ctx, fingerprint


def dialing_context(settings: TLSSettings) -> ssl.SSLContext:
    """A client-side context for connections a server opens to its peers (routes, leafnodes).

    It presents the block's certificate, trusts ``ca_file`` (or the system's
    CAs) and checks the peer's name unless ``insecure``, with the block's
    minimum version and cipher suites: nats-server uses one ``tls {}`` block
    for both ends of such links.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = _VERSIONS[settings.min_version]
    if settings.cert_file:
        ctx.load_cert_chain(settings.cert_file, settings.key_file)
    if settings.ca_file is not None:
        ctx.load_verify_locations(cafile=settings.ca_file)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if settings.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    tls12 = [CIPHER_SUITES[s] for s in settings.cipher_suites if s in CIPHER_SUITES]
    if tls12:
        ctx.set_ciphers(":".join(tls12))
    for curve in settings.curve_preferences:
        ctx.set_ecdh_curve(CURVES[curve])
    return ctx


def require_peer_certificates(settings: TLSSettings) -> TLSSettings:
    """``settings`` whose server context demands a verified certificate from every peer.

    nats-server forces this on routes and gateways whatever ``verify`` says:
    both ends present the block's certificate and check the other's against
    ``ca_file``.
    """
    ctx = settings.context
    if ctx.verify_mode != ssl.CERT_REQUIRED:
        ctx.verify_mode = ssl.CERT_REQUIRED
        if settings.ca_file is None:
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    return replace(settings, verify=True)


def _key(block: Mapping[str, Any], name: str) -> str:
    """The key as spelt in the block (keys are case-insensitive)."""
    return next((k for k in block if k.lower() == name), name)


def _read(block: Mapping[str, Any], name: str, path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError as exc:
        raise config_error(block, _key(block, name),
                           f"cannot read {path}: {exc.strerror or exc}") from None


def tls_override(current: TLSSettings | None, *, enable: bool | None, cert: str | None,
                 key: str | None, ca: str | None, verify: bool | None) -> TLSSettings | None:
    """Settings from nats-server's ``--tls*`` flags, which replace the file's ``tls {}``.

    Any flag set builds a fresh block from the flags (``--tls=false``
    disables TLS); the file's ``timeout`` is kept, as nats-server keeps it.
    """
    if enable is False:
        return None
    if enable is None and cert is None and key is None and ca is None and not verify:
        return current
    if not cert:
        raise ConfError("TLS Server certificate must be present and valid", key="--tlscert")
    if not key:
        raise ConfError("TLS Server private key must be present and valid", key="--tlskey")
    block: dict[str, Any] = {"cert_file": cert, "key_file": key, "verify": bool(verify)}
    if ca:
        block["ca_file"] = ca
    if current is not None:
        block["timeout"] = current.timeout
    try:
        return load_tls({"--tls": block}, "--tls")
    except ConfError as exc:  # name the flag, not the block key it became
        flag = _FLAGS.get(exc.key or "", exc.key)
        raise ConfError(exc.reason, key=flag) from None


_FLAGS = {"cert_file": "--tlscert", "key_file": "--tlskey", "ca_file": "--tlscacert"}


def tls_help() -> str:
    """``natsd --help_tls``: the ``tls {}`` block natsd reads, its cipher suites and curves."""
    suites = sorted(TLS13_SUITES) + sorted(set(CIPHER_SUITES) - WITHDRAWN_SUITES)
    return "\n".join([
        "",
        "TLS configuration is specified in the tls section of a configuration file:",
        "",
        "e.g.",
        "",
        "    tls {",
        '        cert_file:      "./certs/server-cert.pem"',
        '        key_file:       "./certs/server-key.pem"',
        '        ca_file:        "./certs/ca.pem"',
        "        verify:         true",
        "        verify_and_map: true",
        "",
        "        cipher_suites: [",
        '            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",',
        '            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"',
        "        ]",
        '        curve_preferences: ["CurveP256"]',
        "    }",
        "",
        textwrap.fill("Keys: " + ", ".join(sorted(KEYS)), 78, subsequent_indent="    "),
        "",
        "Available cipher suites include:",
        *(f"    {name}" for name in suites),
        "",
        "Available curve preferences include (one; Python's ssl sets a single group):",
        *(f"    {name}" for name in CURVES),
        "",
        textwrap.fill("nats-server's " + ", ".join(sorted(NOT_YET_KEYS)) + " are not supported by natsd.",
                      78),
        "",
    ])


__all__ = ["CIPHER_SUITES", "CURVES", "TLSSettings", "TLS_TIMEOUT", "load_tls", "tls_help",
           "tls_override"]

