"""The JetStream of one server: accounts, streams, and nats-server's ``$JS.API`` for them.

Each account with JetStream gets an internal client subscribed to
``$JS.API.>``; requests are answered with nats-server's JSON shapes,
``type`` strings and error codes. Streams are restored from the backends at
start. A request that changes what is stored (create, update, delete, purge,
message delete) is answered only once that change is durable, as a publish's
PubAck is.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from natsd import NATS_SERVER_VERSION
from natsd.routing.connection import Kind
from natsd.routing.internal import InternalClient
from natsd.routing.subjects import subjects_collide

from .advisories import Advisories
from .consumers import DEFAULT_INACTIVE, Consumer, _parse_time, check_consumer_config, new_name
from .consumers import ORDER as CONSUMER_ORDER
from .consumers import check_update as check_consumer_update
from .errors import ApiError, api_error
from .godecode import STREAM_CONFIG, check, loads
from .limits import (
    UNLIMITED,
    AccountLimits,
    account_limits,
    check_reservation,
    check_stream_config,
    limits_from_claims,
    reserved,
)
from .store.base import Compact, Remove, StoredMsg
from .streams import Stream, check_config, check_update, parse_headers, purge_ops, rfc3339, short_hash

if TYPE_CHECKING:
    from natsd.config import ServerConfig
    from natsd.plugin.contracts import ServerAPI

    from .settings import JetStreamSettings

log = logging.getLogger("natsd.jetstream")

API_LEVEL = 5
"""The JetStream API level of nats-server 2.15.1 (``api.level``, ``_nats.level``)."""
NAMES_LIMIT = 1024
LIST_LIMIT = 256
SUBJECTS_LIMIT = 100_000
ERROR_EXTRAS: dict[str, dict[str, Any]] = {
    "stream_names_response": {"total": 0, "offset": 0, "limit": 0, "streams": None},
    "stream_list_response": {"total": 0, "offset": 0, "limit": 0, "streams": []},
    "stream_info_response": {"total": 0, "offset": 0, "limit": 0},
    "stream_purge_response": {"purged": 0},
    "consumer_names_response": {"total": 0, "offset": 0, "limit": 0, "consumers": []},
    "consumer_list_response": {"total": 0, "offset": 0, "limit": 0, "consumers": []},
    "consumer_pause_response": {"paused": False, "pause_until": "0001-01-01T00:00:00Z"},
}
CONSUMER_CONFIG = {
    "durable_name": "string", "name": "string", "description": "string",
    "deliver_policy": ("enum", ("all", "last", "new", "by_start_sequence", "by_start_time", "last_per_subject")),
    "opt_start_seq": "uint64", "opt_start_time": "time.Time",
    "ack_policy": ("enum", ("none", "all", "explicit", "flow_control")), "ack_wait": "time.Duration",
    "max_deliver": "int", "backoff": "any", "filter_subject": "string", "filter_subjects": "[]string",
    "replay_policy": ("enum", ("instant", "original")), "rate_limit_bps": "uint64", "sample_freq": "string",
    "max_waiting": "int", "max_ack_pending": "int", "flow_control": "bool", "headers_only": "bool",
    "max_batch": "int", "max_expires": "time.Duration", "max_bytes": "int", "deliver_subject": "string",
    "deliver_group": "string", "idle_heartbeat": "time.Duration", "inactive_threshold": "time.Duration",
    "num_replicas": "int", "mem_storage": "bool", "direct": "bool", "sourcing": "bool",
    "metadata": "map[string]string", "pause_until": "time.Time", "priority_groups": "[]string",
    "priority_policy": "any", "priority_timeout": "time.Duration",
}
"""nats-server's ``ConsumerConfig``: every field it knows."""
CREATE_CONSUMER = {"stream_name": "string", "config": CONSUMER_CONFIG, "action": "string", "pedantic": "bool"}
"""Fields nats-server's error replies carry beside ``error`` (not omitempty in its structs)."""
MSG_GET_REQUEST = {"seq": "uint64", "last_by_subj": "string", "next_by_subj": "string", "batch": "int",
                   "max_bytes": "int", "start_time": "string", "multi_last": "[]string", "up_to_seq": "uint64",
                   "up_to_time": "string", "no_hdr": "bool"}

T = "io.nats.jetstream.api.v1."


def _dumps(obj: Any) -> bytes:
    """JSON as Go's encoder writes it: compact, with ``<``, ``>`` and ``&`` escaped."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


@dataclass(frozen=True, slots=True)
class Asked:
    """An API request, as its audit shows it."""

    subject: str
    payload: bytes
    requester: Any


HEADERS = "\x00headers"
"""A response's key for the header lines its reply carries (not part of the JSON)."""
MAX_NAME = 255
"""The longest stream or consumer name (nats-server's ``JSMaxNameLen``: a file name)."""


class JetStream:
    """What ``jetstream {}`` turns on (see the module docstring)."""

    def __init__(self, server: ServerAPI, settings: JetStreamSettings, config: ServerConfig) -> None:
        self.server = server
        self.settings = settings
        self.domain = settings.domain
        if self.domain:  # in nats-server's INFO from the start: leaf links made before start() send it
            server.update_info(domain=self.domain)
        self.limits: dict[str, AccountLimits] = {"$G": UNLIMITED}
        """Each JetStream account's limits (from its ``jetstream`` value)."""
        self.without: set[str] = set()
        """Accounts without JetStream: the API answers them that it is not enabled."""
        for name, block in config.accounts.items():
            found = None
            if isinstance(block, Mapping) and "jetstream" in block:
                found = account_limits(block["jetstream"], block)
            if found is not None:
                self.limits[name] = found
            else:
                self.without.add(name)
        self.refusing: dict[str, InternalClient] = {}
        self.api_stats: dict[str, list[int]] = {account: [0, 0] for account in self.limits}
        """``[total, errors]`` of each account's API requests."""
        self.backends: dict[str, Any] = {}
        self.streams: dict[str, dict[str, Stream]] = {}
        self.clients: dict[str, InternalClient] = {}
        self.started = False
        self.advisories = Advisories(self)
        self.batches_open = 0
        """Atomic batches open on this server (all streams)."""
        self._system_client: InternalClient | None = None
        self.claimed: set[str] = set()
        """Accounts whose limits came from a JWT (operator mode)."""
        self.api_total = 0
        self.api_errors = 0

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        chosen = self.server.plugins.hook.natsd_jetstream_backends(server=self.server, settings=self.settings) or {}
        from .store.memory import MemoryBackend

        self.backends = {"file": chosen.get("file"), "memory": chosen.get("memory") or MemoryBackend()}
        if self.backends["file"] is None:
            from .store.rocks import RocksBackend

            self.backends["file"] = RocksBackend(self.settings.storage_path, self.settings.sync_interval)
        for backend in self.backends.values():
            await backend.open()
        self.started = True
        accounts = self.server.service("operator")  # operator mode's accounts, when it is on
        if accounts is not None and "$G" not in self.claimed:
            self.limits.pop("$G", None)  # in operator mode every account's JWT decides
        for account in list(self.limits):
            self._enable(account)
        for account in self.without:
            self._refuse(account)
        for account in sorted({a for backend in self.backends.values() for a, _, _ in backend.saved()}):
            if account not in self.clients and accounts is not None:
                try:  # operator mode: the account's JWT says whether it has JetStream
                    accounts.account(account)
                except Exception as exc:
                    log.warning("JetStream: account %r of stored streams could not be loaded: %s", account, exc)
            if account not in self.clients:
                log.warning("JetStream: streams of account %r are kept but the account has no JetStream now; "
                            "they are not loaded", account)
        self.server.update_info(jetstream=True)
        count = sum(len(s) for s in self.streams.values())
        log.info("Starting JetStream (storage %s, sync %s); %d stream(s) restored", self.settings.storage_path,
                 "always" if self.settings.sync_interval is None else f"every {self.settings.sync_interval}s",
                 count)

    def _prefixes(self) -> list[bytes]:
        """Where the API answers: ``$JS.API.`` and, with a domain, ``$JS.<domain>.API.`` as well
        (nats-server maps the one onto the other in every JetStream account)."""
        return [b"$JS.API."] + ([f"$JS.{self.domain}.API.".encode()] if self.domain else [])

    def _refuse(self, account: str) -> None:
        """Answer every API request of ``account`` with nats-server's ``JetStream not enabled``."""
        if account in self.refusing or account in self.clients:
            return
        client = self.server.connect_internal("jetstream", account, kind=Kind.JETSTREAM)
        self.refusing[account] = client
        error = api_error("JSNotEnabledForAccountErr").json()
        for prefix in self._prefixes():
            for pattern, kind, _ in self._apis():
                body = _dumps({"type": T + kind, "error": error, **ERROR_EXTRAS.get(kind, {})})

                def refused(subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes,
                            body: bytes = body) -> None:
                    if reply:
                        client.publish(reply, body)
                client.subscribe(prefix + pattern, refused)

    def _enable(self, account: str) -> None:
        """Answer the API in ``account`` and bring back its stored streams."""
        refusing = self.refusing.pop(account, None)
        if refusing is not None:
            refusing.close()
        client = self.server.connect_internal("jetstream", account, kind=Kind.JETSTREAM)
        self.clients[account] = client
        self.streams[account] = {}
        self.api_stats.setdefault(account, [0, 0])
        for prefix in self._prefixes():
            skip = prefix.count(b".")
            for pattern, kind, handler in self._apis():
                literal = sum(1 for t in pattern.split(b".") if t not in (b"*", b">"))
                client.subscribe(prefix + pattern, self._request_callback(account, kind, handler, skip + literal))
            client.subscribe(prefix + b"CONSUMER.MSG.NEXT.*.*", self._next_callback(account, skip))
            # as nats-server: any other $JS.API subject is taken and left unanswered, uncounted
            client.subscribe(prefix + b">", self._unknown_callback(client, prefix))
        for backend in self.backends.values():
            for owner, name, meta in backend.saved():
                if owner != account:
                    continue
                stream = Stream(self, account, meta["config"], backend.stream(account, name),
                                meta.get("created", rfc3339(time.time_ns())), client)
                self.streams[account][name] = stream
                stream.subscribe()
                for cname, saved in stream.store.consumers().items():
                    consumer = Consumer(stream, cname, saved["config"], saved["created"], saved)
                    stream.add_consumer(consumer)
                    consumer.start()

    def system_client(self) -> InternalClient | None:
        """An internal client of the system account (for the advisories nats-server copies there)."""
        system = self.server.system_account
        if system is None:
            return None
        if self._system_client is None or self._system_client.closed:
            self._system_client = self.server.connect_internal("jetstream", system.name, kind=Kind.JETSTREAM)
        return self._system_client

    def _disable(self, account: str) -> None:
        """Stop answering in ``account``; its streams stay stored for when it has JetStream again."""
        for stream in self.streams.pop(account, {}).values():
            stream.close()
        client = self.clients.pop(account, None)
        if client is not None:
            client.close()

    def account_claims(self, account: str, claims: Any) -> None:
        """Operator mode: an account's JWT was applied (``None``: removed); its limits follow it."""
        limits = limits_from_claims(claims) if claims is not None else None
        if limits is None:
            self.limits.pop(account, None)
            if account in self.clients:
                log.info("JetStream: disabled in account %s", account)
                self._disable(account)
            if self.started:
                self._refuse(account)
            else:
                self.without.add(account)
            return
        self.without.discard(account)
        self.limits[account] = limits
        self.claimed.add(account)
        if self.started and account not in self.clients:
            self._enable(account)
            log.info("JetStream: enabled in account %s (%d stream(s) restored)", account,
                     len(self.streams[account]))

    async def stop(self) -> None:
        for account in list(self.clients):
            self._disable(account)
        for client in self.refusing.values():
            client.close()
        self.refusing.clear()
        if self._system_client is not None:
            self._system_client.close()
        for backend in self.backends.values():
            if backend is not None:
                await backend.close()
        self.server.update_info(jetstream=None, domain=None)

    # -- in-process access for plugins (natsd.plugin.contracts.LocalStreams) -----------------------------

    def local_stream(self, account: str, name: str) -> Stream | None:
        """The stream ``name`` of ``account`` if this server keeps it, for a plugin that stores into it
        in-process (:meth:`Stream.store_local`); ``None``: no such stream here."""
        return self.streams.get(account, {}).get(name)

    def ack_local(self, account: str, reply: bytes, payload: bytes = b"+ACK") -> bool:
        """Answer a delivery in-process: as publishing ``payload`` (``+ACK``, ``-NAK``, ``+WPI``,
        ``+TERM``) on its ack subject ``reply`` in ``account``, without the routing. ``False``: its
        consumer is not on this server (publish the answer then)."""
        tokens = reply.split(b".")
        if len(tokens) != 9 or tokens[1] != b"ACK":  # $JS.ACK.<stream>.<consumer>.<5 numbers>
            return False
        stream = self.streams.get(account, {}).get(tokens[2].decode())
        consumer = stream.consumers.get(tokens[3].decode()) if stream is not None else None
        if consumer is None or consumer.closed or consumer.ack_none:
            return False
        consumer.ack_received(reply, None, None, payload)
        return True

    # -- the publish path's hook ---------------------------------------------------------------------

    def stored(self, stream: Stream, msg: StoredMsg) -> None:
        """A message was staged in ``stream`` (consumers will be told here)."""

    # -- interest (an InterestListener) ------------------------------------------------------------------

    kinds = (Kind.CLIENT, Kind.SYSTEM, Kind.ROUTER, Kind.GATEWAY, Kind.LEAF, Kind.HUB)
    """Subscriptions that make a push consumer's deliver subject worth delivering to (a plugin's
    in-process client's too: the MQTT plugin's sessions take their QoS 1 messages that way), and
    that make a mirror's or source's origin reachable (a leaf node's ``$JS.<domain>.API.>``)."""

    def interest_changed(self, account: Any, subject: bytes, queue: bytes | None, weight: int) -> None:
        if weight <= 0:
            return
        streams = self.streams.get(account.name)
        if not streams:
            return
        text = subject.decode()
        for stream in streams.values():
            for consumer in stream.pushing.get(text, {}).values():
                consumer.schedule()
            for feed in stream.feeds.values():
                feed.reachable(subject)

    def shown_config(self, config: dict[str, Any], dynamic: bool = True) -> dict[str, Any]:
        """The config as a response shows it: create, update and info replies add the server's
        version and API level to the metadata (``dynamic``); lists show the stored config."""
        if not dynamic:
            return config
        shown = dict(config)
        metadata = dict(config.get("metadata") or {})
        metadata.update({"_nats.ver": NATS_SERVER_VERSION, "_nats.level": str(API_LEVEL)})
        shown["metadata"] = dict(sorted(metadata.items()))  # Go writes a map's keys sorted
        return shown

    # -- the API ---------------------------------------------------------------------------------------

    def _apis(self) -> list[tuple[bytes, str, Callable[..., Any]]]:
        """``(subject after $JS.API., response type, handler)``; the handler gets the account, the
        payload and the subject's tokens in the wildcards' places (a stream's name ...). As
        nats-server, one subscription per API."""
        return [
            (b"INFO", "account_info_response", self.account_info),
            (b"STREAM.CREATE.*", "stream_create_response", self.stream_create),
            (b"STREAM.UPDATE.*", "stream_update_response", self.stream_update),
            (b"STREAM.INFO.*", "stream_info_response", self.stream_info),
            (b"STREAM.DELETE.*", "stream_delete_response", self.stream_delete),
            (b"STREAM.PURGE.*", "stream_purge_response", self.stream_purge),
            (b"STREAM.NAMES", "stream_names_response", self.stream_names),
            (b"STREAM.LIST", "stream_list_response", self.stream_list),
            (b"STREAM.MSG.GET.*", "stream_msg_get_response", self.msg_get),
            (b"STREAM.MSG.DELETE.*", "stream_msg_delete_response", self.msg_delete),
            (b"CONSUMER.CREATE.*", "consumer_create_response", self.consumer_create),
            (b"CONSUMER.CREATE.*.>", "consumer_create_response", self.consumer_create),
            (b"CONSUMER.DURABLE.CREATE.*.*", "consumer_create_response", self.durable_create),
            (b"CONSUMER.INFO.*.*", "consumer_info_response", self.consumer_info),
            (b"CONSUMER.DELETE.*.*", "consumer_delete_response", self.consumer_delete),
            (b"CONSUMER.NAMES.*", "consumer_names_response", self.consumer_names),
            (b"CONSUMER.LIST.*", "consumer_list_response", self.consumer_list),
            (b"CONSUMER.PAUSE.*.*", "consumer_pause_response", self.consumer_pause),
        ]

    def _request_callback(self, account: str, kind: str, handler: Callable[..., Any],
                          fixed: int) -> Callable[[bytes, bytes | None, bytes | None, bytes], None]:
        """The callback of one API subject whose first ``fixed`` tokens are not arguments."""
        client = self.clients[account]

        def callback(subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
            if not reply:
                return  # nats-server ignores API requests without a reply subject
            tokens = subject.decode().split(".")
            args = tokens[fixed:]
            asked = Asked(".".join(["$JS", "API", *tokens[tokens.index("API") + 1:]]), payload, client.sender)
            run = handler
            if kind == "consumer_create_response":  # the one API that reads a request header
                run = functools.partial(handler, headers=headers)
            self.server.loop.create_task(self._answer(account, kind, run, args, reply, payload, asked))
        return callback

    @staticmethod
    def _unknown_callback(client: InternalClient, prefix: bytes) -> Callable[[bytes, bytes | None, bytes | None,
                                                                              bytes], None]:
        """The catch-all of the API: silence, except that a direct get of a stream that does not
        answer them finds no responders, as in nats-server (its API does not take those)."""
        direct = prefix + b"DIRECT.GET"

        def callback(subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
            if not reply or not (subject == direct or subject.startswith(direct + b".")):
                return
            asking = client.sender
            if not getattr(asking, "no_responders", False):
                return
            found = client.account.sublist.match(subject)
            if found.remote is None and all(sub.client is client for sub in found.psubs) and not found.qsubs:
                client.publish(reply, b"", headers=b"NATS/1.0 503\r\n\r\n")
        return callback

    def _next_callback(self, account: str, skip: int) -> Callable[[bytes, bytes | None, bytes | None, bytes], None]:
        """``CONSUMER.MSG.NEXT.<stream>.<consumer>`` after ``skip`` prefix tokens: pull requests."""
        def callback(subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
            tokens = subject.decode().split(".")
            if not reply or len(tokens) != skip + 5:
                return
            stream = self.streams[account].get(tokens[skip + 3])
            consumer = stream.consumers.get(tokens[skip + 4]) if stream is not None else None
            if consumer is None:  # as nats-server: the no-responders status of the request
                status = b"NATS/1.0 503\r\nNats-Subject: " + subject + b"\r\n\r\n"
                self.clients[account].publish(reply, b"", headers=status)
                return
            if not consumer.pull:
                self.clients[account].publish(reply, b"", headers=b"NATS/1.0 409 Consumer is push based\r\n\r\n")
                return
            consumer.pull_request(reply, payload)
        return callback

    async def _answer(self, account: str, kind: str, handler: Callable[..., Any], args: list[str], reply: bytes,
                      payload: bytes, asked: Asked | None = None) -> None:
        stats = self.api_stats[account]
        try:
            response = await handler(account, payload, *args)
        except ApiError as exc:
            if kind != "stream_msg_delete_response" or exc.err_code not in (10043, 10057) or \
                    exc.description == "message delete not permitted":
                self.api_errors += 1  # nats-server does not count a delete the store refused as an error
                stats[1] += 1
            response = {"error": exc.json(), **ERROR_EXTRAS.get(kind, {})}
        except Exception:
            log.exception("JetStream API request %s on %r failed", kind, args)
            self.api_errors += 1
            stats[1] += 1
            response = {"error": api_error("JSStreamGeneralErrorF", err="internal error").json()}
        if kind != "stream_msg_get_response" or "error" in response:
            self.api_total += 1  # as nats-server: a message found by MSG.GET is not counted
            stats[0] += 1
        if kind == "stream_info_response" and "error" not in response:  # paging fields come first
            response = {"total": 0, "offset": 0, "limit": 0, **response}
        extra = response.pop(HEADERS, None)
        body = {"type": T + kind, **response} if kind else response
        text = _dumps(body)
        self.clients[account].publish(reply, text, headers=f"NATS/1.0\r\n{extra}\r\n\r\n".encode() if extra else None)
        if asked is not None and (kind != "stream_msg_get_response" or "error" in response):
            self.advisories.api_audit(account, asked.subject, asked.payload, text, asked.requester)

    def _check_reservation(self, account: str, config: Mapping[str, Any], adding: int, own: int = 0) -> None:
        """Whether stream ``config`` may reserve ``adding`` more bytes (``own``: what it keeps reserving)."""
        storage = config["storage"]
        mine = reserved((s.config for s in self.streams[account].values()), storage, but=config["name"])
        everyone = reserved((s.config for streams in self.streams.values() for s in streams.values()), storage)
        server_max = self.settings.max_memory if storage == "memory" else self.settings.max_store
        check_reservation(self.limits[account], config, adding, mine + max(own, 0), everyone, server_max)

    def check_server_usage(self, storage: str) -> None:
        """A publish finds the server's ``storage`` already over ``max_*_store``: refused."""
        server_max = self.settings.max_memory if storage == "memory" else self.settings.max_store
        if server_max >= 0 and sum(s.store.state().bytes for streams in self.streams.values()
                                   for s in streams.values() if s.config["storage"] == storage) > server_max:
            raise api_error("JSInsufficientResourcesErr")

    def check_account_usage(self, account: str, storage: str, subject: str, hdrs: bytes, data: bytes) -> None:
        """Storing this message would take the account over its ``storage`` limit: refused."""
        account_max = self.limits[account].max_bytes(storage)
        if account_max >= 0:
            size = StoredMsg(0, subject, hdrs, data, 0).size(storage)
            if sum(s.store.state().bytes for s in self.streams[account].values()
                   if s.config["storage"] == storage) + size > account_max:
                raise api_error("JSAccountResourcesExceededErr")

    def _stream(self, account: str, name: str) -> Stream:
        stream = self.streams[account].get(name)
        if stream is None:
            raise api_error("JSStreamNotFoundErr")
        return stream

    async def account_info(self, account: str, payload: bytes) -> dict[str, Any]:
        streams = self.streams[account].values()
        memory = sum(s.store.state().bytes for s in streams if s.config["storage"] == "memory")
        storage = sum(s.store.state().bytes for s in streams if s.config["storage"] == "file")
        reserved = {kind: sum(max(s.config["max_bytes"], 0) for s in streams if s.config["storage"] == kind)
                    for kind in ("memory", "file")}
        out: dict[str, Any] = {"memory": memory, "storage": storage, "reserved_memory": reserved["memory"],
                               "reserved_storage": reserved["file"], "streams": len(self.streams[account]),
                               "consumers": sum(len(s.consumers) for s in streams),
                               "limits": self.limits[account].json()}
        if self.domain:
            out["domain"] = self.domain
        total, errors = self.api_stats[account]
        out["api"] = {"level": API_LEVEL, "total": total, "errors": errors}
        return out

    async def stream_create(self, account: str, payload: bytes, name: str) -> dict[str, Any]:
        request = _decoded(payload, STREAM_CONFIG, "StreamConfigRequest")
        if not isinstance(request, dict) or request.get("name") != name:
            raise api_error("JSStreamMismatchErr")
        if "/" in name or "\\" in name:
            raise api_error("JSStreamNameContainsPathSeparatorsErr")
        others = {n: s.config for n, s in self.streams[account].items()}
        limits = self.limits[account]
        if 0 < limits.max_streams <= sum(1 for n in others if n != name):
            raise api_error("JSMaximumStreamsLimitErr")
        # nats-server checks the request as it came first (no storage given: no byte limit checked)
        raw: dict[str, Any] = {
            "name": name, "storage": request.get("storage") if request.get("storage") in ("file", "memory") else "",
            "max_bytes": request.get("max_bytes") or 0, "max_consumers": request.get("max_consumers") or 0}
        self._check_reservation(account, raw, raw["max_bytes"])
        config = check_config(request)
        check_stream_config(limits, config)
        _no_overlap(config, others)
        if config["sealed"]:
            raise api_error("JSStreamInvalidConfigF", err="stream configuration for create can not be sealed")
        existing = self.streams[account].get(name)
        if existing is not None:
            if existing.config == config:
                return {**existing.info(), "did_create": True}  # as nats-server: an idempotent create
            raise api_error("JSStreamNameExistErr")
        self._check_reservation(account, config, config["max_bytes"])  # then the config it would keep
        backend = self.backends[config["storage"]]
        store = backend.stream(account, name)
        created = rfc3339(time.time_ns())
        store.save_meta({"config": config, "created": created})
        if config.get("first_seq", 1) > 1:
            store.stage([Compact(config["first_seq"])])
        await store.commit()
        stream = Stream(self, account, config, store, created, self.clients[account])
        self.streams[account][name] = stream
        stream.subscribe()
        self.advisories.stream(account, name, "create")
        return {**stream.info(), "did_create": True}

    async def stream_update(self, account: str, payload: bytes, name: str) -> dict[str, Any]:
        request = _decoded(payload, STREAM_CONFIG, "StreamConfigRequest")
        others = {n: s.config for n, s in self.streams[account].items()}
        config = check_config(request if isinstance(request, dict) else {})
        if config["name"] != name:
            raise api_error("JSStreamMismatchErr")
        stream = self._stream(account, name)
        check_stream_config(self.limits[account], config)
        check_update(stream.config, config)
        grow = max(config["max_bytes"], 0) - max(stream.config["max_bytes"], 0)
        self._check_reservation(account, config, max(grow, 0), config["max_bytes"] - max(grow, 0))
        _no_overlap(config, others)
        stream.store.save_meta({"config": config, "created": stream.created})
        stream.apply_config(config)
        await stream.store.commit()
        stream.subscribe()
        self.advisories.stream(account, name, "modify")  # as nats-server: even when nothing changed
        return stream.info()

    async def stream_info(self, account: str, payload: bytes, name: str) -> dict[str, Any]:
        request = _decoded(payload, {"subjects_filter": "string", "deleted_details": "bool", "offset": "int"},
                           "JSApiStreamInfoRequest") if payload.lstrip()[:1] in (b"{", b"[") else {}
        stream = self._stream(account, name)
        req = request if isinstance(request, dict) else {}
        info = stream.info(req.get("subjects_filter"), bool(req.get("deleted_details")), cluster=True)
        subjects = info["state"].get("subjects")
        if subjects is not None:
            offset = _offset(req)
            if offset:  # pages of the subjects, sorted by name
                names = sorted(subjects)[offset:offset + SUBJECTS_LIMIT]
                info["state"]["subjects"] = {n: subjects[n] for n in names}
            return {"total": len(subjects), "offset": offset, "limit": SUBJECTS_LIMIT, **info}
        return info

    async def stream_delete(self, account: str, payload: bytes, name: str) -> dict[str, Any]:
        if not _empty(payload):
            raise api_error("JSNotEmptyRequestErr")
        stream = self._stream(account, name)
        stream.close()
        del self.streams[account][name]
        for consumer in sorted(stream.consumers):
            self.advisories.consumer(account, name, consumer, "delete")
        self.advisories.stream(account, name, "delete")
        await stream.store.delete()
        return {"success": True}

    async def stream_purge(self, account: str, payload: bytes, name: str) -> dict[str, Any]:
        request = _decoded(payload, {"seq": "uint64", "filter": "string", "keep": "uint64"},
                           "JSApiStreamPurgeRequest") if payload.lstrip()[:1] in (b"{", b"[") else {}
        req = request if isinstance(request, dict) else {}
        if req.get("seq") and req.get("keep"):
            raise api_error("JSBadRequestErr")
        stream = self._stream(account, name)
        if stream.config["sealed"]:
            raise api_error("JSStreamSealedErr")
        if stream.config["deny_purge"]:
            raise api_error("JSStreamPurgeFailedF", err="stream purge not permitted")
        ops, count = purge_ops(stream.store, req)
        if ops:
            stream.store.stage(ops)
        stream.next_seq = max(stream.next_seq, stream.store.state().last_seq + 1)
        compacted = max((op.first_seq for op in ops if isinstance(op, Compact)), default=0)
        removed = [seq for op in ops if isinstance(op, Remove) for seq in op.seqs]
        for consumer in stream.consumers.values():
            consumer.purged(compacted, removed)
        await stream.store.commit()
        return {"success": True, "purged": count}

    async def stream_names(self, account: str, payload: bytes) -> dict[str, Any]:
        request = _decoded(payload, {"offset": "int", "subject": "string"}, "JSApiStreamNamesRequest")
        names = self._filtered(account, request)
        offset = min(_offset(request), len(names))
        page = [s.name for s in names[offset:offset + NAMES_LIMIT]]
        return {"total": len(names), "offset": offset, "limit": NAMES_LIMIT, "streams": page or None}

    async def stream_list(self, account: str, payload: bytes) -> dict[str, Any]:
        request = _decoded(payload, {"offset": "int", "subject": "string"}, "JSApiStreamListRequest")
        streams = self._filtered(account, request)
        offset = min(_offset(request), len(streams))
        page = [s.info(dynamic=False) for s in streams[offset:offset + LIST_LIMIT]]
        return {"total": len(streams), "offset": offset, "limit": LIST_LIMIT, "streams": page}

    def _filtered(self, account: str, request: Any) -> list[Stream]:
        subject = request.get("subject") if isinstance(request, dict) else None
        streams = sorted(self.streams[account].values(), key=lambda s: s.name)
        if subject:
            streams = [s for s in streams if any(subjects_collide(subject.encode(), x.encode())
                                                 for x in s.config.get("subjects", []))]
        return streams

    async def msg_get(self, account: str, payload: bytes, name: str) -> dict[str, Any]:
        if _empty(payload):
            raise api_error("JSBadRequestErr")
        request = _decoded(payload, MSG_GET_REQUEST, "JSApiMsgGetRequest")
        if not isinstance(request, dict) or request.get("batch") or request.get("max_bytes") or _conflicts(request):
            raise api_error("JSBadRequestErr")
        stream = self._stream(account, name)
        msg = self._find(stream, request)
        if msg is None:
            raise api_error("JSNoMessageFoundErr")
        return {"message": stream.stored_json(msg, bool(request.get("no_hdr")))}

    @staticmethod
    def _find(stream: Stream, request: Mapping[str, Any]) -> StoredMsg | None:
        seq = int(request.get("seq") or 0)
        if request.get("next_by_subj"):
            return stream.store.next_matching(seq, request["next_by_subj"])
        if seq:
            return stream.store.load(seq)
        return stream.store.last_matching(request["last_by_subj"])

    async def msg_delete(self, account: str, payload: bytes, name: str) -> dict[str, Any]:
        if _empty(payload):
            raise api_error("JSBadRequestErr")
        request = _decoded(payload, {"seq": "uint64", "no_erase": "bool"}, "JSApiMsgDeleteRequest")
        stream = self._stream(account, name)
        if stream.config["sealed"]:
            raise api_error("JSStreamSealedErr")
        if stream.config["deny_delete"]:
            raise api_error("JSStreamMsgDeleteFailedF", err="message delete not permitted")
        seq = int(request.get("seq") or 0) if isinstance(request, dict) else 0
        state = stream.store.state()
        if stream.store.load(seq) is None:
            if stream.config["storage"] == "file" and seq == 0:
                raise api_error("JSStreamMsgDeleteFailedF", err="no message found")
            if stream.config["storage"] == "file" and seq > state.last_seq:
                raise api_error("JSStreamMsgDeleteFailedF", err="stream store EOF")
            if stream.config["storage"] == "file" and seq < state.first_seq:
                raise api_error("JSStreamMsgDeleteFailedF", err="no message found")
            raise api_error("JSSequenceNotFoundErrF", seq=seq)
        stream.store.stage([Remove((seq,))])
        await stream.store.commit()
        return {"success": True}

    def direct_get(self, stream: Stream, subject: bytes, reply: bytes | None, payload: bytes) -> None:
        """``$JS.API.DIRECT.GET.<stream>[.<subject>]``: the message itself, or a status (no JSON)."""
        if not reply:
            return
        key = subject.decode().split(".", 5)[5] if subject.count(b".") >= 5 else ""
        msg: StoredMsg | None = None
        status = b""
        request: Any = {}
        if not key and _empty(payload):
            status = b"408 Empty Request"
        else:
            try:
                request = json.loads(payload) if payload.strip() else {}
            except ValueError:
                status = b"408 Malformed Request"
        if not status and not isinstance(request, dict):
            status = b"408 Malformed Request"
        if not status:
            if key:
                if any(request.get(k) for k in ("seq", "last_by_subj", "next_by_subj", "multi_last", "batch",
                                                "start_time", "up_to_seq", "up_to_time")):
                    status = b"408 Bad Request"
                else:
                    request = {**request, "last_by_subj": key}
            elif not any(request.get(k) for k in ("seq", "last_by_subj", "next_by_subj", "multi_last",
                                                  "start_time")):
                status = b"408 Empty Request"
            elif _conflicts(request) or request.get("batch") or request.get("multi_last"):
                status = b"408 Bad Request"
        if not status:
            msg = self._find(stream, request)
            if msg is None:
                status = b"404 Message Not Found"
        client = stream.client
        if msg is None:
            client.publish(reply, b"", headers=b"NATS/1.0 " + status + b"\r\n\r\n")
            return
        if request.get("no_hdr"):
            client.publish(reply, msg.data)
            return
        ours = (f"Nats-Stream: {stream.name}\r\nNats-Subject: {msg.subject}\r\n"
                f"Nats-Sequence: {msg.seq}\r\nNats-Time-Stamp: {rfc3339(msg.ts)}\r\n\r\n").encode()
        headers = (msg.hdrs[:-2] if msg.hdrs.endswith(b"\r\n\r\n") else b"NATS/1.0\r\n") + ours
        client.publish(reply, msg.data, headers=headers)

    # -- consumers -------------------------------------------------------------------------------------

    async def consumer_create(self, account: str, payload: bytes, stream_name: str,
                              *rest: str, headers: bytes | None = None) -> dict[str, Any]:
        return await self._create_consumer(account, payload, stream_name, rest[0] if rest else "",
                                           ".".join(rest[1:]), durable_api=False, headers=headers)

    async def durable_create(self, account: str, payload: bytes, stream_name: str, durable: str,
                             headers: bytes | None = None) -> dict[str, Any]:
        return await self._create_consumer(account, payload, stream_name, durable, "", durable_api=True,
                                           headers=headers)

    async def _create_consumer(self, account: str, payload: bytes, stream_name: str, name: str, filter_: str,
                               *, durable_api: bool, headers: bytes | None = None) -> dict[str, Any]:
        request = _decoded(payload, CREATE_CONSUMER, "CreateConsumerRequest")
        if isinstance(request, dict) and request.get("action") not in (None, "", "create", "update"):
            raise api_error("JSInvalidJSONErr", err=f"unknown consumer action: {json.dumps(request['action'])}")
        if not isinstance(request, dict) or request.get("stream_name") != stream_name:
            raise api_error("JSStreamMismatchErr")
        raw = request.get("config") or {}
        for given in (name, raw.get("name") or "", raw.get("durable_name") or ""):
            if "/" in given or "\\" in given:
                raise api_error("JSConsumerNameContainsPathSeparatorsErr")
        if durable_api:
            if not raw.get("durable_name"):
                raise api_error("JSConsumerDurableNameNotSetErr")
            if raw["durable_name"] != name:
                raise api_error("JSConsumerDurableNameNotMatchSubjectErr")
        elif not name:
            if raw.get("durable_name"):
                raise api_error("JSConsumerEphemeralWithDurableNameErr")
        else:
            if raw.get("durable_name") and raw["durable_name"] != name:
                raise api_error("JSConsumerDurableNameNotMatchSubjectErr")
            raw = {**raw, "name": name}  # as nats-server: the subject's name is the consumer's
            if filter_:
                if raw.get("filter_subjects"):
                    raise api_error("JSConsumerMultipleFiltersNotAllowed")
                if raw.get("filter_subject") != filter_:
                    raise api_error("JSConsumerCreateFilterSubjectMismatchErr")
        if raw.get("durable_name") and not raw.get("name"):
            raw = {**raw, "name": raw["durable_name"]}
        if len(raw.get("durable_name") or "") > MAX_NAME:
            raise api_error("JSConsumerNameTooLongErrF", max=MAX_NAME)
        stream = self._stream(account, stream_name)
        identity = short_hash(stream.created)
        if (raw.get("direct") or raw.get("sourcing")) and headers:
            # a source names the origin it last read: one recreated since must not resume it
            expected = parse_headers(headers).get("Nats-Stream-Identity")
            if expected and expected != identity:
                raise api_error("JSConsumerStreamIdentityMismatchF", msg=identity)
        limits = self.limits[account]
        config = check_consumer_config(raw, stream, account_max_ack_pending=limits.max_ack_pending)
        if stream.config["retention"] == "workqueue":
            if config["ack_policy"] != "explicit":
                raise api_error("JSConsumerWQRequiresExplicitAckErr")
            self._workqueue_unique(stream, config)
        if config.get("direct") and config.get("sourcing") and config.get("name") and (
                stream.config["retention"] != "interest"):
            # as nats-server: a source asks for its stable name and gets it made unique, so that
            # a source that restarts never meets the consumer it left behind (gone when inactive)
            config = {**config, "name": f"{config['name']}-{new_name()}"}
        consumer_name = config.get("name") or config.get("durable_name") or new_name()
        action = request.get("action") or ""
        existing = stream.consumers.get(consumer_name)
        most = stream.config["max_consumers"]
        if most <= 0 or 0 < limits.max_consumers < most:  # as nats-server: the account's limit is per stream
            most = limits.max_consumers
        if existing is None and not config.get("direct") and 0 < most <= len(stream.public_consumers()):
            raise api_error("JSMaximumConsumersLimitErr")
        if existing is not None:
            if action == "create":
                raise api_error("JSConsumerAlreadyExists")
            check_consumer_update(existing.config, config)
            if not existing.durable and not config.get("inactive_threshold"):
                # as nats-server: a consumer made ephemeral stays so, with its default threshold
                config = {**config, "inactive_threshold": DEFAULT_INACTIVE}
                config = {k: config[k] for k in CONSUMER_ORDER if k in config}
            existing.reconfigure(config)
            existing.set_pause(_parse_time(config["pause_until"]) if config.get("pause_until") else 0)
            existing.save()
            await stream.store.commit()
            existing.schedule()
            return existing.info()
        if action == "update":
            raise api_error("JSConsumerDoesNotExist")
        if len(consumer_name) > MAX_NAME and stream.config["storage"] == "file" and not config.get("mem_storage"):
            # nats-server keeps each consumer of a file stream in a directory named after it
            raise api_error("JSConsumerCreateErrF", err="error creating store for consumer")
        consumer = Consumer(stream, consumer_name, config, rfc3339(time.time_ns()))
        stream.add_consumer(consumer)
        consumer.save()
        await stream.store.commit()
        consumer.start()
        self.advisories.consumer(account, stream.name, consumer_name, "create")
        if config.get("direct") or config.get("sourcing"):  # a mirror's or source's: who the origin is
            return {**consumer.info(), HEADERS: f"Nats-Stream-Identity: {identity}"}
        if consumer.paused_until > time.time_ns():
            self.server.loop.call_soon(self.advisories.pause, account, stream.name, consumer_name,
                                       consumer.paused_until)  # after the reply, as nats-server
        return consumer.info()

    @staticmethod
    def _workqueue_unique(stream: Stream, config: Mapping[str, Any]) -> None:
        """A workqueue stream gives each subject to one consumer only (nats-server's rules)."""
        if config["deliver_policy"] != "all":
            raise api_error("JSConsumerWQConsumerNotDeliverAllErr")
        mine = config.get("filter_subjects") or ([config["filter_subject"]] if config.get("filter_subject") else [])
        for other in stream.consumers.values():
            if other.name == config.get("name"):
                continue
            if not mine or other.filters == [">"]:
                raise api_error("JSConsumerWQMultipleUnfilteredErr")
            if any(subjects_collide(a.encode(), b.encode()) for a in mine for b in other.filters):
                raise api_error("JSConsumerWQConsumerNotUniqueErr")

    def _consumer(self, account: str, stream_name: str, name: str) -> Consumer:
        consumer = self._stream(account, stream_name).consumers.get(name)
        if consumer is None:
            raise api_error("JSConsumerNotFoundErr")
        return consumer

    async def consumer_info(self, account: str, payload: bytes, stream_name: str, name: str) -> dict[str, Any]:
        if not _empty(payload):
            raise api_error("JSNotEmptyRequestErr")
        return self._consumer(account, stream_name, name).info()

    async def consumer_delete(self, account: str, payload: bytes, stream_name: str, name: str) -> dict[str, Any]:
        stream = self._stream(account, stream_name)
        if name not in stream.consumers:
            raise api_error("JSConsumerNotFoundErr")
        await self.delete_consumer_now(stream, name)
        return {"success": True}

    def delete_consumer(self, stream: Stream, name: str) -> None:
        """Remove a consumer (an ephemeral one that nobody used for its inactive threshold)."""
        self.server.loop.create_task(self.delete_consumer_now(stream, name))

    async def delete_consumer_now(self, stream: Stream, name: str) -> None:
        consumer = stream.remove_consumer(name)
        if consumer is None:
            return
        consumer.stop()
        self.advisories.consumer(stream.account, stream.name, name, "delete")
        stream.store.save_consumer(name, None)
        if stream.config["retention"] == "interest":
            stream.drop_unwanted()  # what only this consumer still held goes
        await stream.store.commit()

    async def consumer_names(self, account: str, payload: bytes, stream_name: str) -> dict[str, Any]:
        request = _decoded(payload, {"offset": "int"}, "JSApiConsumersRequest")
        stream = self._stream(account, stream_name)
        names = stream.public_consumers()
        offset = min(_offset(request), len(names))
        return {"total": len(names), "offset": offset, "limit": NAMES_LIMIT,
                "consumers": names[offset:offset + NAMES_LIMIT]}  # [] when none, unlike stream names

    async def consumer_list(self, account: str, payload: bytes, stream_name: str) -> dict[str, Any]:
        request = _decoded(payload, {"offset": "int"}, "JSApiConsumersRequest")
        stream = self._stream(account, stream_name)
        consumers = [stream.consumers[n] for n in stream.public_consumers()]
        offset = min(_offset(request), len(consumers))
        return {"total": len(consumers), "offset": offset, "limit": LIST_LIMIT,
                "consumers": [c.info(dynamic=False) for c in consumers[offset:offset + LIST_LIMIT]]}

    async def consumer_pause(self, account: str, payload: bytes, stream_name: str, name: str) -> dict[str, Any]:
        request = _decoded(payload, {"pause_until": "string"}, "JSApiConsumerPauseRequest")
        consumer = self._consumer(account, stream_name, name)
        until = request.get("pause_until") if isinstance(request, dict) else None
        consumer.set_pause(_parse_time(until) if until else 0)
        metadata = dict(consumer.config.get("metadata") or {})
        if consumer.paused_until:
            consumer.config["pause_until"] = until
            metadata["_nats.req.level"] = "1"  # pausing needs API level 1, as nats-server records
        else:
            consumer.config.pop("pause_until", None)
            metadata["_nats.req.level"] = "0"
        consumer.config["metadata"] = metadata
        consumer.save()
        await consumer.stream.store.commit()
        consumer._arm()
        consumer.schedule()
        paused = consumer.paused_until > time.time_ns()
        out: dict[str, Any] = {"paused": paused, "pause_until": until or "0001-01-01T00:00:00Z"}
        if paused:
            out["pause_remaining"] = consumer.paused_until - time.time_ns()
        return out

    # -- monitoring -------------------------------------------------------------------------------------

    def jsz(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """nats-server's ``/jsz`` (``accounts``, ``streams``, ``consumers``, ``config``, ``acc``);
        ``natsd.damaged_messages`` counts records whose checksum failed."""
        def flag(name: str) -> bool:
            return str(params.get(name, "")).lower() in ("1", "true")

        streams = [s for group in self.streams.values() for s in group.values()]
        def used(kind: str, group: Any) -> int:
            return sum(s.store.state().bytes for s in group if s.config["storage"] == kind)

        def reserved(kind: str, group: Any) -> int:
            return sum(max(s.config["max_bytes"], 0) for s in group if s.config["storage"] == kind)

        out: dict[str, Any] = {
            "memory": used("memory", streams), "storage": used("file", streams),
            "reserved_memory": reserved("memory", streams), "reserved_storage": reserved("file", streams),
            "accounts": len(self.clients), "ha_assets": 0,
            "api": {"level": API_LEVEL, "total": self.api_total, "errors": self.api_errors},
            "server_id": self.server.server_id, "now": rfc3339(time.time_ns()),
            "config": {"max_memory": self.settings.max_memory, "max_storage": self.settings.max_store,
                       "store_dir": self.settings.storage_path,
                       "sync_interval": 0 if self.settings.sync_interval is None
                       else int(self.settings.sync_interval * 1e9), "strict": True},
            "streams": len(streams), "consumers": sum(len(s.consumers) for s in streams),
            "messages": sum(s.store.state().msgs for s in streams),
            "bytes": sum(s.store.state().bytes for s in streams),
        }
        if self.settings.sync_interval is None:
            out["config"]["sync_always"] = True
        if self.domain:
            out["config"]["domain"] = self.domain
        details = flag("accounts") or flag("streams") or flag("consumers") or bool(params.get("acc"))
        if details:
            chosen = [a for a in self.clients if not params.get("acc") or a == params.get("acc")]
            out["account_details"] = [self._account_detail(a, flag("streams") or flag("consumers"),
                                                           flag("consumers"), flag("config")) for a in chosen]
            out["total"] = len(chosen)
        else:
            out["total"] = len(self.clients)
        damaged = sum(getattr(b, "corrupt", 0) for b in self.backends.values() if b is not None)
        out["natsd"] = {"damaged_messages": damaged}
        return out

    def _account_detail(self, account: str, streams: bool, consumers: bool, config: bool) -> dict[str, Any]:
        group = list(self.streams.get(account, {}).values())
        detail: dict[str, Any] = {
            "name": account, "id": account,
            "memory": sum(s.store.state().bytes for s in group if s.config["storage"] == "memory"),
            "storage": sum(s.store.state().bytes for s in group if s.config["storage"] == "file"),
            "accounts": 0, "ha_assets": 0, "api": {"level": 0, "total": self.api_total, "errors": self.api_errors},
        }
        if streams:
            listed = []
            for stream in sorted(group, key=lambda s: s.name):
                info = stream.info(cluster=True, dynamic=False)
                entry: dict[str, Any] = {"name": stream.name, "created": stream.created,
                                         "cluster": info["cluster"]}
                if config:
                    entry["config"] = info["config"]
                entry["state"] = info["state"]
                if consumers:
                    entry["consumer_detail"] = [c.info(dynamic=False) for c in stream.consumers.values()]
                listed.append(entry)
            detail["stream_detail"] = listed
        return detail

    def varz(self, varz: dict[str, Any]) -> None:
        streams = [s for group in self.streams.values() for s in group.values()]
        varz["jetstream"] = {
            "config": {"max_memory": self.settings.max_memory, "max_storage": self.settings.max_store,
                       "store_dir": self.settings.storage_path,
                       "sync_interval": 0 if self.settings.sync_interval is None
                       else int(self.settings.sync_interval * 1e9),
                       "sync_always": self.settings.sync_interval is None},
            "stats": {"memory": sum(s.store.state().bytes for s in streams if s.config["storage"] == "memory"),
                      "storage": sum(s.store.state().bytes for s in streams if s.config["storage"] == "file"),
                      "accounts": len(self.clients),
                      "api": {"level": API_LEVEL, "total": self.api_total, "errors": self.api_errors}},
        }
        if self.domain:
            varz["jetstream"]["config"]["domain"] = self.domain


def _js_enabled(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.lower() in ("enabled", "enable", "true")
    return isinstance(value, Mapping)


def _decoded(payload: bytes, schema: Mapping[str, Any], struct: str) -> Any:
    """The request's JSON (``{}`` when empty), checked as Go would decode it into ``struct``."""
    if not payload.strip():
        return {}
    merged: Any = None
    for value in loads(payload):  # Go decodes each value into the same struct
        check(value, schema, struct)
        merged = {**merged, **value} if isinstance(merged, dict) and isinstance(value, dict) else value
    return merged


def _no_overlap(config: Mapping[str, Any], others: Mapping[str, Mapping[str, Any]]) -> None:
    """A stream's subjects may not overlap another stream's of the account (400/10065)."""
    for other_name, other in others.items():
        if other_name == config["name"]:
            continue
        for theirs in other.get("subjects", []):
            if any(subjects_collide(theirs.encode(), mine.encode()) for mine in config.get("subjects", [])):
                raise api_error("JSStreamSubjectOverlapErr")


def _empty(payload: bytes) -> bool:
    """nats-server's ``isEmptyRequest``: nothing, or a JSON object with nothing in it."""
    if not payload.strip():
        return True
    try:
        return json.loads(payload) == {}
    except ValueError:
        return False


def _conflicts(request: Mapping[str, Any]) -> bool:
    """MSG.GET options that cannot go together, or none of those that choose a message."""
    seq, last, nxt, start = (request.get(k) for k in ("seq", "last_by_subj", "next_by_subj", "start_time"))
    return bool((seq and last) or not (seq or last or nxt or start) or (seq and start) or (start and last)
                or (last and nxt))


def _offset(request: Any) -> int:
    offset = request.get("offset", 0) if isinstance(request, dict) else 0
    return offset if isinstance(offset, int) and offset > 0 else 0

