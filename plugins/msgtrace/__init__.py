"""nats-server's message tracing: ``Nats-Trace-Dest`` and the accounts' ``msg_trace``.

Always on, as in nats-server (it needs the system account, as there): a
message whose headers ask for it is followed through the server, and one
event per server (nats-server's JSON, :mod:`.events`) is published to the
trace destination, where ``nats trace`` and other tools written for
nats-server read it. ``accounts { A { msg_trace: { dest, sampling } } }``
traces messages that carry a sampled W3C ``traceparent``. See
docs/tracing.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from natsd import hookimpl
from natsd.config import ServerConfig, config_error
from natsd.plugin.contracts import ServerAPI
from natsd.plugin.stash import StashKey
from natsd.routing.subjects import valid_literal_subject

DESTS = StashKey[dict[str, tuple[str, int]]]()
TRACER = StashKey[Any]()


def account_dests(accounts: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    """``msg_trace`` (alias ``trace_dest``) of each account: ``{name: (dest, sampling)}``,
    checked with nats-server's errors."""
    out: dict[str, tuple[str, int]] = {}
    for name, block in accounts.items():
        if not isinstance(block, Mapping):
            continue
        key = next((k for k in block if k.lower() in ("msg_trace", "trace_dest")), None)
        if key is None:
            continue
        value = block[key]
        sampling: Any = 0
        if isinstance(value, str):
            dest = value
        elif isinstance(value, Mapping):
            dest = value.get("dest", "")
            sampling = value.get("sampling", 0)
        else:
            raise config_error(block, key, f"expected a destination or {{dest, sampling}}, got {value!r}")
        if isinstance(sampling, str):
            text = sampling.strip().removesuffix("%")
            if not text.isdigit():
                raise config_error(block, key, f"Trace destination sampling value {sampling!r} is invalid")
            sampling = int(text)
        if not isinstance(sampling, int) or isinstance(sampling, bool):
            raise config_error(block, key, f"Trace destination sampling value {sampling!r} is invalid")
        if not dest:
            continue  # sampling without a destination: ignored, as nats-server does
        if not valid_literal_subject(str(dest).encode()):
            raise config_error(block, key, f'Trace destination "{dest}" is not valid')
        if sampling != 0 and not 1 <= sampling <= 100:
            # the doubled T is nats-server's
            raise config_error(block, key,
                               f"Ttrace destination sampling value {sampling} is invalid, needs to be [1..100]")
        out[name] = (str(dest), sampling or 100)
    return out


@hookimpl
def natsd_configure(server: ServerAPI, config: ServerConfig) -> None:
    server.stash[DESTS] = account_dests(config.accounts)


@hookimpl
def natsd_message_tracers(server: ServerAPI) -> Any:
    if server.system_account is None:
        return None  # nats-server sends trace events through the system account's machinery
    from .tracer import MsgTracer

    dests: dict[str, tuple[str, int]] = server.stash.get(DESTS, {})
    tracer = server.stash[TRACER] = MsgTracer(server, dests)
    return tracer


@hookimpl
def natsd_reload(server: ServerAPI, old: ServerConfig, new: ServerConfig) -> Any:
    dests = account_dests(new.accounts)
    tracer = server.stash.get(TRACER, None)
    if tracer is None or dests == tracer.account_dests:
        return None

    def commit() -> None:
        tracer.set_account_dests(dests)
    return commit
