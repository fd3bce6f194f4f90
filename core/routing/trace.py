"""Message tracing: how the router reports one message's path to the plugins that trace it.

A tracer (``natsd_message_tracers``, :class:`natsd.plugin.contracts.MessageTracer`)
looks at a message when a client publishes it and may return a
:class:`natsd.plugin.contracts.MessageTrace`. While that message is routed,
the publishing connection's ``trace`` holds it, and the router reports each
step to it: the subject mapping, a refusal, a stream export or service import
crossing accounts, each local delivery, each link to another server. The
trace's ``end`` closes it.

Untraced messages pay nothing for this beyond the ``trace`` test on the
careful delivery path (:func:`natsd.routing.deliver.deliver_one`), which
headers, permissions and in-process receivers take anyway; a traced message
is routed by :func:`natsd.routing.deliver.deliver_traced`, in which every
receiver takes that path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

MessageTracer = Any
"""A :class:`natsd.plugin.contracts.MessageTracer` (the contract lives above this layer)."""
MessageTrace = Any
"""A :class:`natsd.plugin.contracts.MessageTrace`."""

if TYPE_CHECKING:
    from .account import Account
    from .connection import Connection
    from .sublist import Subscription


class _Drop:
    """The trace that discards its message (see :data:`DROP`)."""

    __slots__ = ()
    only = True

    def __repr__(self) -> str:
        return "DROP"


DROP: Any = _Drop()
"""What a tracer's ``begin`` returns to discard the message before it is routed (nats-server
drops a message whose trace destination its publisher may not publish to). The publisher
is told by the tracer, if at all."""


class Tracing:
    """The server's message tracers, sorted by what they look at.

    ``by_header`` are asked about messages whose header block contains one of
    their ``triggers`` (``triggers`` here is the union the publish path
    tests); ``every`` (tracers with ``every = True``) about each message a
    client publishes as well. Both empty: nothing is traced and clients
    publish through the untraced path.
    """

    __slots__ = ("tracers", "every", "by_header", "triggers")

    def __init__(self, tracers: Sequence[MessageTracer] = ()) -> None:
        self.tracers = tuple(tracers)
        self.refresh()

    def refresh(self) -> None:
        """Sort the tracers again (their ``triggers`` or ``every`` may change on a reload)."""
        tracers = self.tracers
        self.every = tuple(t for t in tracers if getattr(t, "every", False))
        self.by_header = tuple(t for t in tracers if t.triggers)
        self.triggers = tuple(sorted({name for t in self.by_header for name in t.triggers}))

    def __bool__(self) -> bool:
        return bool(self.every or self.by_header)

    def wants(self, data: bytes, end: int) -> bool:
        """True if some tracer may want a message whose header block is ``data[:end]``
        (given so, the block need not be copied out of the frame)."""
        for name in self.triggers:
            if data.find(name, 0, end) >= 0:
                return True
        return False

    def begin(self, client: Connection, account: Account, subject: bytes, reply: bytes | None,
              headers: bytes | None, size: int, *, internal: bool = False) -> MessageTrace | None:
        """The trace(s) of one published message, or ``None`` if no tracer takes it.

        ``size`` is the message's size, headers included. ``internal``: a
        message a plugin publishes (an in-process client), which only
        header-triggered tracers see. A tracer that raises is treated as one
        that declined (the message is delivered regardless).
        """
        traces: list[MessageTrace] = []
        every = () if internal else self.every
        asked = list(every)
        if headers:
            for tracer in self.by_header:
                if tracer not in every:
                    for name in tracer.triggers:
                        if name in headers:
                            asked.append(tracer)
                            break
        for tracer in asked:
            try:
                trace = tracer.begin(client, account, subject, reply, headers, size)
            except Exception:
                _log().exception("message tracer %r failed", tracer)
                continue
            if trace is DROP:
                return DROP
            if trace is not None:
                traces.append(trace)
        if not traces:
            return None
        return traces[0] if len(traces) == 1 else Traces(traces)


class Traces:
    """Several traces of one message, reported to as one."""

    __slots__ = ("traces", "only")

    def __init__(self, traces: list[MessageTrace]) -> None:
        self.traces = traces
        self.only = any(t.only for t in traces)
        """One trace asking not to deliver (trace only) is enough: no other may deliver."""

    def mapped(self, subject: bytes) -> None:
        for t in self.traces:
            t.mapped(subject)

    def refused(self, error: str) -> None:
        for t in self.traces:
            t.refused(error)

    def stream_export(self, account: Account, subject: bytes) -> None:
        for t in self.traces:
            t.stream_export(account, subject)

    def service_import(self, account: Account, subject: bytes, to: bytes) -> None:
        for t in self.traces:
            t.service_import(account, subject, to)

    def delivered(self, sub: Subscription, subject: bytes, error: str | None) -> bool:
        deliver = True
        for t in self.traces:  # each is told, whatever the others say
            if not t.delivered(sub, subject, error):
                deliver = False
        return deliver

    def forwarded(self, link: Connection, subject: bytes, queues: Sequence[bytes],
                  headers: bytes) -> bytes | None:
        sent = headers
        held = False
        for t in self.traces:
            out = t.forwarded(link, subject, queues, sent)
            if out is None:
                held = True
            else:
                sent = out
        return None if held else sent

    def end(self) -> None:
        for t in self.traces:
            try:
                t.end()
            except Exception:
                _log().exception("message trace %r failed to end", t)

    def stored(self, stream: str, subject: bytes, error: str | None = None,
               no_interest: bool = False) -> None:
        for t in self.traces:
            t.stored(stream, subject, error, no_interest)

    def hold(self) -> Callable[[], None]:
        releases = [t.hold() for t in self.traces]

        def release() -> None:
            for r in releases:
                r()
        return release


def _log() -> Any:
    import logging

    return logging.getLogger("natsd.trace")
