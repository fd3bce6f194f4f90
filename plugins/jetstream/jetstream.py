"""The JetStream of one server: accounts, streams, and nats-server's ``$JS.API`` for them.

Each account with JetStream gets an internal client subscribed to
``$JS.API.>``; requests are answered with nats-server's JSON shapes,
``type`` strings and error codes. Streams are restored from the backends at
start. A request that changes what is stored (create, update, delete, purge,
message delete) is answered only once that change is durable, as a publish's
PubAck is.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from natsd import NATS_SERVER_VERSION
from natsd.routing.connection import Kind
from natsd.routing.internal import InternalClient
from natsd.routing.subjects import subjects_collide

from .errors import ApiError, api_error
from .store.base import Compact, Remove, StoredMsg
from .streams import Stream, check_config, check_update, purge_ops, rfc3339, valid_name

if TYPE_CHECKING:
    from natsd.config import ServerConfig
    from natsd.plugin.contracts import ServerAPI

    from .settings import JetStreamSettings

log = logging.getLogger("natsd.jetstream")

API_LEVEL = 5
"""The JetStream API level of nats-server 2.15.1 (``api.level``, ``_nats.level``)."""
NAMES_LIMIT = 1024
LIST_LIMIT = 256
NOT_YET = ApiError(501, 0, "natsd does not implement this JetStream API yet")

T = "io.nats.jetstream.api.v1."


def _dumps(obj: Any) -> bytes:
    """JSON as Go's encoder writes it: compact, with ``<``, ``>`` and ``&`` escaped."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


class JetStream:
    """What ``jetstream {}`` turns on (see the module docstring)."""

    def __init__(self, server: ServerAPI, settings: JetStreamSettings, config: ServerConfig) -> None:
        self.server = server
        self.settings = settings
        self.domain = settings.domain
        self.accounts = ["$G"] + [name for name, block in config.accounts.items()
                                  if isinstance(block, Mapping) and _js_enabled(block.get("jetstream"))]
        self.backends: dict[str, Any] = {}
        self.streams: dict[str, dict[str, Stream]] = {}
        self.clients: dict[str, InternalClient] = {}
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
        for account in self.accounts:
            client = self.server.connect_internal("jetstream", account, kind=Kind.JETSTREAM)
            self.clients[account] = client
            self.streams[account] = {}
            client.subscribe(b"$JS.API.>", self._request_callback(account))
        for backend in self.backends.values():
            for account, name, meta in backend.saved():
                if account not in self.clients:
                    log.warning("JetStream: stream %r of account %r is kept but the account has no "
                                "JetStream now; it is not loaded", name, account)
                    continue
                stream = Stream(self, account, meta["config"], backend.stream(account, name),
                                meta.get("created", rfc3339(time.time_ns())), self.clients[account])
                self.streams[account][name] = stream
                stream.subscribe()
        self.server.update_info(jetstream=True)
        count = sum(len(s) for s in self.streams.values())
        log.info("Starting JetStream (storage %s, sync %s); %d stream(s) restored", self.settings.storage_path,
                 "always" if self.settings.sync_interval is None else f"every {self.settings.sync_interval}s",
                 count)

    async def stop(self) -> None:
        for streams in self.streams.values():
            for stream in streams.values():
                stream.close()
        for client in self.clients.values():
            client.close()
        for backend in self.backends.values():
            if backend is not None:
                await backend.close()
        self.server.update_info(jetstream=None)

    # -- the publish path's hook ---------------------------------------------------------------------

    def stored(self, stream: Stream, msg: StoredMsg) -> None:
        """A message was staged in ``stream`` (consumers will be told here)."""

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

    def _request_callback(self, account: str) -> Callable[[bytes, bytes | None, bytes | None, bytes], None]:
        def callback(subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
            if not reply:
                return  # nats-server ignores API requests without a reply subject
            self.api_total += 1
            self.server.loop.create_task(self._answer(account, subject.decode(), reply, payload))
        return callback

    async def _answer(self, account: str, subject: str, reply: bytes, payload: bytes) -> None:
        tokens = subject.split(".")[2:]  # after $JS.API
        kind, response = "", None
        try:
            kind, handler, args = self._route(tokens)
            request = _request(payload)
            response = await handler(account, request, *args)
        except ApiError as exc:
            self.api_errors += 1
            response = {"error": exc.json()}
        except Exception:
            log.exception("JetStream API request %s failed", subject)
            self.api_errors += 1
            response = {"error": api_error("JSStreamGeneralErrorF", err="internal error").json()}
        if kind == "direct" and isinstance(response, tuple):
            headers, data = response
            self.clients[account].publish(reply, data, headers=headers)
            return
        if kind == "direct":
            error = response.get("error", {}) if isinstance(response, dict) else {}
            status = b"NATS/1.0 404 Message Not Found\r\n\r\n" if error.get("code") == 404 else \
                b"NATS/1.0 408 Bad Request\r\n\r\n"
            self.clients[account].publish(reply, b"", headers=status)
            return
        if kind == "stream_info_response":  # nats-server's paging fields, errors included
            response = {"total": 0, "offset": 0, "limit": 0, **response}
        body = {"type": T + kind, **response} if kind else response
        self.clients[account].publish(reply, _dumps(body))

    def _route(self, tokens: list[str]) -> tuple[str, Callable[..., Any], tuple[Any, ...]]:
        if tokens == ["INFO"]:
            return "account_info_response", self.account_info, ()
        if len(tokens) >= 3 and tokens[0] == "STREAM":
            op, name = tokens[1], ".".join(tokens[2:])
            table = {"CREATE": ("stream_create_response", self.stream_create),
                     "UPDATE": ("stream_update_response", self.stream_update),
                     "INFO": ("stream_info_response", self.stream_info),
                     "DELETE": ("stream_delete_response", self.stream_delete),
                     "PURGE": ("stream_purge_response", self.stream_purge)}
            if op in table and len(tokens) == 3:
                return table[op][0], table[op][1], (name,)
            if op == "MSG" and len(tokens) == 4 and tokens[2] in ("GET", "DELETE"):
                if tokens[2] == "GET":
                    return "stream_msg_get_response", self.msg_get, (tokens[3],)
                return "stream_msg_delete_response", self.msg_delete, (tokens[3],)
        if tokens in (["STREAM", "NAMES"], ["STREAM", "LIST"]):
            if tokens[1] == "NAMES":
                return "stream_names_response", self.stream_names, ()
            return "stream_list_response", self.stream_list, ()
        if len(tokens) >= 3 and tokens[:2] == ["DIRECT", "GET"]:
            return "direct", self.direct_get, (tokens[2], ".".join(tokens[3:]))
        if tokens and tokens[0] in ("CONSUMER", "STREAM", "ACCOUNT", "META", "SERVER"):
            raise NOT_YET
        raise api_error("JSBadRequestErr")

    def _stream(self, account: str, name: str) -> Stream:
        stream = self.streams[account].get(name)
        if stream is None:
            raise api_error("JSStreamNotFoundErr")
        return stream

    async def account_info(self, account: str, request: Any) -> dict[str, Any]:
        streams = self.streams[account].values()
        memory = sum(s.store.state().bytes for s in streams if s.config["storage"] == "memory")
        storage = sum(s.store.state().bytes for s in streams if s.config["storage"] == "file")
        limits = {"max_memory": -1, "max_storage": -1, "max_streams": -1, "max_consumers": -1,
                  "max_ack_pending": -1, "memory_max_stream_bytes": -1, "storage_max_stream_bytes": -1,
                  "max_bytes_required": False}
        out: dict[str, Any] = {"memory": memory, "storage": storage, "reserved_memory": 0, "reserved_storage": 0,
                               "streams": len(self.streams[account]), "consumers": 0, "limits": limits}
        if self.domain:
            out["domain"] = self.domain
        out["api"] = {"level": API_LEVEL, "total": self.api_total, "errors": self.api_errors}
        return out

    async def stream_create(self, account: str, request: Any, name: str) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise api_error("JSInvalidJSONErr", err="expected a JSON object")
        if request.get("name") and request["name"] != name:
            raise api_error("JSStreamMismatchErr")
        request = {**request, "name": request.get("name") or name}
        if not valid_name(name):
            raise api_error("JSStreamInvalidConfigF",
                            err="stream name is required and can not contain '.', '*', '>', '\\', '/'")
        others = {n: s.config for n, s in self.streams[account].items()}
        config = check_config(request, others, self.server.config.max_payload)
        existing = self.streams[account].get(name)
        if existing is not None:
            if existing.config == config:
                return {**existing.info(), "did_create": True}  # as nats-server: an idempotent create
            raise api_error("JSStreamNameExistErr")
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
        return {**stream.info(), "did_create": True}

    async def stream_update(self, account: str, request: Any, name: str) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise api_error("JSInvalidJSONErr", err="expected a JSON object")
        if request.get("name") and request["name"] != name:
            raise api_error("JSStreamMismatchErr")
        stream = self._stream(account, name)
        others = {n: s.config for n, s in self.streams[account].items()}
        config = check_config({**request, "name": name}, others, self.server.config.max_payload)
        check_update(stream.config, config)
        stream.config = config
        stream.store.save_meta({"config": config, "created": stream.created})
        await stream.store.commit()
        stream.subscribe()
        return stream.info()

    async def stream_info(self, account: str, request: Any, name: str) -> dict[str, Any]:
        stream = self._stream(account, name)
        req = request if isinstance(request, dict) else {}
        return stream.info(req.get("subjects_filter"), bool(req.get("deleted_details")), cluster=True)

    async def stream_delete(self, account: str, request: Any, name: str) -> dict[str, Any]:
        stream = self._stream(account, name)
        stream.close()
        del self.streams[account][name]
        await stream.store.delete()
        return {"success": True}

    async def stream_purge(self, account: str, request: Any, name: str) -> dict[str, Any]:
        stream = self._stream(account, name)
        if stream.config["deny_purge"]:
            raise api_error("JSStreamPurgeFailedF", err="stream purge not permitted")
        req = request if isinstance(request, dict) else {}
        if req.get("seq") and req.get("keep"):
            raise api_error("JSBadRequestErr")
        ops, count = purge_ops(stream.store, req)
        if ops:
            stream.store.stage(ops)
        stream.next_seq = max(stream.next_seq, stream.store.state().last_seq + 1)
        await stream.store.commit()
        return {"success": True, "purged": count}

    async def stream_names(self, account: str, request: Any) -> dict[str, Any]:
        names = self._filtered(account, request)
        offset = _offset(request)
        page = [s.name for s in names[offset:offset + NAMES_LIMIT]]
        return {"total": len(names), "offset": offset, "limit": NAMES_LIMIT, "streams": page or None}

    async def stream_list(self, account: str, request: Any) -> dict[str, Any]:
        streams = self._filtered(account, request)
        offset = _offset(request)
        page = [s.info(dynamic=False) for s in streams[offset:offset + LIST_LIMIT]]
        return {"total": len(streams), "offset": offset, "limit": LIST_LIMIT, "streams": page}

    def _filtered(self, account: str, request: Any) -> list[Stream]:
        subject = request.get("subject") if isinstance(request, dict) else None
        streams = sorted(self.streams[account].values(), key=lambda s: s.name)
        if subject:
            streams = [s for s in streams if any(subjects_collide(subject.encode(), x.encode())
                                                 for x in s.config["subjects"])]
        return streams

    async def msg_get(self, account: str, request: Any, name: str) -> dict[str, Any]:
        stream = self._stream(account, name)
        msg = self._find(stream, request)
        return {"message": stream.stored_json(msg, bool(request.get("no_hdr")))}

    def _find(self, stream: Stream, request: Any) -> StoredMsg:
        if not isinstance(request, dict):
            raise api_error("JSBadRequestErr")
        seq = request.get("seq")
        last_by = request.get("last_by_subj")
        next_by = request.get("next_by_subj")
        if sum(1 for v in (last_by, next_by) if v) > 1 or (seq and last_by):
            raise api_error("JSBadRequestErr")
        msg: StoredMsg | None
        if last_by:
            msg = stream.store.last_matching(last_by)
        elif next_by:
            msg = stream.store.next_matching(int(seq or 0), next_by)
        elif isinstance(seq, int) and seq > 0:
            msg = stream.store.load(seq)
        else:
            raise api_error("JSBadRequestErr")
        if msg is None:
            raise api_error("JSNoMessageFoundErr")
        return msg

    async def msg_delete(self, account: str, request: Any, name: str) -> dict[str, Any]:
        stream = self._stream(account, name)
        if stream.config["deny_delete"]:
            raise api_error("JSStreamMsgDeleteFailedF", err="message delete not permitted")
        seq = request.get("seq") if isinstance(request, dict) else None
        if not isinstance(seq, int) or seq <= 0:
            raise api_error("JSBadRequestErr")
        if stream.store.load(seq) is None:
            raise api_error("JSStreamMsgDeleteFailedF", err="no message found")
        stream.store.stage([Remove((seq,))])
        await stream.store.commit()
        return {"success": True}

    async def direct_get(self, account: str, request: Any, name: str,
                         last_subject: str) -> tuple[bytes, bytes]:
        stream = self._stream(account, name)
        if not stream.config["allow_direct"]:
            raise api_error("JSStreamNotFoundErr")
        if last_subject:
            msg = stream.store.last_matching(last_subject)
            if msg is None:
                raise api_error("JSNoMessageFoundErr")
        else:
            msg = self._find(stream, request)
        head = (f"NATS/1.0\r\nNats-Stream: {stream.name}\r\nNats-Subject: {msg.subject}\r\n"
                f"Nats-Sequence: {msg.seq}\r\nNats-Time-Stamp: {rfc3339(msg.ts)}\r\n").encode()
        if msg.hdrs:
            extra = msg.hdrs.split(b"\r\n", 1)[1] if b"\r\n" in msg.hdrs else b"\r\n"
            headers = head + extra
        else:
            headers = head + b"\r\n"
        return headers, msg.data

    # -- monitoring -----------------------------------------------------------------------------------

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
                      "accounts": len(self.accounts),
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


def _request(payload: bytes) -> Any:
    if not payload.strip():
        return {}
    try:
        return json.loads(payload)
    except ValueError as exc:
        raise api_error("JSInvalidJSONErr", err=str(exc)) from None


def _offset(request: Any) -> int:
    offset = request.get("offset", 0) if isinstance(request, dict) else 0
    return offset if isinstance(offset, int) and offset > 0 else 0

