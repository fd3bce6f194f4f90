"""NKeys: encoding, checksums, prefixes, signing, and CONNECT nonce signatures."""

from __future__ import annotations

import base64

import pytest

from natsd.security.nkeys import (
    CurveKeyPair, KeyPair, NKeyError, Prefix, decode, decode_seed, decode_signature, encode, encode_seed,
    from_public_key, is_valid_public_key, prefix_of, sign_nonce, verify_nonce_signature,
)

# From nats-io/nkeys creds_utils_test.go: a user seed and its public key.
CREDS_SEED = "SUAOTBNEUHZDFJT3EUMELT7MQTP24JF3XVCXQNDSCU74G5IU6VAJBKH5LI"
CREDS_USER = "UDE6WTGLTTPCRJRJCKBJRGVNZTLIVR7LEEELR4CYWWWBKJS7XYIKXDUU"

# RFC 8032 section 7.1, test 1: Ed25519 secret key, public key, signature of "".
RFC_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")

PUBLIC_KINDS = [(Prefix.OPERATOR, "O"), (Prefix.ACCOUNT, "A"), (Prefix.USER, "U"),
                (Prefix.SERVER, "N"), (Prefix.CLUSTER, "C")]


def test_known_seed_gives_known_public_key():
    kp = KeyPair.from_seed(CREDS_SEED)
    assert kp.public_key == CREDS_USER
    assert kp.prefix is Prefix.USER
    assert kp.seed == CREDS_SEED
    assert kp.private_key.startswith("P")
    assert KeyPair.from_seed(CREDS_SEED.encode()) == kp
    assert KeyPair.from_seed(bytearray(CREDS_SEED.encode())) == kp


def test_rfc8032_vector_through_nkey_encoding():
    kp = KeyPair.from_raw_seed(Prefix.USER, RFC_SECRET)
    assert decode(Prefix.USER, kp.public_key) == RFC_PUBLIC
    assert kp.sign(b"") == RFC_SIGNATURE
    assert from_public_key(kp.public_key).verify(b"", RFC_SIGNATURE)
    assert decode_seed(kp.seed) == (Prefix.USER, RFC_SECRET)


@pytest.mark.parametrize("prefix,letter", PUBLIC_KINDS)
def test_create_round_trip(prefix, letter):
    kp = KeyPair.create(prefix)
    pub = kp.public_key
    assert pub[0] == letter and len(pub) == 56
    assert kp.seed.startswith("S" + letter) and len(kp.seed) == 58
    assert is_valid_public_key(pub) and is_valid_public_key(pub, prefix) and is_valid_public_key(pub, letter)
    assert prefix_of(pub) is prefix and prefix_of(kp.seed) is Prefix.SEED
    again = KeyPair.from_seed(kp.seed)
    assert again.public_key == pub and again.prefix is prefix
    sig = kp.sign(b"hello")
    assert len(sig) == 64
    assert KeyPair.from_public_key(pub).verify(b"hello", sig)


def test_create_by_letter_and_refusals():
    assert KeyPair.create("u").prefix is Prefix.USER
    with pytest.raises(NKeyError, match="invalid prefix"):
        KeyPair.create(Prefix.PRIVATE)
    with pytest.raises(NKeyError, match="invalid prefix"):
        KeyPair.create("Z")
    with pytest.raises(NKeyError, match="invalid seed length"):
        encode_seed(Prefix.USER, b"short")
    with pytest.raises(NKeyError, match="invalid prefix"):
        encode_seed(Prefix.SEED, bytes(32))
    with pytest.raises(NKeyError, match="invalid prefix"):
        encode(22 << 3, bytes(32))


def test_verify_refuses_other_key_other_data_and_bad_lengths():
    a, b = KeyPair.create("U"), KeyPair.create("U")
    sig = a.sign(b"data")
    assert not b.verify(b"data", sig)
    assert not a.verify(b"datA", sig)
    assert not a.verify(b"data", sig[:-1])
    assert not a.verify(b"data", sig + b"\0")


def test_public_only_pair_cannot_sign():
    kp = KeyPair.from_public_key(KeyPair.create("A").public_key)
    assert not kp.can_sign
    with pytest.raises(NKeyError, match="can not sign"):
        kp.sign(b"x")
    with pytest.raises(NKeyError, match="no seed"):
        kp.seed
    with pytest.raises(NKeyError, match="can not sign"):
        kp.private_key


def _flip_checksum(text: str) -> str:
    raw = bytearray(base64.b32decode(text + "=" * (-len(text) % 8)))
    raw[-1] ^= 0x01
    return base64.b32encode(bytes(raw)).decode().rstrip("=")


def test_bad_checksum_is_refused_everywhere():
    kp = KeyPair.create("A")
    bad_pub, bad_seed = _flip_checksum(kp.public_key), _flip_checksum(kp.seed)
    for call in (lambda: decode(Prefix.ACCOUNT, bad_pub), lambda: KeyPair.from_public_key(bad_pub),
                 lambda: KeyPair.from_seed(bad_seed), lambda: decode_seed(bad_pub)):
        with pytest.raises(NKeyError, match="invalid checksum"):
            call()
    assert not is_valid_public_key(bad_pub)
    assert prefix_of(bad_pub) is None


def test_wrong_prefix_and_kind():
    account = KeyPair.create("A")
    with pytest.raises(NKeyError, match="expected user key .U....*got account key"):
        decode(Prefix.USER, account.public_key)
    assert not is_valid_public_key(account.public_key, Prefix.USER)
    assert not is_valid_public_key(account.seed)  # a seed is not a public key
    with pytest.raises(NKeyError, match="invalid seed"):
        decode_seed(account.public_key)  # a public key is not a seed
    with pytest.raises(NKeyError, match="invalid public key"):
        KeyPair.from_public_key(account.seed)
    bad_kind = account.seed[0] + "S" + account.seed[2:]  # nkeys' TestBadDecode
    with pytest.raises(NKeyError):
        KeyPair.from_seed(bad_kind)


@pytest.mark.parametrize("text", ["", "BAD", "OK", "foo!", "a" * 56, "U" + "=" * 55, 123, None])
def test_garbage_is_not_a_key(text):
    assert not is_valid_public_key(text)  # type: ignore[arg-type]
    if isinstance(text, str):
        with pytest.raises(NKeyError):
            KeyPair.from_public_key(text)
        with pytest.raises(NKeyError):
            KeyPair.from_seed(text)


def test_server_ids_are_nkeys():
    """A server's id is the public key of its own NKey, as nats-server's is."""
    from natsd.server import Server

    server = Server({"port": 0})
    assert len(server.server_id) == 56 and server.server_id.startswith("N")
    assert is_valid_public_key(server.server_id, Prefix.SERVER)
    assert server.server_key.verify(b"x", server.server_key.sign(b"x"))


# From nats-server's auth_callout_test.go: a curve (x25519) seed and its public key.
CURVE_SEED = "SXAAXMRAEP6JWWHNB6IKFL554IE6LZVT6EY5MBRICPILTLOPHAG73I3YX4"
CURVE_PUBLIC = "XAB3NANV3M6N7AHSQP2U5FRWKKUT7EG2ZXXABV4XVXYQRJGM4S2CZGHT"


def test_curve_keys_follow_nkeys():
    kp = CurveKeyPair.from_seed(CURVE_SEED)
    assert kp.public_key == CURVE_PUBLIC
    assert kp.seed == CURVE_SEED
    assert prefix_of(CURVE_PUBLIC) is Prefix.CURVE
    assert is_valid_public_key(CURVE_PUBLIC, "X")
    fresh = CurveKeyPair.create()
    assert fresh.public_key.startswith("X") and len(fresh.public_key) == 56
    assert CurveKeyPair.from_seed(fresh.seed).public_key == fresh.public_key
    with pytest.raises(NKeyError, match="cannot sign"):
        KeyPair.from_seed(CURVE_SEED)  # an x25519 seed is no Ed25519 seed
    with pytest.raises(NKeyError, match="not a curve seed"):
        CurveKeyPair.from_seed(KeyPair.create("U").seed)


def test_server_announces_its_curve_key(natsd_server):
    """nats-server 2.15.1 sends its x25519 public key as INFO ``xkey``, last; so does natsd."""
    import json
    import socket

    from natsd.testing import read_until

    with socket.create_connection(("127.0.0.1", natsd_server.port), timeout=5) as sock:
        line = read_until(sock, b"\r\n")
    info = json.loads(line[len("INFO "):])
    assert info["xkey"] == natsd_server.server.curve_key.public_key
    assert is_valid_public_key(info["xkey"], Prefix.CURVE)
    assert list(info)[-2:] == ["api_lvl", "xkey"]


# --------------------------------------------------------------------------
# Nonce signatures, decoded as nats-server decodes CONNECT "sig"
# --------------------------------------------------------------------------


def test_nonce_signature_url_and_std_base64():
    user = KeyPair.create("U")
    nonce = "tS3j8TLUn6LjpmA"
    url = sign_nonce(user, nonce)
    std = base64.b64encode(user.sign(nonce.encode())).decode()  # what nats-py sends
    assert "=" not in url
    assert verify_nonce_signature(user.public_key, nonce, url)
    assert verify_nonce_signature(user.public_key, nonce.encode(), std)
    assert not verify_nonce_signature(user.public_key, nonce + "x", url)
    assert not verify_nonce_signature(KeyPair.create("U").public_key, nonce, url)
    assert not verify_nonce_signature("not-a-key", nonce, url)
    assert not verify_nonce_signature(user.public_key, nonce, "%%%")


def test_decode_signature_follows_nats_server():
    raw = bytes([0xfb, 0xff]) * 32  # base64 of it has '+', '/' (std) or '-', '_' (url)
    url = base64.urlsafe_b64encode(raw).decode()
    std = base64.b64encode(raw).decode()
    assert decode_signature(url.rstrip("=")) == raw
    assert decode_signature(std) == raw
    assert decode_signature(url) is None  # padded base64url: neither raw-url nor std
    assert decode_signature(std.rstrip("=")) is None  # unpadded std with '+' '/'
    assert decode_signature("A") is None
