"""Server identities in NKey format.

nats-server identifies itself with the public key of a server NKey: 56
characters of base32 starting with ``N``. natsd makes one the same way (a
random Ed25519-sized key, the server prefix byte, a CRC-16 checksum), so
tools that parse server ids accept natsd's.
"""

from __future__ import annotations

import base64
import os

_PREFIX_SERVER = 13 << 3  # 'N'


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM, the checksum NKeys use."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def encode_public_key(prefix: int, key: bytes) -> str:
    raw = bytes([prefix]) + key
    raw += crc16(raw).to_bytes(2, "little")
    return base64.b32encode(raw).decode().rstrip("=")


def new_server_id() -> str:
    """A fresh server id such as ``NDJ6...`` (56 characters)."""
    return encode_public_key(_PREFIX_SERVER, os.urandom(32))
