"""The compiled accelerators (:mod:`natsd.compiled`): built, chosen, and held to the pure modules.

README's install compiles ``natsd.compiled.MODULES`` with mypyc, so the suite
runs against the compiled modules. These tests check that they really are
compiled (under CI, where a silent fallback would hide a broken build), run the
tests of those modules once more against the pure-Python modules (the
reference), and check that a build older than its source is never used.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import natsd_plugins  # registers the plugins' compiled modules
from natsd import compiled

ROOT = Path(__file__).resolve().parents[2]

PURE_RUN = [
    "tests/core/wire",  # the parser: unit and hypothesis tests
    "tests/core/routing",  # the router, subscriptions, accounts
    "tests/core/conn",
    "tests/core/test_server.py",  # clients over sockets
    "tests/core/test_cli.py::test_trace_flags",  # a traced client's output
    "tests/interop/test_differential.py",  # transcripts, natsd against nats-server
    "tests/interop/test_nats_py.py",
    "tests/plugins/mqtt/test_packets.py",  # the plugins' compiled modules (plugins/compiled_modules.py)
    "tests/plugins/mqtt/test_mqtt.py",  # the MQTT connection and sessions
    "tests/plugins/mqtt/test_persistence.py",
    "tests/plugins/jetstream",  # the index, streams, consumers and stores
    f"{Path(__file__).relative_to(ROOT)}::test_implementation_as_asked",
]
"""What runs again with ``NATSD_PURE_PYTHON=1``: the tests of the compiled modules' behaviour."""


def _compiled_or_skip() -> None:
    for name in compiled.all_modules():
        importlib.import_module(name)
    missing = [name for name, c in compiled.active().items() if not c]
    if not missing:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI installs natsd compiled, but these modules run pure Python: {missing} "
                    "(see the warnings of `pip install -e .`)")
    pytest.skip(f"natsd was installed without compiling {missing} (no mypyc or C compiler)")


def test_implementation_as_asked() -> None:
    assert set(natsd_plugins.compiled_modules.MODULES) <= set(compiled.all_modules())
    if compiled.pure_requested():
        for name in compiled.all_modules():
            assert importlib.import_module(name).__file__.endswith(".py")  # type: ignore[union-attr]
        assert not any(compiled.active().values())
    else:
        _compiled_or_skip()
        assert all(compiled.active().values())


@pytest.mark.timeout(900)
def test_pure_python_modules_pass_the_same_tests() -> None:
    if compiled.pure_requested():
        pytest.skip("this is the pure-Python run")
    _compiled_or_skip()
    env = {**os.environ, compiled.PURE_ENV: "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", *PURE_RUN], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=840)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout.splitlines()[-1]


def test_a_build_of_another_source_is_not_used() -> None:
    """A checkout edited since its build runs the edited source, with a warning, and so do the
    other compiled modules (a compiled class cannot derive from a pure-Python one)."""
    _compiled_or_skip()
    stderr = _run_edited("deliver.py", (
        "import natsd.routing.deliver as d, natsd.conn.client as cl, natsd.wire.protocol as p\n"
        "assert d.__file__.endswith('deliver.py'), d.__file__\n"
        "assert cl.__file__.endswith('client.py') and p.__file__.endswith('protocol.py'), (cl.__file__, p.__file__)\n"
        "assert not any(c.active().values()), c.active()\n"
        "p.Parser, cl.Client  # the modules work\n"
    ))
    assert "natsd.routing.deliver: the compiled module was built from another version of" in stderr
    assert "natsd.wire.protocol: the compiled" not in stderr  # only the edited one is named
    assert "pip install -e ." in stderr


def test_the_plugins_compiled_modules_are_a_group_of_their_own() -> None:
    """An edited plugin module runs from source with its group (the plugins' compiled modules);
    the core's compiled modules, another group, stay compiled."""
    _compiled_or_skip()
    stderr = _run_edited("packets.py", (
        "import natsd_plugins.mqtt.packets as p, natsd_plugins.jetstream.store.index as i\n"
        "import natsd.routing.deliver as d\n"
        "assert p.__file__.endswith('packets.py') and i.__file__.endswith('index.py'), (p.__file__, i.__file__)\n"
        "assert not d.__file__.endswith('.py'), d.__file__\n"
        "p.encode_publish(b't', b'x'), i.Index()  # the modules work\n"
    ))
    assert "natsd_plugins.mqtt.packets: the compiled module was built from another version of" in stderr
    assert "every compiled module of natsd_plugins" in stderr


def _run_edited(source: str, script: str) -> str:
    """Run ``script`` in a new interpreter where ``source`` (a file name) looks edited since its
    build; its stderr, once it succeeded."""
    prologue = ("import natsd.compiled as c\n"
                "real = c.source_digest\n"
                f"c.source_digest = lambda path: 'edited' if path.endswith({source!r}) else real(path)\n")
    run = subprocess.run([sys.executable, "-c", prologue + script], capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != compiled.PURE_ENV})
    assert run.returncode == 0, run.stderr
    return run.stderr


def test_a_plugin_package_declares_its_own_compiled_modules(tmp_path: Path) -> None:
    """The contract a third-party plugin uses (``natsd.declare_compiled``): a module it compiled
    with mypyc, carrying its source's digest, runs compiled; edited since, it runs from source."""
    _compiled_or_skip()  # mypyc and a C compiler are here
    package = tmp_path / "tp_plugin"
    package.mkdir()
    (package / "__init__.py").write_text("import natsd\n\n"
                                         "natsd.declare_compiled(__name__, __path__[0], ('tp_plugin.fast',))\n")
    source = "def twice(x: int) -> int:\n    return 2 * x\n"
    digest = hashlib.sha256(source.encode()).hexdigest()
    (package / "fast.py").write_text(f"{source}\n{compiled.DIGEST_NAME} = {digest!r}\n")  # as built
    build = subprocess.run([sys.executable, "-m", "mypyc", "tp_plugin/fast.py"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (package / "fast.py").write_text(source)  # the source as shipped
    script = ("import natsd.compiled as c, tp_plugin.fast as f\n"
              "print(f.__file__.endswith('.py'), c.active()['tp_plugin.fast'], f.twice(21))\n")
    env = {**{k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}, "PYTHONPATH": str(tmp_path)}

    def run() -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        return done

    assert run().stdout.split() == ["False", "True", "42"]
    (package / "fast.py").write_text(source.replace("2 * x", "x + x"))  # edited since the build
    edited = run()
    assert edited.stdout.split() == ["True", "False", "42"]
    assert "tp_plugin.fast: the compiled module was built from another version of" in edited.stderr


def test_a_module_outside_the_package_is_refused() -> None:
    import natsd

    with pytest.raises(ValueError, match="not a module of the package"):
        natsd.declare_compiled("tp_other", "/nowhere", ("natsd.routing.deliver",))
