"""Fixtures shared by every test directory: certificates for the TLS tests.

The report header names the reference nats-server the differential tests
run against (see ``natsd.testing.find_nats_server``) and its version, and
which of natsd's accelerated modules run compiled (see ``natsd.compiled``).

``tls_certs`` is made once per session with trustme: a CA, a server
certificate for 127.0.0.1/localhost, client certificates for ``alice``
(``CN=alice,OU=Unit,O=Org``, email ``alice@example.com``) and ``bob``
(``CN=bob,OU=Unit,O=Org``, email ``bob@example.com``), and a second,
unrelated CA with a client certificate of the same subject as alice's and a
server certificate of its own.
"""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from natsd.testing import find_nats_server


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile natsd's modules to bytecode once: the suite starts natsd processes hundreds of
    times, and where ``PYTHONDONTWRITEBYTECODE`` is set (or the install is editable and fresh)
    each would compile them again, 60 ms of a 150 ms start on a 2-core machine."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for directory in ("core", "plugins", "jwtlib"):
        compileall.compile_dir(str(root / directory), quiet=1)


def pytest_report_header(config: pytest.Config) -> list[str]:
    from natsd import compiled

    modules = f"compiled modules: {compiled.summary()}"
    path = find_nats_server()
    if path is None:
        return ["nats-server: not found", f"natsd: {modules}"]
    try:
        run = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        version = (run.stdout or run.stderr).strip()
    except OSError as exc:
        version = f"cannot run: {exc}"
    return [f"nats-server: {path} ({version})", f"natsd: {modules}"]


@dataclass
class TLSCerts:
    """Paths of the generated PEM files, and helpers to use them."""

    dir: Path
    ca: str
    server_cert: str
    server_key: str
    alice_cert: str
    alice_key: str
    bob_cert: str
    bob_key: str
    other_ca: str
    other_server_cert: str
    other_server_key: str
    other_client_cert: str
    other_client_key: str

    def block(self, **extra: Any) -> dict[str, Any]:
        """A ``tls {}`` block (for a config mapping) with the server certificate."""
        return {"cert_file": self.server_cert, "key_file": self.server_key, **extra}

    def conf(self, extra: str = "") -> str:
        """The same block as config-file text; ``extra`` is more ``key: value`` lines."""
        return (f'tls {{\n  cert_file: "{self.server_cert}"\n  key_file: "{self.server_key}"\n'
                f"  {extra}\n}}\n")

    def client(self, cert: str | None = None, key: str | None = None,
               ca: str | None = None) -> ssl.SSLContext:
        """A client context trusting ``ca`` (default: the CA), presenting ``cert`` if given."""
        ctx = ssl.create_default_context(cafile=ca or self.ca)
        if cert is not None:
            ctx.load_cert_chain(cert, key)
        return ctx

    def alice(self) -> ssl.SSLContext:
        return self.client(self.alice_cert, self.alice_key)


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory: pytest.TempPathFactory) -> TLSCerts:
    import trustme

    d = tmp_path_factory.mktemp("tls")
    paths: dict[str, str] = {}

    def save(name: str, blob: Any) -> None:
        path = d / f"{name}.pem"
        blob.write_to_path(str(path))
        paths[name] = str(path)

    def leaf(prefix: str, cert: Any) -> None:
        save(f"{prefix}_cert", cert.cert_chain_pems[0])
        save(f"{prefix}_key", cert.private_key_pem)

    ca, other = trustme.CA(), trustme.CA()
    save("ca", ca.cert_pem)
    save("other_ca", other.cert_pem)
    leaf("server", ca.issue_cert("127.0.0.1", "localhost", common_name="localhost",
                                 organization_name="natsd", organization_unit_name="Server"))
    leaf("alice", ca.issue_cert("alice@example.com", common_name="alice",
                                organization_name="Org", organization_unit_name="Unit"))
    leaf("bob", ca.issue_cert("bob@example.com", common_name="bob",
                              organization_name="Org", organization_unit_name="Unit"))
    leaf("other_server", other.issue_cert("127.0.0.1", "localhost"))
    leaf("other_client", other.issue_cert("alice@example.com", common_name="alice",
                                          organization_name="Org", organization_unit_name="Unit"))
    return TLSCerts(dir=d, **paths)
