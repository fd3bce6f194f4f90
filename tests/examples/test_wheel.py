"""natsd's own wheel, built and installed as docs/plugins.md tells plugin authors to.

The wheel is installed into a temporary folder put first on ``PYTHONPATH``,
so the checks below see the installed copy, not this checkout's editable one.
The build compiles ``natsd.compiled.MODULES`` (mypyc comes with the test
extras), so the wheel is CPython's and the installed copy runs them compiled.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from natsd import NATS_SERVER_VERSION, __version__, compiled

from .test_audit_plugin import _builds_without_isolation

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import importlib, importlib.metadata as md, json, sys, natsd, natsd_plugins, natsd_jwt
from natsd import compiled
target = sys.argv[1]
for module in (natsd, natsd_plugins, natsd_jwt):
    assert module.__file__.startswith(target), module.__file__
eps = [ep for ep in md.entry_points(group="natsd") if ep.dist.name == "natsd"]
for ep in eps:  # every first-party plugin imports from the installed copy
    assert ep.load().__file__.startswith(target), ep
for name in compiled.all_modules():  # the core's and the plugins'
    assert importlib.import_module(name).__file__.startswith(target), name
print(json.dumps({"plugins": sorted(ep.name for ep in eps), "compiled": compiled.active()}))
"""


def test_wheel_installs_the_packages_command_and_entry_points(tmp_path: Path) -> None:
    if not _builds_without_isolation():
        pytest.skip("setuptools >= 70.1 (or wheel) is needed to build without the index")
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
           "-w", str(tmp_path / "dist"), str(ROOT)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr
    [wheel] = (tmp_path / "dist").glob(f"natsd-{__version__}-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        tops = {name.split("/")[0] for name in names}
        scripts = zf.read(f"natsd-{__version__}.dist-info/entry_points.txt").decode()
    assert {"natsd", "natsd_plugins", "natsd_jwt"} <= tops
    assert "natsd = natsd.cli:main" in scripts

    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--target", str(site), str(wheel)], capture_output=True, text=True,
                          timeout=150)
    assert proc.returncode == 0, proc.stderr
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-c", CHECK, str(site)], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    installed = json.loads(out.stdout)
    assert {"auth", "cluster", "leafnode", "monitor", "system"} <= set(installed["plugins"])
    # Built where this checkout was built: compiled if and only if this checkout's modules are.
    import natsd_plugins  # noqa: F401  # registers the plugins' compiled modules

    for name in compiled.all_modules():
        importlib.import_module(name)
    assert installed["compiled"] == compiled.active()
    assert set(installed["compiled"]) == set(compiled.all_modules())
    for name, is_compiled in compiled.active().items():
        path = name.replace(".", "/")
        assert any(n.startswith(path + ".cpython-") and n.endswith(".so") for n in names) == is_compiled
        assert path + ".py" in names  # the source beside it: the reference, and the fallback
    version = subprocess.run([str(site / "bin" / "natsd"), "-v"], capture_output=True, text=True,
                             env=env, timeout=60)
    assert version.stdout.strip() == f"natsd: v{__version__} (follows nats-server v{NATS_SERVER_VERSION})"
