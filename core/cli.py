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
from typing import Any

from natsd import __version__
from natsd.config import log as natsd_log

log = logging.getLogger("natsd")

# flag -> (plugin providing it or None when natsd lacks it, description)
_LATER_FLAGS: dict[str, tuple[str | None, str]] = {
    "jetstream": ("jetstream", "-js/--jetstream"),
    "store_dir": ("jetstream", "-sd/--store_dir"),
    "cluster": ("cluster", "--cluster"),
    "cluster_name": ("cluster", "--cluster_name"),
    "cluster_listen": ("cluster", "--cluster_listen"),
    "cluster_advertise": ("cluster", "--cluster_advertise"),
    "routes": ("cluster", "--routes"),
    "no_advertise": ("cluster", "--no_advertise"),
    "connect_retries": ("cluster", "--connect_retries"),
    "syslog": (None, "-s/--syslog"),
    "remote_syslog": (None, "-r/--remote_syslog"),
    "client_advertise": (None, "--client_advertise"),
    "profile": (None, "--profile"),
}


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="natsd", description="natsd: a NATS-compatible message broker in Python.",
        epilog="Config files use nats-server's format; flags override the file.")
    s = p.add_argument_group("Server Options")
    s.add_argument("-a", "--addr", "--net", dest="host", metavar="HOST",
                   help="bind to host address (default: 0.0.0.0)")
    s.add_argument("-p", "--port", type=int, metavar="PORT",
                   help="use port for clients (default: 4222; 0 picks a free port)")
    s.add_argument("-n", "--name", "--server_name", dest="server_name", metavar="NAME",
                   help="server name (default: the server id)")
    s.add_argument("-P", "--pid", dest="pid_file", metavar="FILE", help="file to store the PID")
    s.add_argument("-m", "--http_port", type=int, metavar="PORT",
                   help="use port for HTTP monitoring (the monitor plugin; 0 picks a free port)")
    s.add_argument("-ms", "--https_port", type=int, metavar="PORT",
                   help="use port for HTTPS monitoring (with the tls {} certificate)")
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
    later = p.add_argument_group("Options of capabilities provided by plugins or later versions")
    later.add_argument("-js", "--jetstream", action="store_true", default=None, help=argparse.SUPPRESS)
    for flags, dest in ((("-sd", "--store_dir"), "store_dir"), (("--cluster",), "cluster"),
                        (("--cluster_name",), "cluster_name"), (("--cluster_listen",), "cluster_listen"),
                        (("--cluster_advertise",), "cluster_advertise"), (("--routes",), "routes"),
                        (("--no_advertise",), "no_advertise"), (("--connect_retries",), "connect_retries"),
                        (("-r", "--remote_syslog"), "remote_syslog"),
                        (("--client_advertise",), "client_advertise"), (("--profile",), "profile")):
        later.add_argument(*flags, dest=dest, default=None, help=argparse.SUPPRESS)
    later.add_argument("-s", "--syslog", dest="syslog", action="store_true", default=None,
                       help=argparse.SUPPRESS)
    later.description = ("-js/--jetstream, -sd, --cluster, --routes ... are recognised and "
                         "answered with the plugin that provides them.")
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
                   version=f"natsd: v{__version__} (nats-server v2.9.10 compatible)")
    return p


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def _refuse_later_flags(args: argparse.Namespace) -> str | None:
    for dest, (plugin, flag) in _LATER_FLAGS.items():
        if getattr(args, dest, None) is not None:
            if plugin:
                return (f"{flag} is provided by the natsd plugin {plugin!r} "
                        f"(natsd_plugins.{plugin}), which is not installed or not enabled")
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


def _with_flags(args: argparse.Namespace, config: Any, owners: dict[str, str]) -> Any:
    """``config`` with the command line's flags applied over it."""
    config = _tls_flags(args, config.replace(**_overrides(args, config.authorization)))
    _plugin_overrides(args, config, owners)
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


def _plugin_overrides(args: argparse.Namespace, config: Any, owners: dict[str, str]) -> None:
    """Flags that set keys owned by plugins (``-m``/``-ms``: the monitor plugin's ports)."""
    for key, flag in (("http_port", "-m/--http_port"), ("https_port", "-ms/--https_port")):
        value = getattr(args, key)
        if value is None:
            continue
        if key not in owners:
            from natsd.config.conf import ConfError

            raise ConfError(f"{flag} is provided by the natsd plugin 'monitor' "
                            "(natsd_plugins.monitor), which is not installed or not enabled")
        others = ("https", "https_port") if key == "http_port" else ("http", "http_port", "monitor_port")
        for other in others:  # the flag's scheme replaces the file's
            config.blocks.pop(other, None)
        config.blocks[key] = value


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.signal is not None:
        from natsd.signals import SignalError, send

        try:
            pid = send(args.signal)
        except SignalError as exc:
            print(f"natsd: {exc}", file=sys.stderr)
            return 1
        print(f"natsd: signal {args.signal.partition('=')[0]} sent to pid {pid}")
        return 0
    problem = _refuse_later_flags(args)
    if problem:
        print(f"natsd: {problem}", file=sys.stderr)
        return 2
    from natsd.config.conf import ConfError, parse_file
    from natsd.plugin.manager import PluginError, PluginManager
    from natsd.server import Server, build_config

    plugins = PluginManager()
    try:
        conf = parse_file(args.config) if args.config else {}
        config = build_config(conf, plugins, args.plugin, source=args.config)
        config = _with_flags(args, config, plugins.owners)
    except (ConfError, PluginError) as exc:
        print(f"natsd: configuration error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"natsd: cannot read config: {exc}", file=sys.stderr)
        return 1
    server = Server(config, plugin_manager=plugins)
    server.flag_overrides = lambda cfg: _with_flags(args, cfg, plugins.owners)  # flags win on reload too
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
