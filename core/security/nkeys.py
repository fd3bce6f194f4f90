"""NKeys: the Ed25519 keys of NATS decentralized security, in their text form.

An NKey is a 32-byte Ed25519 public key or seed with a prefix byte that says
what it identifies (operator ``O``, account ``A``, user ``U``, server ``N``,
cluster ``C``), a CRC-16 checksum, all in unpadded base32. Seeds (``S``) carry
two prefix bytes (seed, then the public kind: ``SU...`` is a user seed).
Curve keys (``X``) are x25519 keys for encryption in the same text form
(:class:`CurveKeyPair`; a server announces its own in INFO as ``xkey``).
This module encodes and decodes them exactly as github.com/nats-io/nkeys does,
signs and verifies with pynacl, and checks the nonce signatures clients send
in CONNECT.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from enum import IntEnum

import nacl.exceptions
import nacl.public
import nacl.signing

__all__ = [
    "NKeyError", "Prefix", "KeyPair", "CurveKeyPair", "encode", "decode", "encode_seed", "decode_seed",
    "prefix_of", "is_valid_public_key", "from_seed", "from_public_key", "create",
    "decode_signature", "verify_nonce_signature", "sign_nonce",
]

SEED_LEN = 32
SIGNATURE_LEN = 64


class NKeyError(ValueError):
    """A malformed key or seed, or a key of the wrong kind."""


class Prefix(IntEnum):
    """Prefix bytes; each base32-encodes to the letter in the comment."""

    SEED = 18 << 3  # S
    PRIVATE = 15 << 3  # P
    SERVER = 13 << 3  # N
    CLUSTER = 2 << 3  # C
    OPERATOR = 14 << 3  # O
    ACCOUNT = 0  # A
    USER = 20 << 3  # U
    CURVE = 23 << 3  # X

    @property
    def letter(self) -> str:
        return _LETTERS[self]


_LETTERS = {Prefix.SEED: "S", Prefix.PRIVATE: "P", Prefix.SERVER: "N", Prefix.CLUSTER: "C",
            Prefix.OPERATOR: "O", Prefix.ACCOUNT: "A", Prefix.USER: "U", Prefix.CURVE: "X"}
_BY_LETTER = {v: k for k, v in _LETTERS.items()}
PUBLIC_PREFIXES = frozenset({Prefix.SERVER, Prefix.CLUSTER, Prefix.OPERATOR, Prefix.ACCOUNT, Prefix.USER})
"""Kinds of Ed25519 (signing) keys."""
SEED_KINDS = PUBLIC_PREFIXES | {Prefix.CURVE}
"""Kinds a seed may be of: the signing kinds and curve keys (``SX...``)."""
_B32_CHARS = re.compile(r"[A-Z2-7]*")


def _prefix(value: Prefix | int | str) -> Prefix:
    """``Prefix.USER``, ``160`` or ``"U"`` -> ``Prefix.USER``."""
    if isinstance(value, str):
        if value.upper() in _BY_LETTER:
            return _BY_LETTER[value.upper()]
        raise NKeyError(f"nkeys: invalid prefix byte: unknown key kind {value!r}")
    try:
        return Prefix(value)
    except ValueError:
        raise NKeyError(f"nkeys: invalid prefix byte: {value!r}") from None


def _describe(prefix: int) -> str:
    try:
        p = Prefix(prefix)
    except ValueError:
        return f"unknown prefix byte {prefix}"
    return f"{p.name.lower()} key ({p.letter}...)"


def _b32decode(text: str | bytes) -> bytes:
    """Unpadded standard base32, as Go's ``base32.StdEncoding.WithPadding(NoPadding)``."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise NKeyError("nkeys: invalid encoded key: not ASCII") from None
    text = text.replace("\r", "").replace("\n", "")  # Go's decoder skips newlines
    if not _B32_CHARS.fullmatch(text):
        raise NKeyError("nkeys: invalid encoded key: not unpadded upper-case base32")
    try:
        return base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise NKeyError(f"nkeys: invalid encoded key: bad base32 length {len(text)}") from None


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM, the checksum NKeys use."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _b32encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def _checked(raw: bytes) -> bytes:
    """Strip and verify the little-endian CRC-16 at the end of ``raw``."""
    if len(raw) < 4:
        raise NKeyError("nkeys: invalid encoded key: too short")
    body, crc = raw[:-2], int.from_bytes(raw[-2:], "little")
    if crc16(body) != crc:
        raise NKeyError("nkeys: invalid checksum")
    return body


def encode(prefix: Prefix | int | str, raw: bytes) -> str:
    """Encode a raw key with its prefix byte and checksum (``Encode`` in nkeys)."""
    p = _prefix(prefix)
    body = bytes([p]) + bytes(raw)
    return _b32encode(body + crc16(body).to_bytes(2, "little"))


def decode(expected: Prefix | int | str, text: str | bytes) -> bytes:
    """The raw key in ``text``, which must carry the ``expected`` prefix."""
    p = _prefix(expected)
    body = _checked(_b32decode(text))
    if body[0] != p:
        raise NKeyError(f"nkeys: invalid prefix byte: expected {_describe(p)}, got {_describe(body[0])}")
    return body[1:]


def encode_seed(public: Prefix | int | str, raw_seed: bytes) -> str:
    """A seed (``S`` + kind letter ...) for a 32-byte Ed25519 seed of kind ``public``."""
    p = _prefix(public)
    if p not in SEED_KINDS:
        raise NKeyError(f"nkeys: invalid prefix byte: a seed cannot be of kind {p.name.lower()}")
    if len(raw_seed) != SEED_LEN:
        raise NKeyError(f"nkeys: invalid seed length: {len(raw_seed)} bytes, expected {SEED_LEN}")
    body = bytes([Prefix.SEED | (p >> 5), (p & 31) << 3]) + bytes(raw_seed)
    return _b32encode(body + crc16(body).to_bytes(2, "little"))


def decode_seed(text: str | bytes) -> tuple[Prefix, bytes]:
    """``(kind, raw 32-byte seed)`` of an encoded seed."""
    body = _checked(_b32decode(text))
    kind = ((body[0] & 7) << 5) | ((body[1] & 248) >> 3)
    if body[0] & 248 != Prefix.SEED:
        raise NKeyError(f"nkeys: invalid seed: starts with {_describe(body[0] & 248)}, not a seed (S...)")
    if kind not in SEED_KINDS:
        raise NKeyError(f"nkeys: invalid seed: unknown key kind byte {kind}")
    raw = body[2:]
    if len(raw) != SEED_LEN:
        raise NKeyError(f"nkeys: invalid seed length: {len(raw)} bytes, expected {SEED_LEN}")
    return Prefix(kind), raw


def prefix_of(text: str) -> Prefix | None:
    """The kind of a public key or ``Prefix.SEED`` for a seed; None when invalid."""
    try:
        body = _checked(_b32decode(text))
    except NKeyError:
        return None
    if body[0] in SEED_KINDS or body[0] == Prefix.PRIVATE:
        return Prefix(body[0])
    return Prefix.SEED if body[0] & 248 == Prefix.SEED else None


def is_valid_public_key(text: str, prefix: Prefix | int | str | None = None) -> bool:
    """True when ``text`` is a well-formed public key (of kind ``prefix`` if given)."""
    if not isinstance(text, (str, bytes)):
        return False
    try:
        body = _checked(_b32decode(text))
    except NKeyError:
        return False
    if len(body) != 33:
        return False
    if prefix is None:
        return body[0] in PUBLIC_PREFIXES
    return body[0] == _prefix(prefix)


class KeyPair:
    """An NKey: a public key, and its seed when it can sign.

    ``KeyPair.create("U")`` makes a new user key; ``KeyPair.from_seed(seed)``
    loads one; ``KeyPair.from_public_key(pub)`` can only verify.
    """

    __slots__ = ("prefix", "_verify_key", "_signing_key", "_seed")

    def __init__(self, prefix: Prefix, verify_key: nacl.signing.VerifyKey,
                 signing_key: nacl.signing.SigningKey | None = None, seed: str | None = None):
        self.prefix = prefix
        self._verify_key = verify_key
        self._signing_key = signing_key
        self._seed = seed

    @classmethod
    def create(cls, prefix: Prefix | int | str) -> KeyPair:
        """A fresh key pair of kind ``prefix`` (operator, account, user, server, cluster)."""
        return cls.from_raw_seed(prefix, os.urandom(SEED_LEN))

    @classmethod
    def from_raw_seed(cls, prefix: Prefix | int | str, raw_seed: bytes) -> KeyPair:
        return cls.from_seed(encode_seed(prefix, raw_seed))

    @classmethod
    def from_seed(cls, seed: str | bytes | bytearray) -> KeyPair:
        """Load an encoded seed (``SU...``, ``SA...``, ``SO...`` ...)."""
        text = bytes(seed).decode("ascii", "replace") if not isinstance(seed, str) else seed
        kind, raw = decode_seed(text)
        if kind == Prefix.CURVE:
            raise NKeyError("nkeys: a curve seed (SX...) cannot sign; load it with CurveKeyPair")
        signing_key = nacl.signing.SigningKey(raw)
        return cls(kind, signing_key.verify_key, signing_key, text)

    @classmethod
    def from_public_key(cls, public_key: str | bytes) -> KeyPair:
        """A verify-only key pair for an encoded public key."""
        body = _checked(_b32decode(public_key))
        if body[0] not in PUBLIC_PREFIXES or len(body) != 33:
            raise NKeyError(f"nkeys: invalid public key: {_describe(body[0])}")
        return cls(Prefix(body[0]), nacl.signing.VerifyKey(body[1:]))

    @property
    def public_key(self) -> str:
        return encode(self.prefix, bytes(self._verify_key))

    @property
    def can_sign(self) -> bool:
        return self._signing_key is not None

    @property
    def seed(self) -> str:
        if self._seed is None:
            raise NKeyError("nkeys: no seed or private key available")
        return self._seed

    @property
    def private_key(self) -> str:
        """The ``P...`` encoding of the 64-byte Ed25519 private key."""
        key = self._require_signing_key()
        return encode(Prefix.PRIVATE, bytes(key) + bytes(self._verify_key))

    def _require_signing_key(self) -> nacl.signing.SigningKey:
        if self._signing_key is None:
            raise NKeyError("nkeys: can not sign, no private key available")
        return self._signing_key

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._require_signing_key().sign(bytes(data)).signature

    def verify(self, data: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's signature of ``data``."""
        if len(signature) != SIGNATURE_LEN:
            return False
        try:
            self._verify_key.verify(bytes(data), bytes(signature))
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            return False
        return True

    def __repr__(self) -> str:
        kind = "seed" if self.can_sign else "public"
        return f"<KeyPair {self.prefix.name.lower()} {self.public_key} ({kind})>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyPair) and other.public_key == self.public_key

    def __hash__(self) -> int:
        return hash(self.public_key)


class CurveKeyPair:
    """An x25519 key pair in NKey form: public key ``X...``, seed ``SX...`` (nkeys' curve keys)."""

    __slots__ = ("_private",)

    def __init__(self, private: nacl.public.PrivateKey) -> None:
        self._private = private

    @classmethod
    def create(cls) -> CurveKeyPair:
        return cls(nacl.public.PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: str | bytes) -> CurveKeyPair:
        kind, raw = decode_seed(seed.decode("ascii", "replace") if isinstance(seed, bytes) else seed)
        if kind != Prefix.CURVE:
            raise NKeyError(f"nkeys: invalid seed: a {kind.name.lower()} seed, not a curve seed (SX...)")
        return cls(nacl.public.PrivateKey(raw))

    @property
    def public_key(self) -> str:
        return encode(Prefix.CURVE, bytes(self._private.public_key))

    @property
    def seed(self) -> str:
        return encode_seed(Prefix.CURVE, bytes(self._private))

    def __repr__(self) -> str:
        return f"<CurveKeyPair {self.public_key}>"


from_seed = KeyPair.from_seed
from_public_key = KeyPair.from_public_key
create = KeyPair.create


# --------------------------------------------------------------------------
# Nonce signatures (CONNECT "sig")
# --------------------------------------------------------------------------

_URL_B64 = re.compile(r"[A-Za-z0-9_-]*")
_STD_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def decode_signature(text: str) -> bytes | None:
    """Decode a CONNECT ``sig`` as nats-server does; None when it is not base64.

    nats-server tries unpadded base64url first and falls back to padded
    standard base64 (so a padded base64url signature is refused).
    """
    if _URL_B64.fullmatch(text) and len(text) % 4 != 1:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _STD_B64.fullmatch(text) and len(text) % 4 == 0:
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error:
            return None
    return None


def sign_nonce(key: KeyPair, nonce: str | bytes) -> str:
    """The ``sig`` a client sends: its signature of the nonce text, base64url, no padding."""
    data = nonce.encode() if isinstance(nonce, str) else nonce
    return base64.urlsafe_b64encode(key.sign(data)).decode().rstrip("=")


def verify_nonce_signature(public_key: str | KeyPair, nonce: str | bytes, sig: str) -> bool:
    """True when ``sig`` (from CONNECT) signs ``nonce`` (from INFO) with ``public_key``."""
    raw = decode_signature(sig)
    if raw is None:
        return False
    try:
        key = public_key if isinstance(public_key, KeyPair) else KeyPair.from_public_key(public_key)
    except NKeyError:
        return False
    return key.verify(nonce.encode() if isinstance(nonce, str) else nonce, raw)
