"""A stream: its configuration (checked and filled in as nats-server does) and its publish path.

:func:`check_config` turns a request's config into the one nats-server would
keep (defaults filled, in nats-server's JSON key order) or raises the
:class:`~.errors.ApiError` it would answer. :class:`Stream` captures
messages published on its subjects: the ``Nats-*`` headers' checks
(expected stream, last sequence, last sequence per subject, last message id,
duplicates within the window, roll-ups, TTLs), the limits (``max_msgs``,
``max_bytes``, ``max_msgs_per_subject``, ``max_age``, ``max_msg_size``,
discard old or new), then stages the operations in its store and answers
the PubAck once the store's commit says the message is durable. Acks of one
loop pass share one commit (group commit).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import heapq
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from natsd.routing.mappings import SubjectTransform
from natsd.routing.subjects import subject_is_subset, subjects_collide, valid_subject
from natsd.routing.sublist import Sublist, Subscription

from .errors import ApiError, api_error
from .store.base import Append, Compact, Op, Remove, Skip, StoredMsg, StreamStore

if TYPE_CHECKING:
    from natsd.routing.internal import InternalClient
    from natsd.routing.sublist import Subscription

log = logging.getLogger("natsd.jetstream")

NS = 1_000_000_000
DEFAULT_DUPLICATE_WINDOW = 120 * NS
MAX_NAME_LEN = 255
MAX_DESCRIPTION_LEN = 4 * 1024
MAX_METADATA_LEN = 128 * 1024

RETENTION = ("limits", "interest", "workqueue")
DISCARD = ("old", "new")
STORAGE = ("file", "memory")
COMPRESSION = ("none", "s2")

# Headers a publisher sets for the stream (nats-server's names)
MSG_ID = "Nats-Msg-Id"
EXPECTED_STREAM = "Nats-Expected-Stream"
EXPECTED_LAST_SEQ = "Nats-Expected-Last-Sequence"
EXPECTED_LAST_SUBJ_SEQ = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJ_SEQ_SUBJ = "Nats-Expected-Last-Subject-Sequence-Subject"
EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
ROLLUP = "Nats-Rollup"
MSG_TTL = "Nats-TTL"
MARKER_REASON = "Nats-Marker-Reason"

UNSUPPORTED = {"allow_msg_counter": "counters", "allow_batched": "batch publish"}
"""Config features natsd does not implement yet: refused by name rather than ignored."""


def invalid(text: str) -> ApiError:
    return api_error("JSStreamInvalidConfigF", err=text)


def valid_name(name: Any) -> bool:
    """nats-server's ``isValidAssetName``: non-empty, none of ``.*>\\/``, no whitespace."""
    return (isinstance(name, str) and bool(name) and not any(c in name for c in ".*>\\/")
            and not any(c.isspace() for c in name))


def _int(cfg: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = cfg.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise api_error("JSInvalidJSONErr")
    return value


def _bool(cfg: Mapping[str, Any], key: str) -> bool:
    value = cfg.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise api_error("JSInvalidJSONErr")
    return value


def _enum(cfg: Mapping[str, Any], key: str, allowed: tuple[str, ...], what: str) -> str:
    value = cfg.get(key)
    if value is None or value == "":
        return allowed[0]
    if value not in allowed:
        raise invalid(f"invalid {what}")
    return str(value)


def check_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The config nats-server keeps for ``raw``, or the error it answers (overlaps with the
    account's other streams are the caller's to check)."""
    name = raw.get("name")
    if not valid_name(name):
        raise invalid("stream name is required and can not contain '.', '*', '>', '\\', '/'")
    assert isinstance(name, str)
    if len(name) > MAX_NAME_LEN:
        raise invalid(f"stream name is too long, maximum allowed is {MAX_NAME_LEN}")
    description = raw.get("description") or ""
    if not isinstance(description, str):
        raise api_error("JSInvalidJSONErr")
    if len(description) > MAX_DESCRIPTION_LEN:
        raise invalid(f"stream description is too long, maximum allowed is {MAX_DESCRIPTION_LEN}")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise api_error("JSInvalidJSONErr")
    if sum(len(k) + len(v) for k, v in metadata.items()) > MAX_METADATA_LEN:
        raise invalid(f"stream metadata exceeds maximum size of {MAX_METADATA_LEN} bytes")
    for key, feature in UNSUPPORTED.items():
        if raw.get(key):
            raise invalid(f"{feature} are not supported by natsd yet")
    retention = _enum(raw, "retention", RETENTION, "retention")
    discard = _enum(raw, "discard", DISCARD, "discard policy")
    compression = _enum(raw, "compression", COMPRESSION, "compression")
    storage = _enum(raw, "storage", STORAGE, "storage type")
    replicas = _int(raw, "num_replicas") or 1
    if replicas > 5:
        raise invalid("maximum replicas is 5")
    if replicas < 0:
        raise api_error("JSReplicasCountCannotBeNegative")
    if replicas > 1:
        raise api_error("JSStreamReplicasNotSupportedErr")
    limits = {}
    for key in ("max_msgs", "max_msgs_per_subject", "max_bytes", "max_msg_size", "max_consumers"):
        value = _int(raw, key)
        limits[key] = -1 if value == 0 or value < -1 else value
    max_age = _int(raw, "max_age")
    if max_age < 0:
        raise invalid("max age can not be negative")
    if 0 < max_age < NS // 10:
        raise invalid("max age needs to be >= 100ms")
    mirror, sources = _sourcing(raw)
    duplicates = _int(raw, "duplicate_window")
    if duplicates == 0 and mirror is None and not sources:  # mirrors and sourcing streams keep none
        duplicates = max_age if 0 < max_age < DEFAULT_DUPLICATE_WINDOW else DEFAULT_DUPLICATE_WINDOW
    if duplicates < 0:
        raise invalid("duplicates window can not be negative")
    if max_age and duplicates > max_age:
        raise invalid("duplicates window can not be larger then max age")
    if 0 < duplicates < NS // 10:
        raise invalid("duplicates window needs to be >= 100ms")
    deny_purge, allow_rollup = _bool(raw, "deny_purge"), _bool(raw, "allow_rollup_hdrs")
    if deny_purge and allow_rollup:
        raise invalid("roll-ups require the purge permission")
    discard_new_per = _bool(raw, "discard_new_per_subject")
    if discard_new_per:
        if discard != "new":
            raise invalid("discard new per subject requires discard new policy to be set")
        if limits["max_msgs_per_subject"] <= 0:
            raise invalid("discard new per subject requires max msgs per subject > 0")
    allow_ttl = _bool(raw, "allow_msg_ttl")
    marker_ttl = _int(raw, "subject_delete_marker_ttl")
    if marker_ttl > 0:
        if marker_ttl < NS:
            raise invalid("subject delete marker TTL must be at least 1 second")
        allow_ttl = True
        if not allow_rollup:
            allow_rollup, deny_purge = True, False
    elif marker_ttl < 0:
        raise invalid("subject delete marker TTL must not be negative")
    schedules = _bool(raw, "allow_msg_schedules")
    if schedules:
        if discard == "new":
            raise invalid("message scheduling cannot use discard new")
        allow_rollup, deny_purge = True, False  # a new schedule rolls up the one before it
    persist = raw.get("persist_mode") or "default"
    atomic = _bool(raw, "allow_atomic")
    if persist == "async" and storage != "file":
        raise invalid("async persist mode is only supported on file storage")
    if persist == "async" and atomic:
        raise invalid("async persist mode is not supported with atomic batch publish")
    no_ack = _bool(raw, "no_ack")
    subjects = raw.get("subjects") or []
    if not isinstance(subjects, list) or not all(isinstance(s, str) for s in subjects):
        raise api_error("JSInvalidJSONErr")
    if mirror is not None:
        if _int(raw, "first_seq") > 0:
            raise api_error("JSMirrorWithFirstSeqErr")
        if subjects:
            raise api_error("JSMirrorWithSubjectsErr")
        if sources:
            raise api_error("JSMirrorWithSourcesErr")
        if _bool(raw, "allow_atomic"):
            raise api_error("JSMirrorWithAtomicPublishErr")
        if _bool(raw, "allow_msg_schedules"):
            raise api_error("JSMirrorWithMsgSchedulesErr")
        if _int(raw, "subject_delete_marker_ttl") > 0:
            raise invalid("subject delete markers forbidden on mirrors")
    elif sources and _bool(raw, "allow_msg_schedules"):
        raise api_error("JSSourceWithMsgSchedulesErr")
    if not subjects and mirror is None and not sources:
        subjects = [name]
    seen: set[str] = set()
    for i, subject in enumerate(subjects):
        if not valid_subject(subject.encode()):
            raise invalid("invalid subject")
        if subject in seen:
            raise invalid("duplicate subjects detected")
        if subject == ">":
            if not no_ack:
                raise invalid("capturing all subjects requires no-ack to be true")
        if not no_ack:
            for namespace in (b"$JS.>", b"$JSC.>", b"$NRG.>"):
                if subjects_collide(subject.encode(), namespace) and not subject_is_subset(
                        subject.encode(), b"$JS.EVENT.>"):
                    raise invalid("subjects that overlap with jetstream api require no-ack to be true")
            if subjects_collide(subject.encode(), b"$SYS.>") and not subject_is_subset(
                    subject.encode(), b"$SYS.ACCOUNT.>"):
                raise invalid("subjects that overlap with system api require no-ack to be true")
        for later in subjects[i + 1:]:
            if subjects_collide(later.encode(), subject.encode()):
                raise invalid(f'subject "{subject}" overlaps with "{later}"')
        seen.add(subject)
    transform = raw.get("subject_transform")
    if transform:
        if not isinstance(transform, dict):
            raise api_error("JSInvalidJSONErr")
        src = transform.get("src") or ""
        if src and not valid_subject(src.encode()):
            raise api_error("JSStreamTransformInvalidSourceErr", err=f"invalid subject {src}")
        transform = {"src": src, "dest": transform.get("dest") or ""}
    republish = raw.get("republish")
    if republish:
        if not isinstance(republish, dict):
            raise api_error("JSInvalidJSONErr")
        republish = {"src": republish.get("src") or ">", "dest": republish.get("dest") or "",
                     "headers_only": bool(republish.get("headers_only"))}
        if any(subjects_collide(republish["dest"].encode(), s.encode()) for s in subjects):
            raise invalid("stream configuration for republish destination forms a cycle")
    consumer_limits = raw.get("consumer_limits") or {}
    if not isinstance(consumer_limits, dict):
        raise api_error("JSInvalidJSONErr")
    cfg: dict[str, Any] = {"name": name}
    if description:
        cfg["description"] = description
    if subjects:
        cfg["subjects"] = subjects
    cfg.update(retention=retention, max_consumers=limits["max_consumers"], max_msgs=limits["max_msgs"],
               max_bytes=limits["max_bytes"], max_age=max_age,
               max_msgs_per_subject=limits["max_msgs_per_subject"], max_msg_size=limits["max_msg_size"],
               discard=discard, storage=storage, num_replicas=replicas)
    if no_ack:
        cfg["no_ack"] = True
    if duplicates:
        cfg["duplicate_window"] = duplicates
    if mirror is not None:
        cfg["mirror"] = mirror
    if sources:
        cfg["sources"] = sources
    cfg["compression"] = compression
    first_seq = _int(raw, "first_seq")
    if first_seq > 0:
        cfg["first_seq"] = first_seq
    if transform:
        cfg["subject_transform"] = transform
    if republish:
        out = {"src": republish["src"], "dest": republish["dest"]}
        if republish["headers_only"]:
            out["headers_only"] = True
        cfg["republish"] = out
    cfg["allow_direct"] = _bool(raw, "allow_direct")
    cfg["mirror_direct"] = _bool(raw, "mirror_direct")
    if cfg["mirror_direct"] and mirror is None:
        raise invalid("stream has no mirror but does have mirror direct")
    if discard_new_per:
        cfg["discard_new_per_subject"] = True
    cfg.update(sealed=_bool(raw, "sealed"), deny_delete=_bool(raw, "deny_delete"), deny_purge=deny_purge,
               allow_rollup_hdrs=allow_rollup, consumer_limits=dict(consumer_limits), allow_msg_ttl=allow_ttl)
    if marker_ttl:
        cfg["subject_delete_marker_ttl"] = marker_ttl
    if atomic:
        cfg["allow_atomic"] = True
    if schedules:
        cfg["allow_msg_schedules"] = True
    if persist == "async":
        cfg["persist_mode"] = "async"
    # nats-server keeps the API level the stream needs (1: message TTLs; 2: atomic batches, async
    # persistence)
    metadata = {k: v for k, v in metadata.items() if k not in ("_nats.ver", "_nats.level")}
    metadata["_nats.req.level"] = "2" if persist == "async" or atomic or schedules else "1" if allow_ttl else "0"
    cfg["metadata"] = dict(sorted(metadata.items()))
    return cfg


def _sourcing(raw: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """A config's ``mirror`` and ``sources``, checked as nats-server checks them and in its JSON shape."""
    mirror = raw.get("mirror")
    out_mirror = _source(mirror, "mirror") if mirror else None
    out_sources: list[dict[str, Any]] = []
    seen: set[str] = set()
    for source in raw.get("sources") or []:
        if not source:
            raise api_error("JSSourceInvalidStreamName")
        checked = _source(source, "source")
        key = index_name(checked)
        if key in seen:
            raise api_error("JSSourceDuplicateDetected")
        seen.add(key)
        out_sources.append(checked)
    return out_mirror, out_sources


def _source(raw: Any, what: str) -> dict[str, Any]:
    """One ``mirror`` or ``sources`` entry (nats-server's ``StreamSource``), checked."""
    if not isinstance(raw, dict):
        raise api_error("JSInvalidJSONErr")
    name = raw.get("name")
    external = raw.get("external") or None
    mirror = what == "mirror"
    if not isinstance(name, str) or not name or (not valid_name(name) and (not mirror or external is None)):
        raise api_error("JSMirrorInvalidStreamName" if mirror else "JSSourceInvalidStreamName")
    out: dict[str, Any] = {"name": name}
    start = _int(raw, "opt_start_seq")
    if start > 0:
        out["opt_start_seq"] = start
    if raw.get("opt_start_time"):
        out["opt_start_time"] = raw["opt_start_time"]
    transforms = raw.get("subject_transforms") or []
    if raw.get("filter_subject"):
        if transforms:
            raise api_error("JSMirrorMultipleFiltersNotAllowed" if mirror else "JSSourceMultipleFiltersNotAllowed")
        out["filter_subject"] = raw["filter_subject"]
    if transforms:
        shown = []
        for t in transforms:
            src, dest = (t or {}).get("src") or "", (t or {}).get("dest") or ""
            if src and not valid_subject(src.encode()):
                raise (api_error("JSSourceInvalidSubjectFilter", err=f"invalid subject {src}") if not mirror
                       else invalid(f"mirror transform source: invalid subject {src}"))
            shown.append({"src": src, "dest": dest})
        srcs = [t["src"] or ">" for t in shown]
        if any(subjects_collide(a.encode(), b.encode()) for i, a in enumerate(srcs) for b in srcs[i + 1:]):
            raise api_error("JSSourceOverlappingSubjectFilters") if not mirror else invalid(
                "mirror subject filters can not overlap")
        out["subject_transforms"] = shown
    if external is not None:
        if not isinstance(external, dict):
            raise api_error("JSInvalidJSONErr")
        api = external.get("api") or ""
        deliver = external.get("deliver") or ""
        if deliver and not valid_subject(deliver.encode()) or any(t in ("*", ">") for t in deliver.split(".")):
            raise api_error("JSStreamInvalidExternalDeliverySubjErrF", prefix=deliver)
        if api and (not valid_subject(api.encode()) or any(t in ("*", ">") for t in api.split("."))):
            raise invalid(f'stream external api prefix "{api}" must be a valid subject without wildcards')
        if api and subjects_collide(api.encode(), b"$JS.API"):
            raise api_error("JSStreamExternalApiOverlapErrF", prefix=api, subject="$JS.API")
        out["external"] = {"api": api, "deliver": deliver}
    return out


def index_name(source: Mapping[str, Any]) -> str:
    """nats-server's ``iname`` of a source: ``name[:hash(api)] <filters> <dests>`` (what
    ``Nats-Stream-Source`` headers carry, and what tells two sources apart)."""
    name = source["name"]
    external = source.get("external")
    if external and external.get("api"):
        name += ":" + short_hash(external["api"])
    transforms = source.get("subject_transforms") or []
    if transforms:
        filters = "\f".join(t["src"] or ">" for t in transforms)
        dests = "\f".join(t["dest"] or ">" for t in transforms)
    else:
        filters, dests = source.get("filter_subject") or ">", ">"
    return f"{name} {filters} {dests}"


def short_hash(text: str) -> str:
    """nats-server's ``getHash``: the first 8 bytes of SHA-256, each mapped onto ``0-9A-Za-z``."""
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return "".join(digits[b % 62] for b in hashlib.sha256(text.encode()).digest()[:8])


def check_update(old: Mapping[str, Any], new: dict[str, Any]) -> None:
    """nats-server's rules for what an update may change, in its order (raises the error it
    answers); sealing also stops expiry and makes the stream discard new, refuse deletes,
    purges and roll-ups."""
    if old.get("mirror") != new.get("mirror") and new.get("mirror") is not None:
        raise api_error("JSStreamMirrorNotUpdatableErr")
    if new["storage"] != old["storage"]:
        raise invalid("stream configuration update can not change storage type")
    if new["retention"] != old["retention"] and "workqueue" in (new["retention"], old["retention"]):
        raise invalid("stream configuration update can not change retention policy to/from workqueue")
    if old["sealed"] and not new["sealed"]:
        raise invalid("stream configuration update can not unseal a sealed stream")
    if old["deny_delete"] and not new["deny_delete"]:
        raise invalid("stream configuration update can not cancel deny message deletes")
    if old["deny_purge"] and not new["deny_purge"]:
        raise invalid("stream configuration update can not cancel deny purge")
    if old.get("allow_msg_ttl") and not new.get("allow_msg_ttl"):
        raise invalid("message TTL status can not be disabled")
    if old.get("allow_msg_schedules") and not new.get("allow_msg_schedules"):
        raise invalid("message schedules can not be disabled")
    if old.get("persist_mode") != new.get("persist_mode"):
        raise invalid("stream configuration update can not change persist mode")
    if new["sealed"]:
        new.update(max_age=0, discard="new", deny_delete=True, deny_purge=True, allow_rollup_hdrs=False)


def rfc3339(ns: int) -> str:
    """Go's ``time.Time`` in JSON: RFC 3339 with nanoseconds, trailing zeros dropped, UTC ``Z``."""
    if ns == 0:
        return "0001-01-01T00:00:00Z"
    seconds, frac = divmod(ns, NS)
    text = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def parse_headers(block: bytes | None) -> dict[str, str]:
    """The first value of each header in a ``NATS/1.0`` block (names as sent)."""
    out: dict[str, str] = {}
    if not block:
        return out
    for line in block.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name:
            out.setdefault(name.decode("latin-1").strip(), value.decode("latin-1").strip())
    return out


class Stream:
    """One stream of one account: its config, its store, and the subscriptions that feed it."""

    def __init__(self, owner: Any, account: str, config: dict[str, Any], store: StreamStore,
                 created: str, client: InternalClient) -> None:
        self.owner = owner
        self.account = account
        self.config = config
        self.store = store
        self.created = created
        self.client = client
        self.subs: list[Subscription] = []
        self.consumers: dict[str, Any] = {}
        """Consumers by name (:class:`natsd_plugins.jetstream.consumers.Consumer`); changed through
        :meth:`add_consumer`, :meth:`remove_consumer` and :meth:`refiltered` only."""
        self.takers = Sublist()
        """The consumers' filters, one subscription each with its consumer as the client: who takes
        a subject is one (cached) match, not a question to each consumer. A stream with a consumer
        per device (the MQTT plugin's QoS 1 sessions) has thousands."""
        self._indexed: dict[str, tuple[list[Subscription], str]] = {}
        """What :meth:`_index` put where, by consumer name: its filters' subscriptions, its deliver subject."""
        self.pushing: dict[str, dict[str, Any]] = {}
        """Push consumers by deliver subject (a new subscriber there wakes them)."""
        self._fresh: set[str] = set()
        """Subjects stored since the last commit: their consumers are woken when it is durable."""
        self.dedup: OrderedDict[str, tuple[int, int]] = OrderedDict()
        """Nats-Msg-Id -> (seq, ts ns), oldest first, for the duplicate window."""
        self.last_msg_id = ""
        self.next_seq = max(store.state().last_seq + 1, int(config.get("first_seq", 1)))
        self.committed_seq = self.next_seq - 1
        """The last sequence whose commit has resolved: consumers deliver nothing beyond it."""
        self.ttls: list[tuple[int, int]] = []
        """(expiry ns, seq) of messages with a ``Nats-TTL``, soonest first."""
        self.transform: SubjectTransform | None = None
        self.republish: SubjectTransform | None = None
        self.apply_config(config)
        self._acks: list[tuple[bytes, bytes]] = []
        self._told: list[tuple[Callable[[int, str | None], None], int]] = []
        """In-process publishes (:meth:`store_local`) waiting for the commit: (callback, seq)."""
        self._traced: list[tuple[Any, Callable[[], None], bytes, bool]] = []
        """Traced messages waiting for the commit: (trace, release, stored subject, no interest)."""
        self.feeds: dict[str, Any] = {}
        """The mirror and sources feeding this stream, by index name
        (:class:`natsd_plugins.jetstream.sourcing.Feed`)."""
        self.scheduler: Any = None
        """The armed message schedules (:class:`natsd_plugins.jetstream.schedules.Scheduler`)."""
        self.batches: Any = None
        """The open atomic batches (:class:`natsd_plugins.jetstream.batches.Batches`), once one came."""
        self._commit_scheduled = False
        self._age_timer: asyncio.TimerHandle | None = None
        self._pub_ack_head = ('{"stream":' + json.dumps(config["name"])
                              + (f',"domain":{json.dumps(owner.domain)}' if owner.domain else "")
                              + ',"seq":').encode()

    @property
    def name(self) -> str:
        return str(self.config["name"])

    def apply_config(self, config: dict[str, Any]) -> None:
        """Take a (new) config: its subject transform; limits it lowered apply at once."""
        old = self.config
        self.config = config
        transform = config.get("subject_transform")
        self.transform = (SubjectTransform(transform["src"] or ">", transform["dest"])
                          if transform and transform.get("dest") else None)
        republish = config.get("republish")
        self.republish = SubjectTransform(republish["src"], republish["dest"]) if republish else None
        if old is not config and old["retention"] != config["retention"] and config["retention"] == "interest":
            state = self.store.state()
            if state.msgs:  # no consumer is interested in anything yet: nats-server drops it all
                self.store.stage([Compact(state.last_seq + 1)])
        if old is not config:
            for subject, _ in list(self.store.subjects(">")):
                self._enforce_limits(subject)
            if not config.get("allow_atomic") and self.batches is not None:
                self.batches.close()  # as nats-server: turning atomic publish off drops open batches

    def subscribe(self) -> None:
        for sub in self.subs:
            self.client.unsubscribe(sub)
        self.subs = [self.client.subscribe(subject, self._received) for subject in self.config.get("subjects", [])]
        if self.config["allow_direct"]:  # as nats-server: otherwise a direct get finds no responders
            for subject in (f"$JS.API.DIRECT.GET.{self.name}", f"$JS.API.DIRECT.GET.{self.name}.>"):
                self.subs.append(self.client.subscribe(subject, self._direct_get, queue="_sys_"))
        if self.config.get("allow_msg_ttl") and not self.ttls:
            self._load_ttls()
        self._feed()
        for feed in self.feeds.values():
            if feed.mirror and not self.config.get("mirror_direct"):
                feed.serve_direct(False)
        if self.config.get("allow_msg_schedules") and self.scheduler is None:
            from .schedules import Scheduler

            self.scheduler = Scheduler(self)
            self.scheduler.load()
        self._schedule_age()

    # -- consumers -------------------------------------------------------------------------------

    def add_consumer(self, consumer: Any) -> None:
        self.consumers[consumer.name] = consumer
        self._index(consumer)

    def remove_consumer(self, name: str) -> Any:
        """Take consumer ``name`` away (``None``: there is none)."""
        consumer = self.consumers.pop(name, None)
        if consumer is not None:
            self._unindex(consumer)
        return consumer

    def refiltered(self, consumer: Any) -> None:
        """``consumer``'s filters or deliver subject changed (an update)."""
        self._unindex(consumer)
        self._index(consumer)

    def _index(self, consumer: Any) -> None:
        subs = [Subscription(consumer, f.encode(), None, b"") for f in consumer.filters]
        for sub in subs:
            self.takers.insert(sub)
        deliver: str = consumer.config.get("deliver_subject") or ""
        if deliver:
            self.pushing.setdefault(deliver, {})[consumer.name] = consumer
        self._indexed[consumer.name] = (subs, deliver)

    def _unindex(self, consumer: Any) -> None:
        subs, deliver = self._indexed.pop(consumer.name, ([], ""))
        for sub in subs:
            self.takers.remove(sub)
        pushed = self.pushing.get(deliver)
        if pushed is not None:
            pushed.pop(consumer.name, None)
            if not pushed:
                del self.pushing[deliver]

    def taking(self, subject: str) -> list[Any]:
        """The consumers whose filters take ``subject``."""
        subs = self.takers.match(subject.encode()).psubs
        if len(subs) == 1:
            return [subs[0].client]
        return list(dict.fromkeys(sub.client for sub in subs))

    def public_consumers(self) -> list[str]:
        """The consumers' names but those made for other streams' mirrors and sources (``direct``),
        which nats-server neither lists nor counts."""
        return sorted(n for n, c in self.consumers.items() if not c.config.get("direct"))

    def _feed(self) -> None:
        """Start the mirror and sources of the config, stop those it no longer has."""
        wanted = ([(self.config["mirror"], True)] if self.config.get("mirror") else []) + [
            (source, False) for source in self.config.get("sources") or []]
        if not wanted and not self.feeds:
            return
        from .sourcing import Feed, last_sourced

        keep = {index_name(cfg): (cfg, mirror) for cfg, mirror in wanted}
        for key in list(self.feeds):
            if key not in keep or self.feeds[key].config != keep[key][0]:
                self.feeds.pop(key).stop()
        starts: dict[str, tuple[int, str]] | None = None
        for key, (cfg, mirror) in keep.items():
            if key in self.feeds:
                continue
            feed = self.feeds[key] = Feed(self, cfg, mirror)
            if mirror:
                feed.start(self.store.state().last_seq)
            else:
                if starts is None:
                    starts = last_sourced(self)
                feed.start(*starts.get(key, starts.get(cfg["name"], (0, ""))))

    def save_sources(self) -> None:
        """Keep where each source is with what is being staged (see ``StreamStore.save_sources``)."""
        if hasattr(self.store, "save_sources"):
            self.store.save_sources({key: [feed.sseq, feed.ident] for key, feed in self.feeds.items()
                                     if not feed.mirror})

    def log_refused_schedule(self, subject: str, error: Exception) -> None:
        log.warning("JetStream: stream %r: the schedule on %r could not publish: %s", self.name, subject, error)

    def _load_ttls(self) -> None:
        """The expiries of stored messages with a ``Nats-TTL`` (after a restart)."""
        state = self.store.state()
        msg = self.store.next_matching(state.first_seq, ">") if state.msgs else None
        while msg is not None:
            ttl = parse_ttl(parse_headers(msg.hdrs).get(MSG_TTL, "")) if msg.hdrs else 0
            if ttl and ttl > 0:
                heapq.heappush(self.ttls, (msg.ts + ttl * NS, msg.seq))
            msg = self.store.next_matching(msg.seq + 1, ">")

    def close(self) -> None:
        for feed in self.feeds.values():
            feed.stop()
        self.feeds.clear()
        if self.batches is not None:
            self.batches.close()
        if self.scheduler is not None:
            self.scheduler.close()
            self.scheduler = None
        for consumer in self.consumers.values():
            consumer.stop()
        for sub in self.subs:
            self.client.unsubscribe(sub)
        self.subs = []
        if self._age_timer is not None:
            self._age_timer.cancel()
            self._age_timer = None

    def _direct_get(self, subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
        self.owner.direct_get(self, subject, reply, payload)

    # -- publishing -------------------------------------------------------------------------

    def _received(self, subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
        if headers and b"Nats-Batch-Id" in headers:
            hdrs = parse_headers(headers)
            if hdrs.get("Nats-Batch-Id"):
                if self.batches is None:
                    from .batches import Batches

                    self.batches = Batches(self)
                self.batches.received(subject.decode(), headers, payload, reply, hdrs)
                return
        ack = bool(reply) and not self.config.get("no_ack")
        sender = self.client.sender
        trace = sender.trace if sender is not None else None
        point: Callable[[str, bool], bool] | None = None
        if trace is not None:
            if headers and not trace.only and b"Nats-Trace-Dest:" in headers:
                # stored with tracing off, so that its deliveries to consumers are not traced again
                headers = _disable_trace_dest(headers)
            seen: list[tuple[str, bool]] = []

            def point(stored_subject: str, no_interest: bool) -> bool:
                seen.append((stored_subject, no_interest))
                return trace.only
        try:
            seq, duplicate = self.process(subject.decode(), headers, payload, trace_point=point)
        except ApiError as exc:
            if trace is not None:  # with the subject if it got as far as nats-server's updateJetStreamEvent
                trace.stored(self.name, seen[0][0].encode() if seen else b"", exc.description)
            if ack:
                assert reply is not None
                body = {"error": exc.json(), "stream": self.name, "seq": 0}
                self.client.publish(reply, json.dumps(body, separators=(",", ":")).encode())
            return
        if trace is not None:
            if trace.only:  # checked, not stored, not acknowledged (nats-server's trace-only)
                trace.stored(self.name, seen[0][0].encode(), None, seen[0][1])
                return
            if duplicate:
                trace.stored(self.name, b"", "msgid is duplicate")
            else:
                self._traced.append((trace, trace.hold(), seen[0][0].encode(), seen[0][1]))
        response = self._pub_ack_head + str(seq).encode() + (b',"duplicate": true}' if duplicate else b"}")
        if ack:
            assert reply is not None
            if self._durable(seq):
                self.client.publish(reply, response)
            else:
                self._acks.append((reply, response))
        if not duplicate or not self._durable(seq):
            self.request_commit()

    def _durable(self, seq: int) -> bool:
        """Whether ``seq`` may be acknowledged now: its commit is done (a duplicate of a message
        whose commit is still running waits for it), or the stream acknowledges before it
        (``persist_mode: async``, the stream's choice)."""
        return seq <= self.committed_seq or self.config.get("persist_mode") == "async"

    def store_local(self, subject: str, payload: bytes, headers: bytes | None,
                    done: Callable[[int, str | None], None]) -> None:
        """Publish into this stream from this process: the in-process API for plugins.

        The message is checked and stored as one published on ``subject`` with a reply, but
        without routing it and without the PubAck's JSON. ``done(seq, None)`` is called once it is
        durable (a duplicate's once its original is; a ``persist_mode: async`` stream's at once), ``done(0,
        error)`` if it is refused (the API error's description) or its commit failed. Headers are
        checked as a published message's, except atomic batches, which need the API's replies.
        The caller makes sure ``subject`` is one of the stream's subjects. Nobody else sees the
        publish: a NATS subscriber of the stream's subjects does not get it.
        """
        try:
            seq, duplicate = self.process(subject, headers, payload)
        except ApiError as exc:
            done(0, exc.description)
            return
        if self._durable(seq):
            done(seq, None)
        else:
            self._told.append((done, seq))
        if not duplicate or not self._durable(seq):
            self.request_commit()

    def pub_ack(self, seq: int, extra: str = "") -> bytes:
        """The PubAck of ``seq`` (``extra``: more JSON fields, starting with a comma)."""
        return self._pub_ack_head + str(seq).encode() + extra.encode() + b"}"

    def ack_after_commit(self, reply: bytes, response: bytes) -> None:
        """Send ``response`` to ``reply`` once the next commit is durable."""
        self._acks.append((reply, response))

    def request_commit(self) -> None:
        """Commit what is staged at the end of this loop pass (one commit for all its publishes)."""
        if not self._commit_scheduled:
            self._commit_scheduled = True
            self.owner.server.loop.call_soon(self._commit)

    def _commit(self) -> None:
        """One commit for the publishes of this loop pass: their acks leave, and consumers see
        their messages, once it is durable."""
        self._commit_scheduled = False
        acks, self._acks = self._acks, []
        traced, self._traced = self._traced, []
        told, self._told = self._told, []
        fresh, self._fresh = self._fresh, set()
        upto = self.next_seq - 1
        self.store.commit().add_done_callback(
            lambda done: self._committed(acks, upto, done, traced, told, fresh))

    def _committed(self, acks: list[tuple[bytes, bytes]], upto: int, done: asyncio.Future[None],
                   traced: list[tuple[Any, Callable[[], None], bytes, bool]],
                   told: list[tuple[Callable[[int, str | None], None], int]], fresh: set[str]) -> None:
        error = done.exception()
        for trace, release, subject, no_interest in traced:
            trace.stored(self.name, subject, str(error) if error is not None else None, no_interest)
            release()
        if error is None and upto > self.committed_seq:
            self.committed_seq = upto
            if len(self.consumers) <= len(fresh):
                for consumer in self.consumers.values():
                    consumer.schedule()
            else:  # only those that take what this commit made durable have something new
                for fresh_subject in fresh:
                    for consumer in self.taking(fresh_subject):
                        consumer.schedule()
        failed = None if error is None else api_error("JSStreamStoreFailedF", err=str(error)).description
        for callback, seq in told:
            try:
                callback(0 if failed else seq, failed)
            except Exception:  # a plugin's mistake stops neither the other callbacks nor the acks
                log.exception("stream %s: an in-process publisher's callback failed", self.name)
        for reply, response in acks:
            if error is not None:
                body = {"error": api_error("JSStreamStoreFailedF", err=str(error)).json(),
                        "stream": self.name, "seq": 0}
                response = json.dumps(body, separators=(",", ":")).encode()
            self.client.publish(reply, response)

    def process(self, subject: str, headers: bytes | None, payload: bytes, *, checked: bool = False,
                internal: bool = False, at_seq: int | None = None, ts: int | None = None,
                trace_point: Callable[[str, bool], bool] | None = None) -> tuple[int, bool]:
        """Check and stage one published message: ``(seq, duplicate)`` or an :class:`ApiError`.

        The checks run in nats-server's order (a duplicate is acknowledged as such only once
        the expected-* headers have passed). ``checked``: a message of an atomic batch, whose
        checks all ran before any of the batch was staged (:mod:`.batches`). ``internal``: a
        message a schedule produced (:mod:`.schedules`) or a mirror or source brought
        (:mod:`.sourcing`), exempt from the publish-side checks of schedules and roll-ups.
        ``at_seq`` and ``ts``: a mirror's message keeps its origin's sequence and time.
        ``trace_point(subject, no_interest)``: a traced message has passed the checks that
        come before storing (nats-server's ``updateJetStreamEvent``); True stops there, with
        nothing staged (trace only), and ``(0, False)`` is returned.
        """
        cfg = self.config
        if self.transform is not None:
            mapped = self.transform.apply(subject.encode())
            if mapped is not None:
                subject = mapped.decode()
        if cfg["sealed"] and not checked:
            raise api_error("JSStreamSealedErr")
        # every header a stream acts on is a Nats-* one, looked up as written (as nats-server):
        # a block without one (an MQTT device's QoS, a user's own) needs no parsing
        hdrs = parse_headers(headers) if headers and b"Nats-" in headers else {}
        now = ts or time.time_ns()
        if at_seq is not None and at_seq > self.next_seq:
            self.skip_to(at_seq - 1)
        last_seq = self.next_seq - 1
        msg_id = ""
        rollup = ""
        ttl: int | None = 0
        if hdrs and checked:
            ttl = parse_ttl(hdrs[MSG_TTL]) if hdrs.get(MSG_TTL) else 0
            msg_id, rollup = hdrs.get(MSG_ID, ""), hdrs.get(ROLLUP, "").lower()
        elif hdrs:
            expected = hdrs.get(EXPECTED_STREAM)
            if expected and expected != self.name:
                raise api_error("JSStreamNotMatchErr")
            ttl_text = hdrs.get(MSG_TTL)
            ttl = parse_ttl(ttl_text) if ttl_text else 0
            if ttl and ttl is not None and not cfg.get("allow_msg_ttl"):
                raise api_error("JSMessageTTLDisabledErr")
            if EXPECTED_LAST_SUBJ_SEQ in hdrs:
                target = hdrs.get(EXPECTED_LAST_SUBJ_SEQ_SUBJ) or subject
                wanted = _uint(hdrs[EXPECTED_LAST_SUBJ_SEQ])
                found = self.store.last_matching(target)
                last = found.seq if found is not None else 0
                if wanted != last:
                    raise api_error("JSStreamWrongLastSequenceErrF", seq=last)
            elif hdrs.get(EXPECTED_LAST_SUBJ_SEQ_SUBJ):
                raise api_error("JSStreamExpectedLastSeqPerSubjectInvalid")
            if EXPECTED_LAST_SEQ in hdrs and _uint(hdrs[EXPECTED_LAST_SEQ]) != last_seq:
                raise api_error("JSStreamWrongLastSequenceErrF", seq=last_seq)
            msg_id = hdrs.get(MSG_ID, "")
            if msg_id:
                self._expire_dedup(now)
                seen = self.dedup.get(msg_id)
                if seen is not None:
                    return seen[0], True
            if EXPECTED_LAST_MSG_ID in hdrs and hdrs[EXPECTED_LAST_MSG_ID] != self.last_msg_id:
                raise api_error("JSStreamWrongLastMsgIDErrF", id=self.last_msg_id)
            rollup = hdrs.get(ROLLUP, "").lower()
            if rollup and not internal:
                if not cfg["allow_rollup_hdrs"] or cfg["deny_purge"]:
                    raise api_error("JSStreamRollupFailedF", err="rollup not permitted")
                if rollup not in ("sub", "all"):
                    raise api_error("JSStreamRollupFailedF", err=f'rollup value invalid: "{rollup}"')
            if headers and b"Nats-Schedule" in headers and not internal:
                from .schedules import check_publish

                headers = check_publish(self, subject, hdrs, headers)
                rollup = parse_headers(headers).get(ROLLUP, "").lower()
        hdr_bytes = headers or b""
        if not checked:
            self.check_size(hdr_bytes, payload)
            self.owner.check_server_usage(cfg["storage"])
        seq = self.next_seq
        wanted = self.wants(subject)
        if trace_point is not None and trace_point(subject, not wanted):
            return 0, False
        if not wanted:
            # nobody would ever consume it: not stored, but the sequence is used and acknowledged
            self.store.stage([Skip(seq, now)])
            self.next_seq += 1
            self._remember(msg_id, seq, now)
            if rollup:
                self._rollup(subject, rollup, keep_new=False, seq=seq)
            return seq, False
        if not checked:
            self.owner.check_account_usage(self.account, cfg["storage"], subject, hdr_bytes, payload)
        if ttl is None:
            raise api_error("JSMessageTTLInvalidErr")
        marker_ttl = cfg.get("subject_delete_marker_ttl", 0) // NS
        if ttl > 0 and marker_ttl and cfg["max_msgs_per_subject"] != 1 and ttl < marker_ttl:
            ttl = marker_ttl  # a message outlives its subject's delete marker: raised, as nats-server
            hdr_bytes = _set_header(hdr_bytes, MSG_TTL, str(ttl))
        msg = StoredMsg(seq, subject, hdr_bytes, payload, now)
        if cfg["discard"] == "new" and not checked:
            self._check_discard_new(subject, msg.size(cfg["storage"]), rollup)
        previous = self.store.subject_info(subject) if self.republish is not None else None
        self.store.stage([Append(msg)])
        self._fresh.add(subject)
        self.next_seq += 1
        self._remember(msg_id, seq, now)
        if rollup:
            self._rollup(subject, rollup, keep_new=True, seq=seq)
        self._enforce_limits(subject)
        if self.scheduler is not None and (hdrs or subject in self.scheduler.armed):
            self.scheduler.stored(msg, hdrs, now)
        if self.republish is not None:
            self._republish(msg, previous.last if previous is not None else 0)
        if ttl and ttl > 0:
            heapq.heappush(self.ttls, (now + ttl * NS, seq))
            self._schedule_age()
        elif cfg["max_age"] > 0 and self._age_timer is None:
            self._schedule_age()  # the first message of an empty stream starts the clock
        self.owner.stored(self, msg)
        return seq, False

    def skip_to(self, seq: int) -> None:
        """Use up the sequences up to ``seq`` without messages (a mirror following its origin)."""
        if seq < self.next_seq:
            return
        if self.store.state().msgs == 0:
            self.store.stage([Compact(seq + 1)])
        else:
            self.store.stage([Skip(seq)])
        self.next_seq = seq + 1

    def check_size(self, hdrs: bytes, payload: bytes) -> None:
        """``max_msg_size`` (headers and payload) and the 64 KiB bound of a header block."""
        max_size = self.config["max_msg_size"]
        if max_size >= 0 and len(hdrs) + len(payload) > max_size:
            raise api_error("JSStreamMessageExceedsMaximumErr")
        if len(hdrs) > 0xFFFF:
            raise api_error("JSStreamHeaderExceedsMaximumErr")

    def _republish(self, msg: StoredMsg, last_seq: int) -> None:
        """``republish``: the stored message again on the mapped subject, with where it is stored."""
        assert self.republish is not None
        target = self.republish.apply(msg.subject.encode())
        if target is None:
            return
        extra = (f"Nats-Stream: {self.name}\r\nNats-Subject: {msg.subject}\r\nNats-Sequence: {msg.seq}\r\n"
                 f"Nats-Time-Stamp: {rfc3339(msg.ts)}\r\nNats-Last-Sequence: {last_seq}\r\n")
        headers_only = bool(self.config["republish"].get("headers_only"))
        if headers_only:
            extra += f"Nats-Msg-Size: {len(msg.data)}\r\n"
        head = msg.hdrs[:-2] if msg.hdrs.endswith(b"\r\n\r\n") else b"NATS/1.0\r\n"
        self.client.publish(target, b"" if headers_only else msg.data, headers=head + extra.encode() + b"\r\n")

    def wants(self, subject: str) -> bool:
        """Whether a message on ``subject`` would be kept (:class:`natsd.plugin.contracts.LocalStream`)."""
        return self.config["retention"] != "interest" or self.has_interest(subject)

    def has_interest(self, subject: str) -> bool:
        """Whether some consumer of this interest stream would take ``subject``."""
        return bool(self.takers.match(subject.encode()).psubs)

    def drop_unwanted(self) -> None:
        """An interest stream keeps only what some consumer still has to take or acknowledge."""
        state = self.store.state()
        unwanted = []
        msg = self.store.next_matching(state.first_seq, ">") if state.msgs else None
        while msg is not None:
            if not any(msg.seq >= c.cursor or msg.seq in c.pending for c in self.taking(msg.subject)):
                unwanted.append(msg.seq)
            msg = self.store.next_matching(msg.seq + 1, ">")
        if unwanted:
            self.store.stage([Remove(tuple(unwanted))])

    def acked(self, consumer: Any, seqs: list[int]) -> None:
        """A consumer acknowledged ``seqs``: workqueue and interest streams let them go once every
        consumer that would take them has (one consumer per subject on a workqueue)."""
        retention = self.config["retention"]
        if retention == "limits":
            return
        consumers = self.consumers
        alone = not consumers or (len(consumers) == 1 and consumers.get(consumer.name) is consumer)
        if retention == "workqueue" or alone:
            done = seqs  # nobody else to wait for (removing a message already gone does nothing)
        else:
            done = []
            for seq in seqs:
                msg = self.store.load(seq)
                if msg is not None and all(seq <= c.floor_stream and seq not in c.pending
                                           for c in self.taking(msg.subject) if c is not consumer):
                    done.append(seq)
        if done:
            self.store.stage([Remove(tuple(done))])
            self.store.commit()

    def _remember(self, msg_id: str, seq: int, now: int) -> None:
        self.last_msg_id = msg_id
        if msg_id and self.config["duplicate_window"] > 0:
            self.dedup[msg_id] = (seq, now)

    def _rollup(self, subject: str, rollup: str, *, keep_new: bool, seq: int) -> None:
        """``Nats-Rollup``: only the new message of its subject (``sub``) or of the stream stays."""
        store = self.store
        if rollup == "all":
            store.stage([Compact(seq if keep_new else seq + 1)])
            return
        # the subject is a filter, as nats-server's purge: a roll-up published on a wildcard
        # subject ("$KV.b.hello.*", a KV purge of many keys) rolls up every subject it matches
        matching = [n for n, _ in store.subjects(subject)] if any(c in subject for c in "*>") else [subject]
        older = tuple(s for name in matching for s in _subject_seqs(store, name) if s != seq or not keep_new)
        if older:
            store.stage([Remove(older)])

    def _check_discard_new(self, subject: str, size: int, rollup: str) -> None:
        """``discard: new``: refuse what does not fit (nats-server's store checks, in order)."""
        cfg, store = self.config, self.store
        state = store.state()
        per = cfg["max_msgs_per_subject"]
        info = store.subject_info(subject) if per > 0 else None
        at_limit = info is not None and info.count >= per
        if at_limit and cfg.get("discard_new_per_subject") and not rollup:
            raise api_error("JSStreamStoreFailedF", err="maximum messages per subject exceeded")
        if cfg["max_msgs"] > 0 and state.msgs >= cfg["max_msgs"] and not at_limit:
            raise api_error("JSStreamStoreFailedF", err="maximum messages exceeded")
        if cfg["max_bytes"] > 0 and state.bytes + size > cfg["max_bytes"]:
            oldest = store.load(info.first) if at_limit and info is not None else None
            if oldest is None or oldest.size(cfg["storage"]) < size:
                raise api_error("JSStreamStoreFailedF", err="maximum bytes exceeded")

    def _enforce_limits(self, subject: str) -> None:
        """Stage the removals the limits call for once a message of ``subject`` is appended: the
        per-subject limit always, the stream's message and byte limits with ``discard: old``."""
        cfg, store = self.config, self.store
        per = cfg["max_msgs_per_subject"]
        info = store.subject_info(subject) if per > 0 else None
        if info is not None and info.count > per:
            store.stage([Remove(tuple(_subject_seqs(store, subject)[:info.count - per]))])
        if cfg["discard"] != "old":
            return  # discard new refused what would not fit, before it was appended
        state = store.state()
        if cfg["max_msgs"] > 0 and state.msgs > cfg["max_msgs"]:
            store.stage([Remove(tuple(self._oldest(state.msgs - cfg["max_msgs"])))])
        excess = store.state().bytes - cfg["max_bytes"] if cfg["max_bytes"] > 0 else 0
        if excess > 0:
            removals = []
            for old in self._oldest(store.state().msgs):
                msg = store.load(old)
                if msg is not None:
                    removals.append(old)
                    excess -= msg.size(cfg["storage"])
                if excess <= 0:
                    break
            store.stage([Remove(tuple(removals))])

    def _oldest(self, count: int) -> list[int]:
        out: list[int] = []
        seq = self.store.state().first_seq
        last = self.store.state().last_seq
        while len(out) < count and seq <= last:
            if self.store.load(seq) is not None:
                out.append(seq)
            seq += 1
        return out

    def _expire_dedup(self, now: int) -> None:
        window = self.config["duplicate_window"]
        while self.dedup:
            msg_id, (_, ts) = next(iter(self.dedup.items()))
            if now - ts < window:
                break
            del self.dedup[msg_id]

    # -- max_age ----------------------------------------------------------------------------------

    def _schedule_age(self) -> None:
        """Arm the timer for the next expiry: the oldest message past ``max_age``, or a ``Nats-TTL``."""
        if self._age_timer is not None:
            self._age_timer.cancel()
            self._age_timer = None
        deadlines = []
        max_age = self.config["max_age"]
        if max_age > 0 and self.store.state().msgs:
            first = self.store.load(self.store.state().first_seq)
            if first is not None:
                deadlines.append(first.ts + max_age)
        if self.ttls:
            deadlines.append(self.ttls[0][0])
        if not deadlines:
            return
        delay = max(0.0, (min(deadlines) - time.time_ns()) / NS)
        self._age_timer = self.owner.server.loop.call_later(max(delay, 0.05), self._expire)

    def _expire(self) -> None:
        self._age_timer = None
        now = time.time_ns()
        expired: list[int] = []
        markers: list[str] = []
        max_age = self.config["max_age"]
        marker_ttl = self.config.get("subject_delete_marker_ttl", 0)
        if max_age > 0:
            cutoff = now - max_age
            state = self.store.state()
            seq = state.first_seq
            while seq <= state.last_seq:
                msg = self.store.load(seq)
                if msg is not None:
                    if msg.ts > cutoff:
                        break
                    hdrs = parse_headers(msg.hdrs) if msg.hdrs else {}
                    if parse_ttl(hdrs.get(MSG_TTL, "")) != -1:  # "never" outlives max_age
                        expired.append(seq)
                        info = self.store.subject_info(msg.subject)
                        if marker_ttl and MARKER_REASON not in hdrs and info is not None and info.last == seq:
                            markers.append(msg.subject)  # the subject's last message: a marker stays
                seq += 1
        while self.ttls and self.ttls[0][0] <= now:
            seq = heapq.heappop(self.ttls)[1]
            expired.append(seq)
            msg = self.store.load(seq) if marker_ttl else None
            if msg is not None and msg.subject not in markers and MARKER_REASON.encode() not in msg.hdrs:
                info = self.store.subject_info(msg.subject)
                if info is not None and info.last == seq:
                    markers.append(msg.subject)  # a message's own TTL leaves a marker as max_age does
        if expired:
            self.store.stage([Remove(tuple(sorted(set(expired))))])
        for subject in markers:
            headers = (f"NATS/1.0\r\n{MARKER_REASON}: MaxAge\r\n{MSG_TTL}: {go_duration(marker_ttl)}\r\n"
                       f"{ROLLUP}: sub\r\n\r\n").encode()
            with contextlib.suppress(ApiError):
                self.process(subject, headers, b"")
        if expired or markers:
            self.request_commit()  # consumers see the markers once they are durable
        self._schedule_age()

    # -- what the API shows -----------------------------------------------------------------------

    def info(self, subjects_filter: str | None = None, deleted_details: bool = False, *,
             cluster: bool = False, dynamic: bool = True) -> dict[str, Any]:
        """STREAM.INFO's object; ``cluster`` adds nats-server's single-server ``cluster`` block
        (INFO only), ``dynamic`` the server's version in the config's metadata (not in lists)."""
        st = self.store.state()
        first = self.store.load(st.first_seq) if st.msgs else None
        state: dict[str, Any] = {
            "messages": st.msgs, "bytes": st.bytes, "first_seq": st.first_seq,
            "first_ts": rfc3339(first.ts if first else 0), "last_seq": st.last_seq,
            "last_ts": rfc3339(st.last_ts),
        }
        subjects = dict(self.store.subjects(">"))
        if subjects:
            state["num_subjects"] = len(subjects)
        if subjects_filter:
            chosen = {s: i.count for s, i in sorted(self.store.subjects(subjects_filter))}
            if chosen:
                state["subjects"] = chosen
        if st.deleted:
            state["num_deleted"] = st.deleted
            if deleted_details:
                state["deleted"] = [s for s in range(st.first_seq, st.last_seq + 1) if self.store.load(s) is None]
        state["consumer_count"] = len(self.public_consumers())
        out: dict[str, Any] = {"config": self.owner.shown_config(self.config, dynamic), "created": self.created,
                               "state": state}
        if self.owner.domain:
            out["domain"] = self.owner.domain
        if cluster:
            out["cluster"] = {"leader": self.owner.server.name}
        mirror = self.feeds.get(index_name(self.config["mirror"])) if self.config.get("mirror") else None
        if mirror is not None:
            out["mirror"] = mirror.info()
        sources = [f.info() for f in self.feeds.values() if not f.mirror]
        if sources:
            out["sources"] = sources
        out["ts"] = rfc3339(time.time_ns())
        return out

    def stored_json(self, msg: StoredMsg, no_headers: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"subject": msg.subject, "seq": msg.seq}
        if msg.hdrs and not no_headers:
            out["hdrs"] = base64.b64encode(msg.hdrs).decode()
        if msg.data:
            out["data"] = base64.b64encode(msg.data).decode()
        out["time"] = rfc3339(msg.ts)
        return out


def _subject_seqs(store: StreamStore, subject: str) -> list[int]:
    """The stored sequences of ``subject`` (a literal), oldest first."""
    index = getattr(store, "index", None)
    if index is not None:
        return index.seqs(subject)
    seqs = []
    msg = store.next_matching(0, subject)
    while msg is not None:
        seqs.append(msg.seq)
        msg = store.next_matching(msg.seq + 1, subject)
    return seqs


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String()`` for whole seconds and above (``5m0s``, ``1h0m0s``, ``1.5s``)."""
    seconds, frac = divmod(ns, NS)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    sec_text = f"{secs}" + (f".{frac:09d}".rstrip("0") if frac else "") + "s"
    if hours:
        return f"{hours}h{minutes}m{sec_text}"
    if minutes:
        return f"{minutes}m{sec_text}"
    return sec_text


def _set_header(block: bytes, name: str, value: str) -> bytes:
    """``block`` with ``name`` removed and ``name: value`` appended (nats-server's genHeader)."""
    lines = [line for line in block.split(b"\r\n")[1:] if line and
             line.split(b":", 1)[0].strip().lower() != name.lower().encode()]
    head = block.split(b"\r\n", 1)[0] if block else b"NATS/1.0"
    return b"\r\n".join([head, *lines, f"{name}: {value}".encode()]) + b"\r\n\r\n"


def parse_ttl(text: str) -> int | None:
    """``Nats-TTL`` in seconds (-1: ``never``, 0: none) or ``None`` when invalid, as nats-server parses it."""
    text = text.strip()
    if text.lower() == "never":
        return -1
    if text.isdigit():
        return int(text) or None  # nats-server refuses "0"
    total = 0.0
    rest = text
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.fullmatch(r"((\d+(\.\d+)?)(ns|us|µs|ms|s|m|h))+", rest)
    if not parts:
        return None
    for number, _, unit in re.findall(r"(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)", rest):
        total += float(number) * units[unit]
    return int(total) if total >= 1 else None


def _uint(text: str) -> int | None:
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def purge_ops(store: StreamStore, request: Mapping[str, Any]) -> tuple[list[Op], int]:
    """The operations of a STREAM.PURGE request, and how many messages they remove."""
    state = store.state()
    subject = request.get("filter") or ""
    seq = int(request.get("seq") or 0)
    keep = int(request.get("keep") or 0)
    if not subject or subject == ">":
        if seq:
            count = sum(1 for s in range(state.first_seq, min(seq, state.last_seq + 1)) if store.load(s))
            return [Compact(seq)], count
        if keep:
            if keep >= state.msgs:
                return [], 0
            victims: list[int] = []
            s = state.first_seq
            while len(victims) < state.msgs - keep:
                if store.load(s) is not None:
                    victims.append(s)
                s += 1
            return [Compact(victims[-1] + 1)], len(victims)
        return [Compact(state.last_seq + 1)], state.msgs
    seqs: list[int] = []
    for subj, _ in list(store.subjects(subject)):
        seqs.extend(_subject_seqs(store, subj))
    seqs.sort()
    if seq:
        seqs = [s for s in seqs if s < seq]
    elif keep:
        seqs = seqs[:-keep] if keep < len(seqs) else []
    return ([Remove(tuple(seqs))] if seqs else []), len(seqs)


Responder = Callable[[dict[str, Any]], None]


def _disable_trace_dest(headers: bytes) -> bytes:
    """``Nats-Trace-Dest`` set to ``trace disabled`` in place, as nats-server stores a traced
    message (its consumers' deliveries are not traced again)."""
    lines = headers.split(b"\r\n")
    for i, line in enumerate(lines):
        if line.startswith(b"Nats-Trace-Dest:"):
            lines[i] = b"Nats-Trace-Dest: trace disabled"
    return b"\r\n".join(lines)
