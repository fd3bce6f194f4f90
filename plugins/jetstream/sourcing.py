"""Mirrors and sources: a stream fed by another stream's messages, as nats-server does it.

For its ``mirror`` and each of its ``sources`` a stream asks the origin
(``$JS.API``, or the ``external.api`` prefix of another domain or account)
for a push consumer, exactly as nats-server asks: ``direct`` and ``sourcing``,
no acks, flow control, a heartbeat every second, gone after 10 s without
interest. What it delivers is stored here:

- a **mirror** keeps the origin's sequences and times (sequences the origin
  no longer has are skipped here too) and takes nothing else;
- a **source** stores each message under a new sequence with a
  ``Nats-Stream-Source: <origin> <origin seq> <filters> <dests> <subject>``
  header, which is also how it knows, after a restart, where it stopped.

Flow control requests are answered, a consumer whose heartbeats show a gap
or that has been silent for 10 s is asked for again from the last origin
sequence stored plus one (after 2 s at least, 10 s more per failure, at most
2 minutes), so nothing is lost and nothing stored twice. Because the origin
is reached through its API subjects, it may be on this server, another
server of the cluster or across a leaf node, in a domain of its own.
"""

from __future__ import annotations

import json
import logging
import secrets
import string
import time
from typing import TYPE_CHECKING, Any

from natsd.routing.connection import Kind
from natsd.routing.subjects import subject_matches, valid_literal_subject

from .errors import ApiError
from .streams import NS, index_name, parse_headers, short_hash

if TYPE_CHECKING:
    import asyncio

    from natsd.routing.sublist import Subscription

    from .streams import Stream

log = logging.getLogger("natsd.jetstream")

HEARTBEAT = NS
STALLED_AFTER = 10.0
"""Seconds without a message or heartbeat before the origin is asked again."""
INACTIVE = 10 * NS
DIRECT_CAUGHT_UP = 10
"""A ``mirror_direct`` mirror answers direct gets once fewer than this many messages are pending."""
MIN_RETRY, RETRY_STEP, MAX_RETRY = 2.0, 10.0, 120.0
SOURCE_HEADER = "Nats-Stream-Source"
_LETTERS = string.digits + string.ascii_letters


def _random(n: int = 8) -> str:
    return "".join(secrets.choice(_LETTERS) for _ in range(n))


def _strip(block: bytes, drop: tuple[str, ...], prefixes: tuple[str, ...]) -> list[bytes]:
    """The header lines of ``block`` without the names in ``drop`` or starting with ``prefixes``."""
    kept = []
    for line in block.split(b"\r\n")[1:] if block else []:
        if not line:
            continue
        name = line.split(b":", 1)[0].strip().decode("latin-1")
        if name in drop or name.startswith(prefixes):
            continue
        kept.append(line)
    return kept


class Feed:
    """One mirror or source of a stream: the consumer asked of the origin and what it delivers."""

    def __init__(self, stream: Stream, config: dict[str, Any], mirror: bool) -> None:
        self.stream = stream
        self.config = config
        self.mirror = mirror
        self.iname = index_name(config)
        self.sseq = 0
        """The last origin sequence stored here."""
        self.dseq = 0
        """The last delivery sequence taken from the current consumer."""
        self.cname = ""
        self.lag = 0
        self.last_heard = 0
        self.error: dict[str, Any] | None = None
        self.fails = 0
        self.last_request = 0.0
        self.ident = ""
        # its own connection: the account's JetStream client answers the API and delivers, and a
        # client does not receive what it publishes itself
        self.client = stream.owner.server.connect_internal("jetstream-sourcing", stream.account, kind=Kind.JETSTREAM)
        self._sub: Subscription | None = None
        self._reply_sub: Subscription | None = None
        self._direct: list[Subscription] = []
        """A ``mirror_direct`` mirror's share of the origin's direct gets (once it caught up)."""
        self._timer: asyncio.TimerHandle | None = None
        self._health: asyncio.TimerHandle | None = None
        self.unreached: bytes | None = None
        """The consumer create request's subject when nobody could receive it (the origin's API
        not reachable yet: a leaf link still coming up); :meth:`reachable` asks again."""
        self.closed = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, last: int, ident: str = "") -> None:
        """Begin from origin sequence ``last`` + 1 (0: by the config's start); ``ident``: the
        origin's identity as last seen (a recreated origin is then noticed)."""
        self.sseq = last
        self.ident = ident
        self._schedule(0.0)
        self._health = self._loop.call_later(STALLED_AFTER, self._check_health)

    def stop(self) -> None:
        self.closed = True
        for handle in (self._timer, self._health):
            if handle is not None:
                handle.cancel()
        self._drop_subs()
        if self.cname:
            self._request("CONSUMER.DELETE", self.cname, b"", None)
        self.client.close()

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        return self.stream.owner.server.loop

    def _schedule(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay, self._setup)

    def _retry(self) -> None:
        """Ask the origin again, from the last sequence stored + 1, after the backoff."""
        self._drop_subs()
        self.fails += 1
        backoff = min(RETRY_STEP * (self.fails - 1), MAX_RETRY)
        since = time.monotonic() - self.last_request
        self._schedule(max(backoff, MIN_RETRY - since, 0.0) + secrets.randbelow(100) / 1000)

    def _drop_subs(self) -> None:
        for sub in (self._sub, self._reply_sub):
            if sub is not None:
                self.client.unsubscribe(sub)
        self._sub = self._reply_sub = None

    def _check_health(self) -> None:
        self._health = None
        if self.closed:
            return
        quiet = (time.time_ns() - self.last_heard) / NS if self.last_heard else STALLED_AFTER
        if self._timer is None and quiet >= STALLED_AFTER:
            self._retry()
        self._health = self._loop.call_later(STALLED_AFTER, self._check_health)

    # -- asking the origin -----------------------------------------------------------------------

    def _request(self, api: str, name: str, body: bytes, headers: bytes | None,
                 reply: str | None = None) -> None:
        subject = f"$JS.API.{api}.{self.config['name']}" + (f".{name}" if name and api != "CONSUMER.CREATE" else "")
        external = self.config.get("external")
        if external and external.get("api"):
            subject = subject.replace("$JS.API", external["api"], 1).replace("..", ".")
        self.client.publish(subject, body, reply=reply, headers=headers)

    def _setup(self) -> None:
        self._timer = None
        if self.closed:
            return
        self._drop_subs()
        self.last_request = time.monotonic()
        stream, cfg = self.stream, self.config
        owner = stream.owner
        kind = "mirror" if self.mirror else "src"
        stable = f"{stream.name} {stream.account}" + (f" {owner.domain}" if owner.domain else "")
        self.cname = f"JS_{'MIRROR' if self.mirror else 'SRC'}_{short_hash(stable)}"
        if not self.mirror and sum(1 for s in stream.config.get("sources") or [] if s["name"] == cfg["name"]) > 1:
            self.cname = f"JS_SRC_{short_hash(stable + ' ' + self.iname)}"
        external = cfg.get("external") or {}
        prefix = external.get("deliver") or "$JS"
        deliver = f"{prefix}.{'M' if self.mirror else 'S'}.{_random()}".replace("..", ".")
        consumer: dict[str, Any] = {"name": self.cname}
        start = self.sseq + 1
        pristine = stream.store.state().msgs == 0 and stream.store.state().last_seq == 0
        if self.sseq > 0 or (self.mirror and not pristine):
            consumer.update(deliver_policy="by_start_sequence",
                            opt_start_seq=max(start, stream.store.state().last_seq + 1) if self.mirror else start)
        elif cfg.get("opt_start_seq"):
            consumer.update(deliver_policy="by_start_sequence", opt_start_seq=cfg["opt_start_seq"])
        elif cfg.get("opt_start_time"):
            consumer.update(deliver_policy="by_start_time", opt_start_time=cfg["opt_start_time"])
        else:
            consumer["deliver_policy"] = "all"
        consumer.update(ack_policy="none", ack_wait=22 * 3600 * NS, max_deliver=1)
        transforms = cfg.get("subject_transforms") or []
        if cfg.get("filter_subject"):
            consumer["filter_subject"] = cfg["filter_subject"]
        elif len(transforms) == 1:
            consumer["filter_subject"] = transforms[0]["src"] or ">"
        elif transforms:
            consumer["filter_subjects"] = [t["src"] or ">" for t in transforms]
        consumer.update(replay_policy="instant", flow_control=True, deliver_subject=deliver,
                        idle_heartbeat=HEARTBEAT, inactive_threshold=INACTIVE, num_replicas=0, direct=True,
                        sourcing=True)
        meta = {f"_nats.{kind}.acc": stream.account}
        if owner.domain:
            meta[f"_nats.{kind}.domain"] = owner.domain
        meta[f"_nats.{kind}.stream"] = stream.name
        consumer["metadata"] = meta
        body = json.dumps({"stream_name": cfg["name"], "config": consumer, "action": ""},
                          separators=(",", ":")).encode()
        level = 4 if self.mirror else 5
        headers = f"NATS/1.0\r\nNats-Required-Api-Level: {level}\r\n".encode()
        if not self.mirror:
            headers += f"Nats-Stream-Identity: {self.ident}\r\n".encode()
        reply = f"$JSC.R.{_random()}"
        self._reply_sub = self.client.subscribe(reply, self._created)
        filter_ = consumer.get("filter_subject")
        # nats-server names the consumer and its filter in the subject; a filter with wildcards
        # cannot be published, so then the name and filter go in the body only (both servers take it)
        literal = filter_ and valid_literal_subject(filter_.encode())
        name = f"{self.cname}.{filter_}" if literal else ""
        subject_api = "CONSUMER.CREATE"
        subject = f"$JS.API.{subject_api}.{cfg['name']}" + (f".{name}" if name else "")
        if external.get("api"):
            subject = subject.replace("$JS.API", external["api"], 1).replace("..", ".")
        reached = self.client.publish(subject, body, reply=reply, headers=headers + b"\r\n")
        self.unreached = None if reached else subject.encode()

    def reachable(self, interest: bytes) -> None:
        """Someone subscribed to ``interest`` in the stream's account: if that reaches the request
        that went nowhere, ask again now rather than at the next health check (as nats-server
        retries its sync consumers when a leaf node connects)."""
        if self.unreached is not None and self._sub is None and subject_matches(interest, self.unreached):
            self.unreached = None
            self._schedule(0.0)

    def _created(self, subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
        if self.closed:
            return
        if self._reply_sub is not None:
            self.client.unsubscribe(self._reply_sub)
            self._reply_sub = None
        self.unreached = None
        try:
            response = json.loads(payload)
        except ValueError:
            response = {}
        config = response.get("config") if isinstance(response, dict) else None
        error = response.get("error") if isinstance(response, dict) else None
        if not self.mirror and isinstance(error, dict) and error.get("err_code") == 10225:
            # the origin was recreated since this source last read it: start it over, at once
            log.warning("JetStream: stream %r: source %r was recreated; sourcing it from the start",
                        self.stream.name, self.config["name"])
            self.sseq, self.dseq, self.ident = 0, 0, ""
            self.stream.save_sources()
            self._schedule(0.0)
            return
        if not isinstance(config, dict) or response.get("error"):
            self.error = response.get("error") if isinstance(response, dict) else None
            log.warning("JetStream: stream %r could not %s %r: %s", self.stream.name,
                        "mirror" if self.mirror else "source", self.config["name"], self.error)
            self._retry()
            return
        self.error = None
        self.fails = 0
        self.cname = response.get("name") or self.cname
        self.dseq = 0
        if headers:
            ident = parse_headers(headers).get("Nats-Stream-Identity")
            if ident:
                self.ident = ident
        delivered = int((response.get("delivered") or {}).get("stream_seq") or 0)
        if self.mirror:
            store = self.stream.store
            last = store.state().last_seq
            if delivered > last:
                self.stream.skip_to(delivered)  # the origin starts later: the mirror's sequences follow
            self.sseq = max(delivered, last)
        else:
            self.sseq = max(self.sseq, delivered)
        self._sub = self.client.subscribe(config.get("deliver_subject") or "", self._delivered)
        self.last_heard = time.time_ns()

    # -- what the origin delivers ----------------------------------------------------------------

    def _delivered(self, subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
        if self.closed:
            return
        self.last_heard = time.time_ns()
        if not payload and headers and headers.startswith(b"NATS/1.0 100"):
            self._control(reply, headers)
            return
        tokens = (reply or b"").split(b".")
        if len(tokens) != 9 or tokens[:2] != [b"$JS", b"ACK"]:
            return
        try:
            consumer = tokens[3].decode()
            count, sseq, dseq, ts, pending = (int(t) for t in tokens[4:9])
        except ValueError:
            return
        if consumer != self.cname or count > 1:
            return
        self.lag = max(pending - 1, 0) if pending else 0
        if self.mirror:
            self._mirrored(subject.decode(), headers or b"", payload, sseq, dseq, ts)
            if pending < DIRECT_CAUGHT_UP and not self._direct and self.stream.config.get("mirror_direct"):
                self.serve_direct(True)
        else:
            self._sourced(subject.decode(), headers or b"", payload, sseq, dseq)

    def serve_direct(self, on: bool) -> None:
        """Answer direct gets addressed to the origin (``$JS.API.DIRECT.GET.<origin>[.>]``) from
        this mirror, in the ``_sys_`` queue group the origin answers in, or stop."""
        for sub in self._direct:
            self.client.unsubscribe(sub)
        self._direct = []
        if on and not self.closed:
            stream, origin = self.stream, self.config["name"]

            def answer(subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
                stream.owner.direct_get(stream, subject, reply, payload)

            self._direct = [self.client.subscribe(subject, answer, queue="_sys_")
                            for subject in (f"$JS.API.DIRECT.GET.{origin}", f"$JS.API.DIRECT.GET.{origin}.>")]

    def _control(self, reply: bytes | None, headers: bytes) -> None:
        hdrs = parse_headers(headers)
        if reply:  # a flow control request: answered with where we are
            self.client.publish(reply, b"", headers=(
                f"NATS/1.0\r\nNats-Last-Consumer: {self.dseq}\r\nNats-Last-Stream: {self.sseq}\r\n\r\n").encode())
            return
        stalled = hdrs.get("Nats-Consumer-Stalled")
        if stalled and valid_literal_subject(stalled.encode()):
            self.client.publish(stalled, b"")
        last = hdrs.get("Nats-Last-Consumer", "0")
        if last.isdigit() and int(last) > 0 and int(last) != self.dseq:
            self._retry()  # the heartbeat says deliveries went missing

    def _mirrored(self, subject: str, headers: bytes, payload: bytes, sseq: int, dseq: int, ts: int) -> None:
        if sseq <= self.sseq:
            if dseq == self.dseq + 1:
                self.dseq = dseq
            return
        if sseq != self.sseq + 1 and dseq != self.dseq + 1:
            self._retry()
            return
        hdrs = b""
        if headers:
            kept = _strip(headers, (), ("Nats-Expected-", "Nats-Batch-"))
            hdrs = b"NATS/1.0\r\n" + b"".join(line + b"\r\n" for line in kept) + b"\r\n" if kept else b""
        subject = self._transformed(subject)
        try:
            self.stream.process(subject, hdrs or None, payload, internal=True, at_seq=sseq, ts=ts)
        except ApiError as exc:
            log.warning("JetStream: mirror %r could not store %d: %s", self.stream.name, sseq, exc)
            self._retry()
            return
        self.sseq, self.dseq = sseq, dseq
        self.stream.request_commit()

    def _sourced(self, subject: str, headers: bytes, payload: bytes, sseq: int, dseq: int) -> None:
        if sseq <= self.sseq:
            return
        if dseq != self.dseq + 1:
            self._retry()
            return
        kept = _strip(headers, (SOURCE_HEADER,), ("Nats-Expected-", "Nats-Batch-"))
        name, filters, dests = self.iname.split(" ")
        value = f"{name} {sseq} {filters} {dests} {subject}" + (f" {self.ident}" if self.ident else "")
        kept.append(f"{SOURCE_HEADER}: {value}".encode())
        hdrs = b"NATS/1.0\r\n" + b"".join(line + b"\r\n" for line in kept) + b"\r\n"
        with self.stream.store.atomic():  # the message and where the source is: one write
            try:
                self.stream.process(self._transformed(subject), hdrs, payload, internal=True)
            except ApiError as exc:
                if exc.err_code != 10071:  # a duplicate Nats-Msg-Id is passed over
                    log.warning("JetStream: stream %r could not store %d from %r: %s", self.stream.name, sseq,
                                self.config["name"], exc)
                    self._retry()
                    return
            self.sseq, self.dseq = sseq, dseq
            self.stream.save_sources()
        self.stream.request_commit()

    def _transformed(self, subject: str) -> str:
        for t in self.config.get("subject_transforms") or []:
            if t.get("dest"):
                from natsd.routing.mappings import SubjectTransform

                mapped = SubjectTransform(t["src"] or ">", t["dest"]).apply(subject.encode())
                if mapped is not None:
                    return mapped.decode()
        return subject

    # -- what STREAM.INFO shows ------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.config["name"]}
        if self.config.get("external"):
            out["external"] = dict(self.config["external"])
        out["lag"] = self.lag
        if not self.mirror and self.sseq:
            out["seq"] = self.sseq  # the last origin sequence taken (nats-server 2.15)
        out["active"] = (time.time_ns() - self.last_heard) if self.last_heard else -1
        if self.error:
            out["error"] = self.error
        if self.config.get("filter_subject"):
            out["filter_subject"] = self.config["filter_subject"]
        if self.config.get("subject_transforms"):
            out["subject_transforms"] = [dict(t) for t in self.config["subject_transforms"]]
        return out


def last_sourced(stream: Stream) -> dict[str, tuple[int, str]]:
    """Where each source is, by index name: the last origin sequence it stored and the origin's
    identity (a restart's starting point). The store keeps it (``save_sources``) through purges
    and expiry; a store without it, or from before it was kept, is read from the messages'
    ``Nats-Stream-Source`` headers, as nats-server does without its sources state."""
    store = stream.store
    saved = store.sources() if hasattr(store, "sources") else None
    if saved:
        return {key: (int(value[0]), str(value[1])) for key, value in saved.items()}
    state = store.state()
    found: dict[str, tuple[int, str]] = {}
    msg = store.next_matching(state.first_seq, ">") if state.msgs else None
    while msg is not None:
        if msg.hdrs and SOURCE_HEADER.encode() in msg.hdrs:
            fields = parse_headers(msg.hdrs).get(SOURCE_HEADER, "").split(" ")
            if len(fields) >= 4 and fields[1].isdigit():
                found[f"{fields[0]} {fields[2]} {fields[3]}"] = (int(fields[1]), fields[5] if len(fields) > 5 else "")
            elif len(fields) == 2 and fields[1].isdigit():
                found[fields[0]] = (int(fields[1]), "")
        msg = store.next_matching(msg.seq + 1, ">")
    return found

