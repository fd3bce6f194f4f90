"""``natsd --signal CMD[=PID]``: signal a running natsd, as ``nats-server --signal`` does.

Commands map to the signals the server handles: ``reload`` (SIGHUP, re-read
the config file), ``ldm`` (SIGUSR2, lame-duck mode), ``reopen`` (SIGUSR1,
reopen the log file), ``quit`` (SIGINT) and ``term`` (SIGTERM, both a clean
shutdown) and ``stop`` (SIGKILL). ``PID`` is a process id or a pid file;
without it the one natsd process running on this machine is signalled.
"""

from __future__ import annotations

import os
import signal

COMMANDS: dict[str, signal.Signals] = {
    "stop": signal.SIGKILL,
    "quit": signal.SIGINT,
    "term": signal.SIGTERM,
    "reopen": signal.SIGUSR1,
    "reload": signal.SIGHUP,
    "ldm": signal.SIGUSR2,
}


class SignalError(Exception):
    """The command or its target is invalid."""


def parse(text: str) -> tuple[signal.Signals, str | None]:
    """``"reload=1234"`` -> (SIGHUP, "1234")."""
    command, _, target = text.partition("=")
    sig = COMMANDS.get(command.lower())
    if sig is None:
        raise SignalError(f"unknown signal {command!r} (known: {', '.join(COMMANDS)})")
    return sig, target or None


def resolve(target: str | None) -> int:
    """The pid to signal: ``target`` as a pid or pid file, else the only natsd running."""
    if target is None:
        pids = running_pids()
        if not pids:
            raise SignalError("no natsd process found")
        if len(pids) > 1:
            raise SignalError("multiple natsd processes running (pids "
                              + ", ".join(map(str, pids)) + "); name one: --signal CMD=PID")
        return pids[0]
    if target.isdigit():
        return int(target)
    try:
        with open(target) as fh:
            text = fh.read().strip()
    except OSError as exc:
        raise SignalError(f"cannot read pid file {target}: {exc.strerror}") from None
    if not text.isdigit():
        raise SignalError(f"pid file {target} does not hold a process id: {text[:40]!r}")
    return int(text)


def running_pids() -> list[int]:
    """Processes (other than this one) running natsd: ``natsd ...`` or ``python -m natsd ...``."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if _is_natsd(argv):
            found.append(int(entry))
    return sorted(found)


def _is_natsd(argv: list[bytes]) -> bool:
    if not argv or b"--signal" in argv or b"-sl" in argv:
        return False
    program = os.path.basename(argv[0])
    if program == b"natsd":
        return True
    if program.startswith(b"python") and len(argv) > 1:
        return os.path.basename(argv[1]) == b"natsd" or argv[1:3] == [b"-m", b"natsd"]
    return False


def send(text: str) -> int:
    """Parse and send; return the pid signalled."""
    sig, target = parse(text)
    pid = resolve(target)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        raise SignalError(f"no process with pid {pid}") from None
    except PermissionError:
        raise SignalError(f"not allowed to signal pid {pid}") from None
    return pid
