"""The ``natsd`` command line, with nats-server's flags.

Flags override the config file, as with nats-server, and are spelt as it
takes them (``-port`` and ``--port`` alike). Flags of capabilities that natsd
provides through plugins (``-js``, ``--cluster`` ...) or does not support are
recognised and refused with a message that says so, so a nats-server command
line never fails obscurely.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any

from natsd import NATS_SERVER_VERSION, __version__
from natsd.config import NOT_SUPPORTED, RANDOM_PORT, nats_server_port
from natsd.config import log as natsd_log
from natsd.config.conf import ConfError, parse_size

if TYPE_CHECKING:
    from natsd.plugin.manager import OptionParser

log = logging.getLogger("natsd")

GC_THRESHOLDS = (20_000, 50, 100)
"""The cyclic garbage collector's thresholds when natsd runs as a command (Python's: 700, 10, 10).
What a message allocates is freed by reference counting; a collection every 700 allocations
scanned the young objects again and again for nothing: 4 % of the server's time under QoS 1 MQTT load.
An application that embeds :class:`natsd.Server` keeps its own."""

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

CHECK_NEEDS_CONFIG = "must specify [-c, --config] option to check configuration file syntax"
"""``-t`` without ``-c`` (nats-server's words; exit status 1)."""


def make_parser(*, add_help: bool = True) -> argparse.ArgumentParser:
    """The core's options; plugins add theirs (``natsd_addoption``) before parsing."""
    p = argparse.ArgumentParser(
        prog="natsd", description="natsd: a NATS-compatible message broker in Python.",
        epilog="Config files use nats-server's format; flags override the file.",
        add_help=add_help, allow_abbrev=False)
    s = p.add_argument_group("Server Options")
    s.add_argument("-a", "--addr", "--net", dest="host", metavar="HOST",
                   help="bind to host address (default: 0.0.0.0)")
    s.add_argument("-p", "--port", type=_port, metavar="PORT",
                   help="use port for clients (default: 4222; -1 picks a random port)")
    s.add_argument("-n", "--name", "--server_name", dest="server_name", metavar="NAME",
                   help="server name (default: the server id)")
    s.add_argument("-P", "--pid", dest="pid_file", metavar="FILE", help="file to store the PID")
    s.add_argument("-c", "--config", metavar="FILE", help="configuration file")
    s.add_argument("-t", dest="test_config", action="store_true",
                   help="test the configuration file (-c) and exit")
    s.add_argument("-sl", "--signal", metavar="CMD[=PID]",
                   help="send a signal to a running natsd and exit: reload, ldm (lame duck), "
                        "reopen (log file), quit, term, stop; PID is a pid or a pid file")
    s.add_argument("--reuse_port", action="store_true", default=None,
                   help="share the client port with other processes (SO_REUSEPORT; --workers uses it)")
    s.add_argument("--ports_file_dir", metavar="DIR",
                   help="write natsd_<pid>.ports (the listening URLs, JSON) into DIR")
    s.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="register MODULE (an import path) as a plugin; repeatable")
    lg = p.add_argument_group("Logging Options")
    lg.add_argument("-l", "--log", dest="log_file", metavar="FILE", help="file to redirect log output")
    lg.add_argument("-T", "--logtime", type=_bool, nargs="?", const=True, default=None,
                    metavar="BOOL", help="timestamp log entries (default: true)")
    lg.add_argument("--logtime_utc", type=_bool, nargs="?", const=True, default=None, metavar="BOOL",
                    help="timestamps in UTC instead of local time (default: false)")
    lg.add_argument("-D", "--debug", action="store_true", default=None, help="enable debugging output")
    lg.add_argument("-V", "--trace", action="store_true", default=None, help="trace the raw protocol")
    lg.add_argument("-VV", dest="trace_verbose", action="store_true",
                    help="verbose trace: as -V (natsd's internal system-account clients are not traced)")
    lg.add_argument("-DV", dest="debug_trace", action="store_true", help="debug and trace")
    lg.add_argument("-DVV", dest="debug_trace_verbose", action="store_true", help="debug and verbose trace")
    lg.add_argument("--log_size_limit", type=_size, metavar="SIZE",
                    help="rotate the log file at this size (default: never)")
    lg.add_argument("--max_traced_msg_len", type=_count, metavar="LEN",
                    help="payload bytes a trace shows (default: 0, all)")
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
    c.add_argument("--help_tls", action="store_true", help="show TLS help and exit")
    return p


def known_flags() -> set[str]:
    """The core's option strings and every nats-server flag natsd recognises."""
    flags = set(make_parser()._option_string_actions)
    for names, _, _ in NATS_SERVER_FLAGS:
        flags.update(names)
    return flags


def long_flags(argv: list[str], known: set[str]) -> list[str]:
    """``-name`` as ``--name`` when only the latter is an option: nats-server (Go's flag
    package) takes both spellings, and argparse would read ``-port`` as ``-p ort``."""
    out = []
    for arg in argv:
        name = arg.partition("=")[0]
        if arg[:1] == "-" and arg[:2] != "--" and name not in known and "-" + name in known:
            arg = "-" + arg
        out.append(arg)
    return out


def _port(text: str) -> int:
    """``-p``: as nats-server, ``0`` is the default port and ``-1`` a random one."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not RANDOM_PORT <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (-1 to 65535; -1: a random port)")
    return nats_server_port(port)


def _size(text: str) -> int:
    try:
        size = parse_size(text)
    except ConfError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None
    if size < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return size


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return n


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


def refuse_unprovided(args: argparse.Namespace) -> list[str]:
    """The errors for the nats-server flags given that nothing here provides."""
    problems = []
    for flags, capability, _ in NATS_SERVER_FLAGS:
        value = getattr(args, _unprovided(flags), None)
        if value is not None and value is not False:
            flag = "/".join(flags)
            if capability:
                problems.append(f"{flag} configures {capability}, which needs a natsd plugin: "
                                "none installed and enabled provides it")
            else:
                problems.append(f"{flag} is {NOT_SUPPORTED}")
    return problems


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
    for key in ("host", "port", "server_name", "pid_file", "log_file", "ports_file_dir", "logtime",
                "logtime_utc", "max_traced_msg_len", "reuse_port"):
        value = getattr(args, key)
        if value is not None:
            out[key] = value
    if args.log_size_limit is not None:
        out["logfile_size_limit"] = args.log_size_limit
    if args.debug or args.debug_trace or args.debug_trace_verbose:
        out["debug"] = True
    if args.trace or args.debug_trace or args.trace_verbose or args.debug_trace_verbose:
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
    argv = long_flags(sys.argv[1:] if argv is None else list(argv), known_flags())
    early_parser = make_parser(add_help=False)
    add_unprovided_flags(early_parser, set())  # so that `-s` is not read as an abbreviated -sl
    early, _ = early_parser.parse_known_args(argv)
    if early.help_tls:
        from natsd.config.tls import tls_help

        print(tls_help())
        return 0
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
    from .config.conf import parse_file
    from .plugin.manager import OptionParser, PluginError, PluginManager
    from .server import Server, build_config

    wants_help = any(a in ("-h", "--help") for a in argv)
    if early.test_config and not early.config and not wants_help:
        print(f"natsd: {CHECK_NEEDS_CONFIG}", file=sys.stderr)
        return 1
    plugins = PluginManager()
    conf: Any = {}
    try:
        conf = parse_file(early.config) if early.config else {}
        if wants_help:  # show every installed plugin's options, even with a broken config
            plugins.load(plugin_settings(conf), early.plugin)
    except (ConfError, PluginError, OSError) as exc:
        if not wants_help:
            if isinstance(exc, OSError):
                print(f"natsd: cannot read config: {exc}", file=sys.stderr)
            else:
                _print_errors(exc)
            return 1
    try:
        config = None if wants_help else build_config(conf, plugins, early.plugin, source=early.config)
    except (ConfError, PluginError) as exc:
        _print_errors(exc)
        return 1
    parser = make_parser()
    options = OptionParser(parser)
    plugins.addoption(options)
    add_unprovided_flags(parser, options.flags())
    args = parser.parse_args(argv)
    problems = refuse_unprovided(args)
    if problems:
        for problem in problems:
            print(f"natsd: {problem}", file=sys.stderr)
        return 2
    assert config is not None
    try:
        config = _with_flags(args, config, options, plugins.owners)
    except (ConfError, PluginError) as exc:
        _print_errors(exc)
        return 1
    if not args.test_config:
        try:
            taken = plugins.cmdline_main(config, argv)
        except (ConfError, PluginError) as exc:
            _print_errors(exc)
            return 1
        if taken is not None:
            return taken
    server = Server(config, plugin_manager=plugins)
    # flags win on reload too
    server.flag_overrides = lambda cfg: _with_flags(args, cfg, options, plugins.owners)
    if args.test_config:
        try:
            server.configure()
        except (ConfError, PluginError) as exc:
            _print_errors(exc)
            return 1
        print(f"natsd: configuration file {args.config} is valid")
        return 0
    natsd_log.configure_from(config)
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        _run(server)
    except (ConfError, PluginError) as exc:
        for text in _error_lines(exc):
            log.error("configuration error: %s", text)
        return 1
    except OSError as exc:
        log.error("%s", exc)
        return 1
    return 0


def _error_lines(exc: Exception) -> list[str]:
    """Every error of a configuration (nats-server reports them all), one line each."""
    if isinstance(exc, ConfError):
        return [error.location() for error in exc.errors]
    return [str(exc)]


def _print_errors(exc: Exception) -> None:
    for text in _error_lines(exc):
        print(f"natsd: configuration error: {text}", file=sys.stderr)


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
    try:
        await server.reload()
    except ConfError as exc:
        for text in _error_lines(exc):
            log.error("Failed to reload server configuration: %s", text)
    except (OSError, RuntimeError) as exc:
        log.error("Failed to reload server configuration: %s", exc)
    except Exception:
        log.exception("Failed to reload server configuration")


def _reopen_log() -> None:
    natsd_log.reopen()
    log.info("Reopened log file")
