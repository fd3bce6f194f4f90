"""Exports and imports: the only ways messages cross from one account to another.

An account *exports* a stream (messages it publishes) or a service (requests
it answers), publicly or to named accounts; another account *imports* it.
Both are wired with forwarders: in-process clients whose subscriptions sit in
one account's sublist and who re-route what they receive into the other
account, so the routing core needs no special case.

- A stream import subscribes in the exporter to the imported subject and
  delivers into the importer under the import's ``prefix`` or ``to``.
- A service import subscribes in the importer to its local subject; each
  request is routed into the exporter with a generated reply subject
  ``_R_.<id>.<n>``, and the answer to that subject is routed back to the
  requester's own reply subject (once for ``singleton``, until the response
  threshold for ``stream`` and ``chunked``).

Forwarders are connections of kind ``ACCOUNT``: a message a forwarder
publishes is never forwarded again by a stream import or a service request
(they check the sender's kind), so import cycles cannot loop.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from natsd.config import config_error
from natsd.wire.protocol import CRLF

from .connection import Connection, Kind
from .deliver import deliver_as, deliver_traced, split_shown
from .subjects import subject_is_subset, valid_literal_subject, valid_subject
from .sublist import Subscription

if TYPE_CHECKING:
    from .account import Account
    from .connection import Host

log = logging.getLogger("natsd.imports")

RESPONSE_TYPES = ("singleton", "stream", "chunked")
RESPONSE_THRESHOLD = 120.0
"""Seconds a stream/chunked service response mapping lives (nats-server: 2 minutes)."""


@dataclass
class Export:
    kind: str  # "stream" or "service"
    subject: bytes
    accounts: frozenset[str] | None  # None: public
    response_type: str = "singleton"
    allow_trace: bool = False
    """A service export's consent to traced requests being followed into it (nats-server's
    ``allow_trace``; see :mod:`natsd.routing.trace`)."""

    def allows(self, subject: bytes, importer: str) -> bool:
        return subject_is_subset(subject, self.subject) and (self.accounts is None or importer in self.accounts)


@dataclass
class Links:
    """What was wired, for monitoring and tests."""

    exports: dict[str, list[Export]] = field(default_factory=dict)
    forwarders: list[Any] = field(default_factory=list)


def _subject(block: Any, key: str, value: Any, *, literal: bool = False) -> bytes:
    if not isinstance(value, str):
        raise config_error(block, key, f"expected a subject, got {value!r}")
    subj = value.encode()
    if not (valid_literal_subject(subj) if literal else valid_subject(subj)):
        raise config_error(block, key, f"invalid subject {value!r}")
    return subj


def _exports(name: str, block: Mapping[str, Any], known: set[str]) -> list[Export]:
    out: list[Export] = []
    entries = block.get("exports", [])
    if not isinstance(entries, list):
        raise config_error(block, "exports", "expected a list of exports")
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise config_error(block, "exports", "an export must be a block {stream: ...} or {service: ...}")
        kind = "stream" if "stream" in entry else "service" if "service" in entry else None
        if kind is None:
            raise config_error(entry, next(iter(entry), "stream"), "an export needs stream or service")
        subject = _subject(entry, kind, entry[kind])
        accounts = entry.get("accounts")
        if accounts is not None:
            if not isinstance(accounts, list) or not all(isinstance(a, str) for a in accounts):
                raise config_error(entry, "accounts", "expected a list of account names")
            for acc in accounts:
                if acc not in known:
                    raise config_error(entry, "accounts", f"unknown account {acc!r}")
        rtype = str(entry.get("response_type", entry.get("response", "singleton"))).lower()
        if kind == "service" and rtype not in RESPONSE_TYPES:
            raise config_error(entry, "response_type", f"expected one of {', '.join(RESPONSE_TYPES)}")
        allow_trace = _allow_trace(entry, "service" if kind == "stream" else None)
        out.append(Export(kind, subject, frozenset(accounts) if accounts is not None else None, rtype,
                          allow_trace))
    return out


def _allow_trace(entry: Mapping[str, Any], refused: str | None) -> bool:
    """An entry's ``allow_trace`` (nats-server takes it on service exports and stream imports;
    ``refused`` names the other kind, which may not have it, in nats-server's words)."""
    if "allow_trace" not in entry:
        return False
    value = entry["allow_trace"]
    if refused == "service":
        raise config_error(entry, "allow_trace", "Detected allow_trace directive on non-service")
    if refused == "stream":
        raise config_error(entry, "allow_trace", "Detected allow_trace directive on a non-stream")
    if not isinstance(value, bool):
        raise config_error(entry, "allow_trace", f"expected true or false, got {value!r}")
    return value


def wire(server: Host) -> Links:
    """Validate ``accounts {}`` exports/imports and install the forwarders."""
    accounts = server.config.accounts
    known = set(accounts)
    links = Links({name: _exports(name, block, known) for name, block in accounts.items()})
    for name, block in accounts.items():
        entries = block.get("imports", [])
        if not isinstance(entries, list):
            raise config_error(block, "imports", "expected a list of imports")
        importer = server.lookup_account(name)
        for entry in entries:
            if not isinstance(entry, Mapping) or not ("stream" in entry or "service" in entry):
                raise config_error(block, "imports", "an import must be {stream: {...}} or {service: {...}}")
            kind = "stream" if "stream" in entry else "service"
            src = entry[kind]
            if not isinstance(src, Mapping) or "account" not in src or "subject" not in src:
                raise config_error(entry, kind, "expected {account: NAME, subject: SUBJECT}")
            owner = src["account"]
            if owner not in known:
                raise config_error(src, "account", f"unknown account {owner!r}")
            subject = _subject(src, "subject", src["subject"])
            export = next((e for e in links.exports[owner]
                           if e.kind == kind and e.allows(subject, name)), None)
            if export is None:
                raise config_error(src, "subject", (
                    f"account {owner!r} does not export {kind} {subject.decode()!r} to {name!r}"))
            exporter = server.lookup_account(owner)
            if kind == "stream":
                fwd: Any = StreamImport(server, exporter, importer, subject, _stream_target(entry, subject),
                                        _allow_trace(entry, None))
            else:
                _allow_trace(entry, "stream")
                local = _subject(entry, "to", entry["to"]) if "to" in entry else subject
                fwd = ServiceImport(server, exporter, importer, subject, local, export.response_type,
                                    export.allow_trace)
            links.forwarders.append(fwd)
            log.debug("account %s imports %s %r from %s", name, kind, subject, owner)
    return links


def _stream_target(entry: Mapping[str, Any], subject: bytes) -> Callable[[bytes], bytes]:
    if "prefix" in entry:
        prefix = _subject(entry, "prefix", entry["prefix"], literal=True)
        return lambda s: prefix + b"." + s
    if "to" in entry:
        to = _subject(entry, "to", entry["to"])
        if not any(t in (b"*", b">") for t in subject.split(b".")):
            return lambda s: to
        from .mappings import MappingError, SubjectTransform, transform_tokenize

        try:
            transform = SubjectTransform(subject, transform_tokenize(to), strict=True)
        except MappingError as exc:
            raise config_error(entry, "to", str(exc)) from None
        return lambda s: transform.apply(s) or s
    return lambda s: s


class _Forwarder(Connection):
    """An in-process subscriber that routes what it receives into another account."""

    __slots__ = ("_placed",)

    def __init__(self, server: Host, importer: Account) -> None:
        super().__init__(server, importer, kind=Kind.ACCOUNT, transport="internal")
        self.out = None
        self.headers = True
        self._placed: list[tuple[Account, Subscription]] = []

    def _subscribe(self, account: Account, subject: bytes) -> Subscription:
        sub = Subscription(self, subject, None, b"import")
        account.add_sub(sub)
        self._placed.append((account, sub))
        return sub

    def close(self, reason: str = "", err: str | None = None, *, abort: bool = False) -> None:
        """Remove the forwarder's subscriptions (an import that no longer applies)."""
        self.closed = True
        for account, sub in self._placed:
            sub.closed = True
            account.remove_sub(sub)
        self._placed.clear()

    def _forward(self, account: Account, subject: bytes, reply: bytes | None,
                 headers: bytes | None, payload: bytes, shown: bytes | None = None,
                 trace: Any = None) -> None:
        """Route into ``account``; ``shown``: the subject its subscribers see instead (a
        JetStream delivery's stored subject, see :func:`natsd.routing.deliver.deliver_as`);
        ``trace``: the message's trace (see :mod:`natsd.routing.trace`), which follows it."""
        hdr = headers or b""
        body = hdr + payload
        size = str(len(body)).encode()
        self.trace = trace
        try:
            if shown is not None:
                deliver_as(account, self, subject, shown, reply, size, body + CRLF, len(hdr))
            elif trace is not None:
                deliver_traced(account, self, subject, reply, size, body + CRLF, len(hdr))
            else:
                account.deliver(self, subject, reply, size, body + CRLF, len(hdr))
        finally:
            self.trace = None
        self.server.schedule_flush()

    def remove_sub(self, sub: Subscription) -> None:
        pass  # forwarders never auto-unsubscribe


class StreamImport(_Forwarder):
    """Messages published in ``exporter`` on ``subject`` appear in ``importer``."""

    __slots__ = ("exporter", "importer", "target", "sub", "allow_trace")

    def __init__(self, server: Host, exporter: Account, importer: Account, subject: bytes,
                 target: Callable[[bytes], bytes], allow_trace: bool = False) -> None:
        super().__init__(server, importer)
        self.exporter = exporter
        self.importer = importer
        self.target = target
        self.allow_trace = allow_trace
        """Traced messages are followed into the importer (else they cross untraced, and a
        trace-only message stops here)."""
        self.sub = self._subscribe(exporter, subject)

    def deliver(self, sub: Subscription, subject: bytes, reply: bytes | None,
                headers: bytes | None, payload: bytes, sender: Connection) -> None:
        if sender.kind != Kind.ACCOUNT:
            reply, shown = split_shown(reply)
            target = self.target(subject)
            trace = sender.trace
            if trace is not None:
                trace.stream_export(self.importer, target)
                if not self.allow_trace:
                    if trace.only:
                        return
                    trace = None
            self._forward(self.importer, target, reply, headers, payload, shown, trace)


class ServiceImport(_Forwarder):
    """Requests in ``importer`` on ``local`` are answered by ``exporter`` on ``subject``."""

    __slots__ = ("exporter", "importer", "subject", "local", "response_type", "prefix",
                 "replies", "_seq", "_transform", "request_sub", "response_sub", "allow_trace")

    _ids = itertools.count(1)

    def __init__(self, server: Host, exporter: Account, importer: Account, subject: bytes,
                 local: bytes, response_type: str, allow_trace: bool = False) -> None:
        super().__init__(server, importer)
        self.allow_trace = allow_trace
        self.exporter = exporter
        self.importer = importer
        self.subject = subject
        self.local = local
        self.response_type = response_type
        self.prefix = b"_R_.%d." % next(self._ids)
        self.replies: dict[bytes, tuple[bytes, float]] = {}
        self._seq = itertools.count(1)
        self._transform: Any = None
        if local != subject and any(t in (b"*", b">") for t in local.split(b".")):
            from .mappings import SubjectTransform, transform_tokenize

            self._transform = SubjectTransform(local, transform_tokenize(subject), strict=True)
        self.request_sub = _RequestSide(self).subscribe(importer, local)
        self.response_sub = self._subscribe(exporter, self.prefix + b">")

    def _translate(self, subject: bytes) -> bytes:
        if self._transform is not None:
            return self._transform.apply(subject) or subject
        return self.subject if self.local != self.subject else subject

    def deliver(self, sub: Subscription, subject: bytes, reply: bytes | None,
                headers: bytes | None, payload: bytes, sender: Connection) -> None:
        if sub is self.request_sub:
            if sender.kind == Kind.ACCOUNT:
                return
            to = self._translate(subject)
            trace = sender.trace
            if trace is not None:
                trace.service_import(self.exporter, subject, to)
                if not self.allow_trace:
                    if trace.only:  # not followed into the exporter: the request ends here
                        if reply:
                            self._forward(self.importer, reply, None,
                                          b"NATS/1.0 503\r\nNats-Subject: %s\r\n\r\n" % subject, b"")
                        return
                    trace = None
            mapped = None
            if reply:  # not a message the server sent itself (its reply is empty: SERVER_SENT)
                mapped = self.prefix + b"%d" % next(self._seq)
                self._expire()
                self.replies[mapped] = (reply, time.monotonic() + RESPONSE_THRESHOLD)
            self._forward(self.exporter, to, mapped, headers, payload, None, trace)
            return
        entry = self.replies.get(subject)
        if entry is None:
            return
        if self.response_type == "singleton" or entry[1] < time.monotonic():
            del self.replies[subject]
            if entry[1] < time.monotonic():
                return
        # a response keeps its reply (a JetStream delivery's ack subject, so that the requester
        # can acknowledge it through its own import) as nats-server's response imports do
        reply, shown = split_shown(reply)
        self._forward(self.importer, entry[0], reply, headers, payload, shown, sender.trace)

    def close(self, reason: str = "", err: str | None = None, *, abort: bool = False) -> None:
        super().close(reason, err, abort=abort)
        self.request_sub.closed = True
        self.importer.remove_sub(self.request_sub)

    def _expire(self) -> None:
        if len(self.replies) < 1024:
            return
        now = time.monotonic()
        for key in [k for k, (_, exp) in self.replies.items() if exp < now]:
            del self.replies[key]


class _RequestSide(Connection):
    """The subscriber of a service import in the importing account (kind ``SERVICE_IMPORT``:
    delivered here, not announced to routes and gateways); hands requests to its import."""

    __slots__ = ("service",)

    def __init__(self, service: ServiceImport) -> None:
        super().__init__(service.server, service.importer, kind=Kind.SERVICE_IMPORT, transport="internal")
        self.out = None
        self.headers = True
        self.service = service

    def subscribe(self, account: Account, subject: bytes) -> Subscription:
        sub = Subscription(self, subject, None, b"import")
        account.add_sub(sub)
        return sub

    def deliver(self, sub: Subscription, subject: bytes, reply: bytes | None,
                headers: bytes | None, payload: bytes, sender: Connection) -> None:
        self.service.deliver(sub, subject, reply, headers, payload, sender)

    def remove_sub(self, sub: Subscription) -> None:
        pass  # never auto-unsubscribes
