"""The ``natsd`` command line, with nats-server's flags.

Flags override the config file, as with nats-server. Flags of capabilities
that natsd provides through plugins (``-js``, ``--cluster`` ...) or does not
have yet are recognised and refused with a message that says what provides
them, so a nats-server command line never fails obscurely.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any

from natsd import NATS_SERVER_VERSION, __version__
from natsd.config import log as natsd_log

if TYPE_CHECKING:
    from natsd.plugin.manager import OptionParser

log = logging.getLogger("natsd")

#: nats-server flags that plugins provide (capability) or natsd lacks (None), as
#: ``(flags, capability, argparse keywords)``. Those no loaded plugin registers
#: are still recognised, and refused by name.
NATS_SERVER_FLAGS: tuple[tuple[tuple[str, ...], str | None, dict[str, Any]], ...] = (
    (("-js", "--jetstream"), "JetStream", {"action": "store_true"}),
    (("-sd", "--store_dir"), "JetStream", {}),
    (("--cluster",), "clustering", {}),
    (("--cluster_name",), "clustering", {}),
    (("--cluster_listen",), "clustering", {}),
    (("--cluster_advertise",), "clustering", {}),
    (("--routes",), "clustering", {}),
    (("--no_advertise",), "clustering", {}),
    (("--connect_retries",), "clustering", {}),
    (("-m", "--http_port"), "HTTP monitoring", {}),
    (("-ms", "--https_port"), "HTTP monitoring", {}),
    (("-s", "--syslog"), None, {"action": "store_true"}),
    (("-r", "--remote_syslog"), None, {}),
    (("--client_advertise",), None, {}),
    (("--profile",), None, {}),
)


def make_parser(*, add_help: bool = True) -> argparse.ArgumentParser:
    """The core's options; plugins add theirs (``natsd_addoption``) before parsing."""
    p = argparse.ArgumentParser(
        prog="natsd", description="natsd: a NATS-compatible message broker in Python.",
        epilog="Config files use nats-server's format; flags override the file.",
        add_help=add_help, allow_abbrev=False)
    s = p.add_argument_group("Server Options")
    s.add_argument("-a", "--addr", "--net", dest="host", metavar="HOST",
                   help="bind to host address (default: 0.0.0.0)")
    s.add_argument("-p", "--port", type=int, metavar="PORT",
                   help="use port for clients (default: 4222; 0 picks a free port)")
    s.add_argument("-n", "--name", "--server_name", dest="server_name", metavar="NAME",
                   help="server name (default: the server id)")
    s.add_argument("-P", "--pid", dest="pid_file", metavar="FILE", help="file to store the PID")
    s.add_argument("-c", "--config", metavar="FILE", help="configuration file")
    s.add_argument("-t", dest="test_config", action="store_true",
                   help="test the configuration and exit")
    s.add_argument("-sl", "--signal", metavar="CMD[=PID]",
                   help="send a signal to a running natsd and exit: reload, ldm (lame duck), "
                        "reopen (log file), quit, term, stop; PID is a pid or a pid file")
    s.add_argument("--ports_file_dir", metavar="DIR",
                   help="write natsd_<pid>.ports (the listening URLs, JSON) into DIR")
    s.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="register MODULE (an import path) as a plugin; repeatable")
    lg = p.add_argument_group("Logging Options")
    lg.add_argument("-l", "--log", dest="log_file", metavar="FILE", help="file to redirect log output")
    lg.add_argument("-T", "--logtime", type=_bool, nargs="?", const=True, default=None,
                    metavar="BOOL", help="timestamp log entries (default: true)")
    lg.add_argument("-D", "--debug", action="store_true", default=None, help="enable debugging output")
    lg.add_argument("-V", "--trace", action="store_true", default=None, help="trace the raw protocol")
    lg.add_argument("-DV", dest="debug_trace", action="store_true", help="debug and trace")
    t = p.add_argument_group("TLS Options (replace the file's tls {})")
    t.add_argument("--tls", "-tls", type=_bool, nargs="?", const=True, default=None, metavar="BOOL",
                   help="enable TLS, do not verify clients (--tls=false disables TLS)")
    t.add_argument("--tlscert", "-tlscert", metavar="FILE", help="server certificate file")
    t.add_argument("--tlskey", "-tlskey", metavar="FILE", help="private key for the server certificate")
    t.add_argument("--tlsverify", "-tlsverify", type=_bool, nargs="?", const=True, default=None,
                   metavar="BOOL", help="enable TLS, verify client certificates")
    t.add_argument("--tlscacert", "-tlscacert", metavar="FILE",
                   help="client certificate CA for verification")
    a = p.add_argument_group("Authorization Options")
    a.add_argument("--user", metavar="USER", help="user required for connections")
    a.add_argument("--pass", dest="password", metavar="PASSWORD", help="password required for connections")
    a.add_argument("--auth", metavar="TOKEN", help="authorization token required for connections")
    c = p.add_argument_group("Common Options")
    c.add_argument("-v", "--version", action="version",
                   version=f"natsd: v{__version__} (follows nats-server v{NATS_SERVER_VERSION})")
    return p


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def add_unprovided_flags(parser: argparse.ArgumentParser, known: set[str]) -> None:
    """Recognise nats-server's flags that no loaded plugin registered (to refuse them by name)."""
    for flags, _, kwargs in NATS_SERVER_FLAGS:
        if not any(f in known for f in flags):
            parser.add_argument(*flags, dest=_unprovided(flags), default=None,
                                help=argparse.SUPPRESS, **kwargs)


def _unprovided(flags: tuple[str, ...]) -> str:
    return "unprovided_" + flags[-1].lstrip("-")


def refuse_unprovided(args: argparse.Namespace) -> str | None:
    """The error for a nats-server flag that nothing here provides, if one was given."""
    for flags, capability, _ in NATS_SERVER_FLAGS:
        if getattr(args, _unprovided(flags), None) is not None:
            flag = "/".join(flags)
            if capability:
                return (f"{flag} configures {capability}, which needs a natsd plugin: "
                        "none installed and enabled provides it")
            return f"{flag} is a nats-server option natsd does not support yet"
    return None


def _overrides(args: argparse.Namespace, authorization: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.auth is not None or args.user is not None:
        auth = {k: v for k, v in (authorization or {}).items()
                if k.lower() not in ("token", "user", "password", "pass", "users")}
        if args.auth is not None:
            auth["token"] = args.auth
        else:
            auth["user"], auth["password"] = args.user, args.password or ""
        out["authorization"] = auth
    for key in ("host", "port", "server_name", "pid_file", "log_file", "ports_file_dir"):
        value = getattr(args, key)
        if value is not None:
            out[key] = value
    if args.logtime is not None:
        out["logtime"] = args.logtime
    if args.debug or args.debug_trace:
        out["debug"] = True
    if args.trace or args.debug_trace:
        out["trace"] = True
    return out


def _with_flags(args: argparse.Namespace, config: Any, options: OptionParser,
                owners: dict[str, str]) -> Any:
    """``config`` with the command line's flags applied over it (plugins' options included)."""
    config = _tls_flags(args, config.replace(**_overrides(args, config.authorization)))
    options.apply(args, config.blocks, owners)
    return config


def _tls_flags(args: argparse.Namespace, config: Any) -> Any:
    """``--tls*`` flags build a tls block that replaces the file's (as nats-server)."""
    from natsd.config.tls import tls_override

    settings = tls_override(config.tls, enable=args.tls, cert=args.tlscert, key=args.tlskey,
                            ca=args.tlscacert, verify=args.tlsverify)
    if settings is config.tls:
        return config
    from natsd.config import with_tls

    return with_tls(config, settings)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    early, _ = make_parser(add_help=False).parse_known_args(argv)
    if early.signal is not None:
        from .signals import SignalError, send

        try:
            pid = send(early.signal)
        except SignalError as exc:
            print(f"natsd: {exc}", file=sys.stderr)
            return 1
        print(f"natsd: signal {early.signal.partition('=')[0]} sent to pid {pid}")
        return 0
    from .config import plugin_settings
    from .config.conf import ConfError, parse_file
    from .plugin.manager import OptionParser, PluginError, PluginManager
    from .server import Server, build_config

    wants_help = any(a in ("-h", "--help") for a in argv)
    plugins = PluginManager()
    conf: Any = {}
    try:
        conf = parse_file(early.config) if early.config else {}
        if wants_help:  # show every installed plugin's options, even with a broken config
            plugins.load(plugin_settings(conf), early.plugin)
    except (ConfError, PluginError, OSError) as exc:
        if not wants_help:
            print(f"natsd: {'cannot read config' if isinstance(exc, OSError) else 'configuration error'}: "
                  f"{exc}", file=sys.stderr)
            return 1
    try:
        config = None if wants_help else build_config(conf, plugins, early.plugin, source=early.config)
    except (ConfError, PluginError) as exc:
        print(f"natsd: configuration error: {exc}", file=sys.stderr)
        return 1
    parser = make_parser()
    options = OptionParser(parser)
    plugins.addoption(options)
    add_unprovided_flags(parser, options.flags())
    args = parser.parse_args(argv)
    problem = refuse_unprovided(args)
    if problem:
        print(f"natsd: {problem}", file=sys.stderr)
        return 2
    assert config is not None
    try:
        config = _with_flags(args, config, options, plugins.owners)
    except (ConfError, PluginError) as exc:
        print(f"natsd: configuration error: {exc}", file=sys.stderr)
        return 1
    server = Server(config, plugin_manager=plugins)
    # flags win on reload too
    server.flag_overrides = lambda cfg: _with_flags(args, cfg, options, plugins.owners)
    if args.test_config:
        try:
            server.configure()
        except (ConfError, PluginError) as exc:
            print(f"natsd: configuration error: {exc}", file=sys.stderr)
            return 1
        print(f"natsd: configuration file {args.config} test is successful")
        return 0
    natsd_log.configure_from(config)
    try:
        _run(server)
    except (ConfError, PluginError) as exc:
        log.error("configuration error: %s", exc)
        return 1
    except OSError as exc:
        log.error("%s", exc)
        return 1
    return 0


def _loop_factory() -> Any:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _run(server: Any) -> None:
    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload(server)))
        loop.add_signal_handler(signal.SIGUSR1, _reopen_log)
        loop.add_signal_handler(signal.SIGUSR2, server.lame_duck)
        stopped = loop.create_task(server.wait_stopped())  # lame-duck mode ends in a shutdown
        signalled = loop.create_task(stop.wait())
        try:
            await asyncio.wait((stopped, signalled), return_when=asyncio.FIRST_COMPLETED)
        finally:
            signalled.cancel()
            await server.shutdown()
            stopped.cancel()

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve())


async def _reload(server: Any) -> None:
    from natsd.config.conf import ConfError

    try:
        await server.reload()
    except (ConfError, OSError, RuntimeError) as exc:
        log.error("Failed to reload server configuration: %s", exc)
    except Exception:
        log.exception("Failed to reload server configuration")


def _reopen_log() -> None:
    natsd_log.reopen()
    log.info("Reopened log file")
