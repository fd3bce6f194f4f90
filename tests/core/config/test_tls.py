"""natsd.tls: the tls {} block, its SSL context, client certificate identities, the --tls flags."""

from __future__ import annotations

import hashlib
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from natsd.config.conf import ConfError, parse
from natsd.config import load
from natsd.server import Server
from natsd.security.peercert import PeerCertificate, parse_dn
from natsd.config.tls import load_tls, tls_override


def conf_error(text: str, tmp_path: Path) -> ConfError:
    path = tmp_path / "nats.conf"
    path.write_text(text)
    with pytest.raises(ConfError) as info:
        Server(str(path))  # as natsd -t would
    return info.value


def test_block_from_a_file(tls_certs: Any) -> None:
    cfg = load(parse(tls_certs.conf("""
        ca_file: "%s"
        verify: true
        timeout: "500ms"
        handshake_first: "300ms"
        cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
        curve_preferences: [CurveP256]
        pinned_certs: ["%s"]
    """ % (tls_certs.ca, "AB" * 32)), "n.conf"))
    tls = cfg.tls
    assert tls is not None and tls.verify and tls.ca_file == tls_certs.ca
    assert (tls.timeout, tls.handshake_first, tls.fallback_delay) == (0.5, True, 0.3)
    assert tls.pinned_certs == {"ab" * 32}
    assert tls.context.verify_mode == ssl.CERT_REQUIRED
    assert tls.context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert cfg.auth_timeout == 1.5  # nats-server: the TLS timeout + 1 unless configured


def test_defaults_follow_nats_server(tls_certs: Any) -> None:
    tls = load_tls({"tls": tls_certs.block()})
    assert (tls.timeout, tls.verify, tls.handshake_first) == (2.0, False, False)
    assert tls.context.verify_mode == ssl.CERT_NONE
    names = {c["name"] for c in tls.context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names == {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
                     "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
                     "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384"}
    assert load({"allow_non_tls": True}).allow_non_tls is True


def test_verify_and_map_implies_verify(tls_certs: Any) -> None:
    tls = load_tls({"tls": tls_certs.block(verify_and_map=True, ca_file=tls_certs.ca)})
    assert tls.verify and tls.map_users and tls.context.verify_mode == ssl.CERT_REQUIRED


def test_only_tls13_suites_turn_tls12_off(tls_certs: Any) -> None:
    tls = load_tls({"tls": tls_certs.block(cipher_suites=["TLS_AES_256_GCM_SHA384"])})
    assert tls.context.minimum_version == ssl.TLSVersion.TLSv1_3


@pytest.mark.parametrize("handshake_first, expected", [
    (True, (True, 0.0)), ("on", (True, 0.0)), ("off", (False, 0.0)), ("auto", (True, 0.05)),
    ("1s", (True, 1.0)),
])
def test_handshake_first_values(tls_certs: Any, handshake_first: Any, expected: tuple) -> None:
    tls = load_tls({"tls": tls_certs.block(handshake_first=handshake_first)})
    assert (tls.handshake_first, tls.fallback_delay) == expected


def test_missing_cert_file_names_the_tls_key(tmp_path: Path, tls_certs: Any) -> None:
    err = conf_error(f'port: -1\ntls {{\n  key_file: "{tls_certs.server_key}"\n}}\n', tmp_path)
    assert (err.line, err.key) == (2, "tls") and "missing 'cert_file'" in err.reason


@pytest.mark.parametrize("line, key, needle", [
    ('cert_file: "/nonexistent/cert.pem"', "cert_file", "cannot read /nonexistent/cert.pem"),
    ('timeout: "soon"', "timeout", "invalid duration"),
    ("timeout: -1", "timeout", "must not be negative"),
    ("bogus: 1", "bogus", "unknown field in the tls block"),
    ("cert_store: WindowsCurrentUser", "cert_store", "not supported by natsd"),
    ("verify_cert_and_check_known_urls: true", "verify_cert_and_check_known_urls",
     "not supported in this context"),
    ('handshake_first: "sometimes"', "handshake_first", "is invalid"),
    ("cipher_suites: [TLS_FOO]", "cipher_suites", "unrecognized name TLS_FOO"),
    ("cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]", "cipher_suites", "not available in OpenSSL 3"),
    ("curve_preferences: [X25519, CurveP256]", "curve_preferences", "one curve only"),
    ("pinned_certs: [abc]", "pinned_certs", "does not look like hex-encoded sha256"),
    ("verify: yes_please", "verify", "expected 'verify' to be a boolean"),
])
def test_errors_name_file_line_and_key(tmp_path: Path, tls_certs: Any, line: str, key: str,
                                       needle: str) -> None:
    text = "port: -1\n" + tls_certs.conf(line)  # the extra line is line 5 of the file
    if line.startswith("cert_file"):  # replaces the real one
        text = f'port: -1\ntls {{\n  {line}\n  key_file: "{tls_certs.server_key}"\n}}\n'
    err = conf_error(text, tmp_path)
    assert err.file == str(tmp_path / "nats.conf") and err.key == key
    assert err.line == (3 if line.startswith("cert_file") else 5)
    assert needle in err.reason, err


def test_invalid_certificate_and_mismatched_key(tmp_path: Path, tls_certs: Any) -> None:
    def pair(cert: str, key: str) -> ConfError:
        return conf_error(f'tls {{\n cert_file: "{cert}"\n key_file: "{key}"\n}}', tmp_path)

    err = pair(tls_certs.server_key, tls_certs.server_key)
    assert (err.line, err.key) == (2, "cert_file") and "not a PEM certificate" in err.reason
    err = pair(tls_certs.server_cert, tls_certs.server_cert)
    assert (err.line, err.key) == (3, "key_file") and "not a PEM private key" in err.reason
    err = pair(tls_certs.server_cert, tls_certs.alice_key)
    assert (err.line, err.key) == (3, "key_file") and "does not match certificate" in err.reason
    err = conf_error(tls_certs.conf(f'ca_file: "{tmp_path}/none.pem"'), tmp_path)
    assert (err.line, err.key) == (4, "ca_file") and "cannot read" in err.reason


# -- identities of a client certificate ----------------------------------------------

def peer(*rdns: tuple[tuple[str, str], ...], emails: tuple[str, ...] = (),
         dns: tuple[str, ...] = ()) -> PeerCertificate:
    return PeerCertificate(subject=rdns, emails=emails, dns_names=dns)


ALICE = peer((("O", "Org"),), (("OU", "Unit"),), (("CN", "alice"),), emails=("alice@example.com",))


def test_subject_in_rfc2253_order() -> None:
    assert ALICE.subject_dn == "CN=alice,OU=Unit,O=Org"
    odd = peer((("DC", "example"),), (("CN", "a,b+c"),))
    assert odd.subject_dn == r"CN=a\,b\+c,DC=example"
    assert parse_dn(odd.subject_dn) == [frozenset({("CN", "a,b+c")}), frozenset({("DC", "example")})]
    assert parse_dn("cn=x+ou=y, o = z") == [frozenset({("CN", "x"), ("OU", "y")}), frozenset({("O", "z")})]
    assert parse_dn("no equals sign") is None


def test_map_to_follows_nats_server_order() -> None:
    assert ALICE.map_to({"alice@example.com", "CN=alice,OU=Unit,O=Org"}) == "alice@example.com"
    assert ALICE.map_to({"CN=alice,OU=Unit,O=Org"}) == "CN=alice,OU=Unit,O=Org"
    assert ALICE.map_to({"cn=alice, ou=Unit, o=Org"}) == "cn=alice, ou=Unit, o=Org"
    assert ALICE.map_to({"O=Org,CN=alice,OU=Unit"}) == "O=Org,CN=alice,OU=Unit"  # reordered RDNs
    assert ALICE.map_to({"CN=alice,O=Org"}) is None
    assert ALICE.map_to({"CN=Alice,OU=Unit,O=Org"}) is None  # values are case-sensitive


def test_go_subject_string_with_domain_components() -> None:
    # Go's Subject.String() knows C/O/OU/CN...; the email attribute is left out, DCs are appended.
    cert = peer((("DC", "org"),), (("DC", "example"),), (("O", "Org"),), (("CN", "svc"),),
                (("emailAddress", "svc@example.org"),))
    assert cert.go_subject() == "CN=svc,O=Org"
    assert cert.map_to({"CN=svc,O=Org,DC=org,DC=example"}) == "CN=svc,O=Org,DC=org,DC=example"
    assert cert.map_to({"CN=svc,O=Org"}) == "CN=svc,O=Org"


def test_real_certificate_identity_and_pin(tls_certs: Any) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    pem = Path(tls_certs.alice_cert).read_bytes()
    der = ssl.PEM_cert_to_DER_cert(pem.decode())
    cert = PeerCertificate(der=der)
    spki = x509.load_pem_x509_certificate(pem).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert cert.spki_sha256() == hashlib.sha256(spki).hexdigest()


# -- the --tls flags --------------------------------------------------------------------

def test_flags_replace_the_block(tls_certs: Any) -> None:
    current = load_tls({"tls": tls_certs.block(timeout=5)})
    new = tls_override(current, enable=None, cert=tls_certs.server_cert, key=tls_certs.server_key,
                       ca=tls_certs.ca, verify=True)
    assert new is not None and new.verify and new.ca_file == tls_certs.ca and new.timeout == 5
    assert tls_override(current, enable=False, cert=None, key=None, ca=None, verify=None) is None
    assert tls_override(current, enable=None, cert=None, key=None, ca=None, verify=None) is current
    with pytest.raises(ConfError, match="private key must be present"):
        tls_override(None, enable=True, cert=tls_certs.server_cert, key=None, ca=None, verify=None)


def natsd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "natsd", *args], capture_output=True, text=True,
                          timeout=60)


def test_cli_flags(tmp_path: Path, tls_certs: Any) -> None:
    conf = tmp_path / "empty.conf"
    conf.write_text("# flags only\n")
    check = ("-t", "-c", str(conf))
    ok = natsd("--tls", "--tlscert", tls_certs.server_cert, "--tlskey", tls_certs.server_key, *check)
    assert ok.returncode == 0, ok.stderr
    bad = natsd("--tlsverify", "--tlscert", tls_certs.server_cert, "--tlskey", tls_certs.alice_key, *check)
    assert bad.returncode == 1
    assert "key '--tlskey': private key" in bad.stderr and "does not match" in bad.stderr
    missing = natsd("--tls", *check)
    assert missing.returncode == 1 and "TLS Server certificate must be present" in missing.stderr


def test_renewed_files_compare_unequal(tmp_path: Path, tls_certs: Any) -> None:
    """A reload that re-reads the same paths sees renewed certificates as a change."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(Path(tls_certs.server_cert).read_bytes())
    key.write_bytes(Path(tls_certs.server_key).read_bytes())
    block = {"cert_file": str(cert), "key_file": str(key)}
    first = load_tls({"tls": block})
    assert load_tls({"tls": block}) == first
    cert.write_bytes(Path(tls_certs.other_server_cert).read_bytes())
    key.write_bytes(Path(tls_certs.other_server_key).read_bytes())
    assert load_tls({"tls": block}) != first
