"""What a TLS client certificate says: its subject, its alternative names, its key.

:class:`PeerCertificate` is built from a verified connection's certificate
(``PeerCertificate.from_ssl``). It formats the subject as nats-server does
(RFC 2253, ``CN=alice,OU=Unit,O=Org``, and Go's own rendering), picks the
configured user ``verify_and_map`` maps the certificate to (:meth:`map_to`,
in nats-server's order of email, DNS and URI names, then the subject DN in
any RDN order) and hashes the public key as ``pinned_certs`` lists it. The
auth plugin sees it as ``AuthRequest.tls_peer``.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import re
import ssl
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from natsd.config.tls import CIPHER_SUITES

#: OpenSSL's long attribute names -> the short names nats-server prints.
_SHORT_NAMES = {
    "commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
    "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST",
    "streetAddress": "STREET", "postalCode": "POSTALCODE", "serialNumber": "SERIALNUMBER",
    "domainComponent": "DC",
}

#: Go's pkix.Name.ToRDNSequence order (the string form lists it backwards).
_GO_ORDER = ("C", "ST", "L", "STREET", "POSTALCODE", "O", "OU", "CN", "SERIALNUMBER")

RDN = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PeerCertificate:
    """A verified client certificate: its subject and alternative names.

    ``subject`` holds the relative distinguished names in certificate order,
    each a tuple of ``(type, value)`` with nats-server's short type names
    (``CN``, ``O``, ``OU``, ``DC`` ...).
    """

    subject: tuple[RDN, ...] = ()
    emails: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    der: bytes = b""

    @classmethod
    def from_ssl(cls, ssl_object: Any) -> PeerCertificate | None:
        """The peer certificate of an ``ssl.SSLObject``/``SSLSocket``, if it sent one."""
        info = ssl_object.getpeercert()
        if not info:
            return None
        subject = tuple(tuple((_SHORT_NAMES.get(t, t), v) for t, v in rdn)
                        for rdn in info.get("subject", ()))
        alt = info.get("subjectAltName", ())
        return cls(subject=subject,
                   emails=tuple(v for t, v in alt if t == "email"),
                   dns_names=tuple(v for t, v in alt if t == "DNS"),
                   uris=tuple(v for t, v in alt if t == "URI"),
                   der=ssl_object.getpeercert(binary_form=True) or b"")

    @property
    def subject_dn(self) -> str:
        """The subject as an RFC 2253 string, last RDN first: ``CN=alice,OU=Unit,O=Org``."""
        return _dn_string(reversed(self.subject))

    def go_subject(self) -> str:
        """The subject as nats-server's Go prints it (known attributes in Go's order)."""
        values: dict[str, list[str]] = {}
        for rdn in self.subject:
            for typ, value in rdn:
                values.setdefault(typ, []).append(value)
        rdns: list[RDN] = []
        for typ in _GO_ORDER:
            vals = values.get(typ, [])
            if typ in ("CN", "SERIALNUMBER"):
                vals = vals[-1:]
            if vals:
                rdns.append(tuple((typ, v) for v in vals))
        return _dn_string(reversed(rdns))

    def map_to(self, names: Collection[str]) -> str | None:
        """The configured user name this certificate stands for (``verify_and_map``).

        As nats-server tries them: an email, DNS or URI alternative name equal
        to a name; a name that is this subject as a DN, in order, then in any
        order of its RDNs; the subject as Go prints it, followed by its domain
        components, then without them.
        """
        for name in (*self.emails, *self.dns_names, *self.uris):
            if name in names:
                return name
        for any_order in (False, True):
            for name in names:
                if self.dn_matches(name, any_order=any_order):
                    return name
        go = self.go_subject()
        dcs = [f"DC={v}" for rdn in self.subject for t, v in rdn if t == "DC"]
        for name in ([",".join(x for x in (go, *dcs) if x)] if dcs else []) + [go]:
            if name and name in names:
                return name
        return None

    def dn_matches(self, name: str, *, any_order: bool = False) -> bool:
        """Whether ``name`` (an RFC 2253 DN) is this subject; ``any_order`` ignores RDN order."""
        wanted = parse_dn(name)
        if wanted is None:
            return False
        mine = [frozenset((t.upper(), v) for t, v in rdn) for rdn in reversed(self.subject)]
        if not any_order:
            return wanted == mine
        return len(wanted) == len(mine) and all(rdn in mine for rdn in wanted)

    def spki_sha256(self) -> str:
        """Hex SHA-256 of the SubjectPublicKeyInfo, as ``pinned_certs`` lists it."""
        return hashlib.sha256(subject_public_key_info(self.der)).hexdigest()

    def cert_sha256(self) -> str:
        """Hex SHA-256 of the whole certificate (DER)."""
        return hashlib.sha256(self.der).hexdigest()


def _escape(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (ch == " " and i in (0, len(value) - 1)) or (ch == "#" and i == 0):
            out.append("\\")
        out.append(ch)
    return "".join(out)


def _dn_string(rdns: Any) -> str:
    return ",".join("+".join(f"{t}={_escape(v)}" for t, v in rdn) for rdn in rdns)


def parse_dn(text: str) -> list[frozenset[tuple[str, str]]] | None:
    """RDNs of an RFC 2253/4514 DN, first (most specific) first; ``None`` if malformed."""
    rdns: list[frozenset[tuple[str, str]]] = []
    attrs: list[tuple[str, str]] = []
    buf: list[str] = []
    typ: str | None = None
    i = 0
    while i <= len(text):
        ch = text[i] if i < len(text) else None
        if ch == "\\" and i + 1 < len(text):
            pair = text[i + 1:i + 3]
            if re.fullmatch(r"[0-9a-fA-F]{2}", pair):
                buf.append(chr(int(pair, 16)))
                i += 3
                continue
            buf.append(text[i + 1])
            i += 2
            continue
        if ch == "=" and typ is None:
            typ = "".join(buf).strip()
            buf = []
        elif ch in (",", ";", "+", None):
            if typ is None or not typ:
                return None
            attrs.append((typ.upper(), "".join(buf).strip()))
            typ, buf = None, []
            if ch != "+":
                rdns.append(frozenset(attrs))
                attrs = []
        else:
            buf.append(ch)
        i += 1
    return rdns or None


def subject_public_key_info(der: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of a DER certificate (what ``pinned_certs`` hashes)."""
    cert = _der_children(_der_value(der, 0))
    tbs = _der_children(_der_value(cert[0], 0))
    first = 1 if tbs and tbs[0][0] == 0xA0 else 0  # [0] EXPLICIT version
    # version?, serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
    return tbs[first + 5]


@functools.lru_cache(maxsize=8)
def certificate_not_after(pem_file: str, fingerprint: str = "") -> float | None:
    """When the first certificate of ``pem_file`` expires (Unix time); None if unreadable.

    ``fingerprint`` (:attr:`natsd.config.tls.TLSSettings.fingerprint`) keys the
    cache, so that renewed files loaded again are read again.
    """
    try:
        with open(pem_file) as fh:
            text = fh.read()
        begin = text.index("-----BEGIN CERTIFICATE-----")
        end = text.index("-----END CERTIFICATE-----", begin) + len("-----END CERTIFICATE-----")
        cert = _der_children(_der_value(ssl.PEM_cert_to_DER_cert(text[begin:end]), 0))
        tbs = _der_children(_der_value(cert[0], 0))
        first = 1 if tbs and tbs[0][0] == 0xA0 else 0  # [0] EXPLICIT version
        not_after = _der_children(_der_value(tbs[first + 3], 0))[1]  # validity: notBefore, notAfter
        stamp = _der_value(not_after, 0).decode("ascii")
        if not_after[0] == 0x17:  # UTCTime, YYMMDDHHMMSSZ: 50..99 are 19xx
            stamp = ("19" if int(stamp[:2]) >= 50 else "20") + stamp
        return float(calendar.timegm(time.strptime(stamp, "%Y%m%d%H%M%SZ")))
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None


def _der_header(data: bytes, pos: int) -> tuple[int, int]:
    """(offset of the value, its length) for the TLV at ``pos``."""
    length = data[pos + 1]
    start = pos + 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[start:start + n], "big")
        start += n
    return start, length


def _der_value(data: bytes, pos: int) -> bytes:
    start, length = _der_header(data, pos)
    return data[start:start + length]


def _der_children(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        start, length = _der_header(data, pos)
        out.append(data[pos:start + length])
        pos = start + length
    return out


__all__ = ["PeerCertificate", "certificate_not_after", "parse_dn", "subject_public_key_info"]


@dataclass(frozen=True)
class TLSConnection:
    """What a connection negotiated: nats-server's version and cipher names, the peer,
    and whether the handshake came before INFO (``handshake_first``)."""

    version: str
    cipher: str
    peer: PeerCertificate | None = None
    first: bool = False

    @classmethod
    def from_ssl(cls, ssl_object: Any, *, first: bool = False) -> TLSConnection:
        version = (ssl_object.version() or "").removeprefix("TLSv")
        name = (ssl_object.cipher() or ("",))[0]
        cipher = next((go for go, openssl in CIPHER_SUITES.items() if openssl == name), name)
        return cls(version=version, cipher=cipher, peer=PeerCertificate.from_ssl(ssl_object), first=first)
