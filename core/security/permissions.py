"""Publish and subscribe permissions, as nats-server enforces them.

:class:`Permissions` is what a user may do, read from a config file
(:meth:`Permissions.from_config`) or from JWT user claims
(:meth:`Permissions.from_jwt`). A connection gets a :class:`PermissionChecker`,
which answers ``can_publish`` / ``can_subscribe`` from a small per-connection
cache (one dict lookup for a subject seen before), filters deliveries that a
subscribe deny clause forbids (``deny_delivery``) and tracks the reply
subjects a client may answer when ``allow_responses`` is set
(``note_request``). The ``-ERR`` texts are :func:`pub_violation` and
:func:`sub_violation`.

The rules follow nats-server 2.15.1 (``client.go``: ``setPermissions``,
``canSubscribe``, ``pubAllowedFullCheck``, ``checkDenySub``; ``opts.go``:
``parseUserPermissions``, ``checkPermSubjectArray``) and were checked against
the real binary:

* Deny wins over allow. No allow list means everything is allowed.
* Entries are matched with a sublist, treating the wildcard tokens of the
  subject being checked as ordinary tokens that only wildcard entries match:
  ``SUB foo.*`` needs an allow entry such as ``foo.*``, ``foo.>``, ``*.*`` or
  ``>`` (``foo.bar`` is not enough), and ``foo.*`` also admits ``SUB foo.>``
  (nats-server does the same).
* A subscribe deny entry only refuses subscriptions it matches that way, so
  with ``deny: foo.bar`` a ``SUB foo.*`` is accepted; messages on ``foo.bar``
  are then dropped at delivery (:meth:`PermissionChecker.deny_delivery`).
  Filtering starts once a wildcard or queue subscription overlaps a deny
  entry; then a plain deny entry drops its messages for every subscription,
  and a deny entry naming a queue drops them for that queue's members.
* Subscribe entries may name a queue group, ``"subject queue"`` (the queue
  may be a wildcard pattern such as ``v1.*`` but must be a valid subject;
  publish entries name no queue; nats-server 2.9.10 accepted both). For a
  queue subscription, if matching allow entries name queues, the queue must
  match one of them (even when a plain entry matches too); a matching plain
  deny entry refuses it, and so does a matching deny entry naming its queue
  (nats-server 2.9.10 let the queue entries decide alone). Queue entries
  never make a plain subscription allowed.
* The queue group ``_sys_`` is refused to every client, with or without
  permissions.
* ``allow_responses``: each message delivered with a reply subject lets the
  receiver publish to that reply up to ``max`` times (default 1) within
  ``expires`` (default 2 minutes; 0 means the default, a negative value no
  limit), even where its publish permissions do not allow it. Delivering
  another request with the same reply starts the count again. Setting
  ``allow_responses`` without a publish allow list makes the allow list
  empty: only replies may be published.
* A subject with an empty token (``foo..bar``, ``foo.``) matches no entry, so
  an allow list refuses it and a deny list does not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from natsd.config import config_error
from natsd.config.conf import ConfError, ConfList, parse_duration
from natsd.routing.subjects import has_wildcard, subject_is_subset, subjects_collide, valid_subject
from natsd.routing.sublist import EMPTY_RESULT, Sublist, SublistResult, Subscription
from natsd.wire.errors import go_quote, pub_violation, reply_violation, sub_violation

__all__ = [
    "DEFAULT_RESPONSE_EXPIRES",
    "DEFAULT_RESPONSE_MAX_MSGS",
    "PermissionChecker",
    "Permissions",
    "ResponsePermission",
    "SYS_QUEUE",
    "go_quote",
    "pub_violation",
    "reply_violation",
    "sub_violation",
]

DEFAULT_RESPONSE_MAX_MSGS = 1
"""Replies allowed per request when ``allow_responses`` does not say (nats-server's default)."""
DEFAULT_RESPONSE_EXPIRES = 120.0
"""Seconds a reply stays allowed when ``allow_responses`` does not say (nats-server: 2m)."""

SYS_QUEUE = b"_sys_"
"""Queue group reserved by nats-server; a client subscribing with it gets a violation."""

PERM_CACHE_MAX = 128
"""Cached publish (and subscribe) answers per connection (nats-server: maxPermCacheSize)."""
DENY_CACHE_MAX = 256
"""Cached delivery-filter answers per connection (nats-server: maxDenyPermCacheSize)."""
REPLY_PRUNE_AT = 4096
"""Tracked reply subjects before used-up and expired ones are dropped (nats-server: replyPermLimit)."""
REPLY_HARD_MAX = 65536
"""Tracked reply subjects kept at most; beyond, the oldest are forgotten (nats-server has no cap)."""


# -- the -ERR texts ---------------------------------------------------------------

# -- what a user may do -------------------------------------------------------------


@dataclass(frozen=True)
class ResponsePermission:
    """``allow_responses``: replies allowed per received request, and for how long.

    ``max_msgs`` and ``expires`` (seconds) of 0 or less mean no limit; the
    parsers turn a configured 0 into the defaults, as nats-server does.
    """

    max_msgs: int = DEFAULT_RESPONSE_MAX_MSGS
    expires: float = DEFAULT_RESPONSE_EXPIRES


def _tuple(value: Iterable[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class Permissions:
    """Publish and subscribe permissions of one user.

    ``publish_allow`` / ``subscribe_allow`` of ``None`` allow everything (the
    deny lists still apply); an empty ``publish_allow`` allows nothing. An
    empty ``subscribe_allow`` is the same as ``None``, as in nats-server.
    Subscribe entries may be ``"subject queue"``. When ``allow_responses`` is
    set and ``publish_allow`` is ``None``, ``publish_allow`` becomes empty.
    """

    publish_allow: tuple[str, ...] | None = None
    publish_deny: tuple[str, ...] = ()
    subscribe_allow: tuple[str, ...] | None = None
    subscribe_deny: tuple[str, ...] = ()
    allow_responses: ResponsePermission | None = None
    _compiled: Any = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        pub_allow = _tuple(self.publish_allow)
        if self.allow_responses is not None and pub_allow is None:
            pub_allow = ()  # nats-server: "We turn off the blanket allow statement."
        sub_allow = _tuple(self.subscribe_allow) or None
        set_ = object.__setattr__
        set_(self, "publish_allow", pub_allow)
        set_(self, "publish_deny", _tuple(self.publish_deny) or ())
        set_(self, "subscribe_allow", sub_allow)
        set_(self, "subscribe_deny", _tuple(self.subscribe_deny) or ())

    @property
    def unrestricted(self) -> bool:
        """True if these permissions allow everything (no checker needed)."""
        return (self.publish_allow is None and not self.publish_deny and self.subscribe_allow is None
                and not self.subscribe_deny)

    def compiled(self) -> _Compiled:
        """The entries as sublists, built once and shared by every connection of the user."""
        c = self._compiled
        if c is None:
            c = _Compiled(self)
            object.__setattr__(self, "_compiled", c)
        return c

    def checker(self, *, clock: Callable[[], float] = time.monotonic) -> PermissionChecker:
        """A new :class:`PermissionChecker` for one connection."""
        return PermissionChecker(self, clock=clock)

    # -- config file ------------------------------------------------------------

    @classmethod
    def from_config(cls, value: Any, *, block: Mapping[str, Any] | None = None,
                    key: str = "permissions") -> Permissions:
        """Permissions from a config ``permissions { ... }`` block.

        ``value`` is the block's value and ``block[key]`` where it was found
        (for the error position). Accepted, keys case-insensitive::

            publish | pub | import:   "subj" | ["a", "b"] | { allow: ..., deny: ... }
            subscribe | sub | export: the same; entries may be "subject queue"
            allow_responses | publish_allow_responses: true | false | { max: 5, expires: "1m" }

        (``max`` also as ``max_msgs``/``max_messages``/``max_responses``,
        ``expires`` as ``expiration``/``ttl``, a Go duration string.) Anything
        else raises :class:`~natsd.config.conf.ConfError` naming file, line and key.
        """
        if not isinstance(value, Mapping):
            raise config_error(block, key, f"expected permissions to be a map/struct, got {value!r}")
        used = getattr(value, "variables_used", ())
        pub: _SubjectPerm | None = None
        sub: _SubjectPerm | None = None
        resp: ResponsePermission | None = None
        for k, v in value.items():
            lk = k.lower()
            if lk in ("pub", "publish", "import"):
                pub = _subject_permission(value, k, v, allow_queue=False)
            elif lk in ("sub", "subscribe", "export"):
                sub = _subject_permission(value, k, v, allow_queue=True)
            elif lk in ("allow_responses", "publish_allow_responses"):
                resp = _allow_responses(value, k, v)
            elif k not in used:
                raise config_error(value, k, f"Unknown field {go_quote(k)} parsing permissions")
        return cls(
            publish_allow=pub.allow if pub else None,
            publish_deny=pub.deny if pub else (),
            subscribe_allow=sub.allow if sub else None,
            subscribe_deny=sub.deny if sub else (),
            allow_responses=resp,
        )

    # -- JWT user claims --------------------------------------------------------

    @classmethod
    def from_jwt(cls, claims: Mapping[str, Any]) -> Permissions | None:
        """Permissions from JWT user claims, or ``None`` if they set none.

        ``claims`` is the decoded ``nats`` object of a user JWT (or the whole
        claims, whose ``nats`` member is then used): ``pub`` and ``sub`` are
        ``{"allow": [...], "deny": [...]}``, ``resp`` is ``{"max": n, "ttl":
        nanoseconds}``. As in nats-server, ``pub``/``sub`` only count when one
        of their lists is non-empty, and a ``pub`` with an explicit empty
        ``allow`` next to a non-empty ``deny`` allows nothing. Wrong shapes
        raise ``ValueError``.
        """
        if not isinstance(claims, Mapping):
            raise ValueError(f"JWT permissions must be an object, got {type(claims).__name__}")
        if isinstance(claims.get("nats"), Mapping):  # whole claims: "sub" there is the user's key
            claims = claims["nats"]
        pub_allow, pub_deny = _jwt_lists(claims, "pub")
        sub_allow, sub_deny = _jwt_lists(claims, "sub")
        has_pub = bool(pub_allow or pub_deny)
        has_sub = bool(sub_allow or sub_deny)
        resp: ResponsePermission | None = None
        raw = claims.get("resp")
        if raw is not None:
            if not isinstance(raw, Mapping):
                raise ValueError(f"JWT resp must be an object, got {raw!r}")
            max_msgs = raw.get("max", 0) or 0
            ttl = raw.get("ttl", 0) or 0
            if not _is_int(max_msgs):
                raise ValueError(f"JWT resp.max must be an integer, got {max_msgs!r}")
            if not _is_int(ttl):
                raise ValueError(f"JWT resp.ttl must be an integer (nanoseconds), got {ttl!r}")
            resp = ResponsePermission(
                max_msgs=max_msgs or DEFAULT_RESPONSE_MAX_MSGS,
                expires=ttl / 1e9 if ttl else DEFAULT_RESPONSE_EXPIRES,
            )
        if not (has_pub or has_sub or resp is not None):
            return None
        return cls(
            publish_allow=pub_allow if has_pub else None,
            publish_deny=(pub_deny or ()) if has_pub else (),
            subscribe_allow=sub_allow if has_sub else None,
            subscribe_deny=(sub_deny or ()) if has_sub else (),
            allow_responses=resp,
        )


@dataclass
class _SubjectPerm:
    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] = ()


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _jwt_lists(claims: Mapping[str, Any], key: str) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    perm = claims.get(key)
    if perm is None:
        return None, None
    if not isinstance(perm, Mapping):
        raise ValueError(f"JWT {key} must be an object with allow/deny, got {perm!r}")
    out: list[tuple[str, ...] | None] = []
    for name in ("allow", "deny"):
        items = perm.get(name)
        if items is None:
            out.append(None)
            continue
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, (list, tuple)) or not all(isinstance(s, str) for s in items):
            raise ValueError(f"JWT {key}.{name} must be a list of subjects, got {items!r}")
        out.append(tuple(items))
    return out[0], out[1]


def _nats_valid_subject(s: str) -> bool:
    # nats-server's IsValidSubject: also refuses a form feed inside a token.
    return valid_subject(s.encode()) and "\f" not in s


def _entry_error(s: str, allow_queue: bool) -> str | None:
    """Why nats-server 2.15.1 refuses a permission entry, or None if it is valid.

    An entry is a subject; a subscribe entry may also be a subject and a
    queue group separated by whitespace, both valid subjects (2.9.10 did not
    check the queue, and allowed the pair in publish entries too).
    """
    if _nats_valid_subject(s):
        return None
    parts = s.split()
    if not allow_queue or len(parts) != 2:
        return f"subject {go_quote(s)} is not a valid subject"
    if not _nats_valid_subject(parts[0]):
        return f"subject {go_quote(parts[0])} is not a valid subject"
    if not _nats_valid_subject(parts[1]):
        return f"queue {go_quote(parts[1])} is not a valid queue"
    return None


def _error_at(where: Any, key: str, reason: str, items: Any = None, index: int | None = None) -> ConfError:
    if isinstance(items, ConfList) and index is not None and index < len(items.positions):
        pos = items.positions[index]
        return ConfError(reason, file=pos.file, line=pos.line, key=key)
    return config_error(where, key, reason)


def _subjects(where: Any, key: str, value: Any, allow_queue: bool) -> tuple[str, ...] | None:
    """A subject or list of subjects (with queue groups if ``allow_queue``); ``None`` for an
    empty list (Go's nil slice)."""
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list):
        items = value
    else:
        raise config_error(where, key, "Expected subject permissions to be a subject, or array of "
                           f"subjects, got {value!r}")
    for i, s in enumerate(items):
        if not isinstance(s, str):
            raise _error_at(where, key, f"Subject in permissions array cannot be cast to string: {s!r}",
                            value, i)
        why = _entry_error(s, allow_queue)
        if why is not None:
            raise _error_at(where, key, why, value, i)
    return tuple(items) or None


def _subject_permission(where: Any, key: str, value: Any, allow_queue: bool) -> _SubjectPerm | None:
    if not isinstance(value, Mapping):
        return _SubjectPerm(allow=_subjects(where, key, value, allow_queue))  # old style: allow only
    if not value:
        return None
    used = getattr(value, "variables_used", ())
    perm = _SubjectPerm()
    for k, v in value.items():
        lk = k.lower()
        if lk == "allow":
            perm.allow = _subjects(value, k, v, allow_queue)
        elif lk == "deny":
            perm.deny = _subjects(value, k, v, allow_queue) or ()
        elif k not in used:
            raise config_error(value, k, f"Unknown field name {go_quote(k)} parsing subject permissions, "
                               "only 'allow' or 'deny' are permitted")
    return perm


def _allow_responses(where: Any, key: str, value: Any) -> ResponsePermission | None:
    if isinstance(value, bool):
        return ResponsePermission() if value else None
    if not isinstance(value, Mapping):
        raise config_error(where, key, "error parsing response permissions, expected a boolean or a map")
    used = getattr(value, "variables_used", ())
    max_msgs = DEFAULT_RESPONSE_MAX_MSGS
    expires = DEFAULT_RESPONSE_EXPIRES
    for k, v in value.items():
        lk = k.lower()
        if lk in ("max", "max_msgs", "max_messages", "max_responses"):
            if not _is_int(v):
                raise config_error(value, k, f"expected an integer, got {v!r}")
            if v != 0:  # 0 keeps the default, negative means no limit
                max_msgs = v
        elif lk in ("expires", "expiration", "ttl"):
            if not isinstance(v, str):
                raise config_error(value, k, "error parsing expires, not a duration string")
            try:
                seconds = parse_duration(v)
            except ConfError:
                raise config_error(value, k, f"error parsing expires: invalid duration {go_quote(v)}") from None
            if seconds != 0:
                expires = seconds
        elif k not in used:
            raise config_error(value, k, f"Unknown field {go_quote(k)} parsing permissions")
    return ResponsePermission(max_msgs=max_msgs, expires=expires)


# -- matching ----------------------------------------------------------------------


def _sublist(entries: Iterable[str], *, queues: bool) -> Sublist:
    sl = Sublist()
    for entry in entries:
        queue: bytes | None = None
        if queues:
            parts = entry.split()
            if not parts or len(parts) > 2:
                continue  # nats-server logs "invalid subject-queue" and skips it
            subject = parts[0].encode()
            if len(parts) == 2:
                queue = parts[1].encode()
        else:
            subject = entry.encode()
        tokens = subject.split(b".")
        if not all(tokens) or b">" in tokens[:-1]:
            continue  # nats-server's Insert refuses it and setPermissions ignores the error
        sl.insert(Subscription(None, subject, queue, b""))
    return sl


def _match(sl: Sublist, subject: bytes) -> SublistResult:
    # nats-server's Sublist.Match returns nothing for a subject with an empty token.
    if not subject or subject[0] == 0x2E or subject[-1] == 0x2E or b".." in subject:
        return EMPTY_RESULT
    return sl.match(subject)


def _queue_matches(queue: bytes, groups: tuple[tuple[Subscription, ...], ...]) -> bool:
    for group in groups:
        qname = group[0].queue
        assert qname is not None
        if queue == qname or (has_wildcard(qname) and subject_is_subset(queue, qname)):
            return True
    return False


class _Compiled:
    """Sublists of one :class:`Permissions`, shared by its connections."""

    __slots__ = ("pub_allow", "pub_deny", "sub_allow", "sub_deny", "sub_deny_subjects", "restricts_pub")

    def __init__(self, p: Permissions) -> None:
        self.pub_allow = _sublist(p.publish_allow, queues=False) if p.publish_allow is not None else None
        self.pub_deny = _sublist(p.publish_deny, queues=False) if p.publish_deny else None
        self.sub_allow = _sublist(p.subscribe_allow, queues=True) if p.subscribe_allow else None
        self.sub_deny = _sublist(p.subscribe_deny, queues=True) if p.subscribe_deny else None
        self.sub_deny_subjects = tuple(e.split()[0].encode() for e in p.subscribe_deny if e.split())
        """The subjects of the subscribe deny entries, queue entries' included."""
        self.restricts_pub = self.pub_allow is not None or self.pub_deny is not None


class PermissionChecker:
    """Permission checks for one connection, with per-subject caches.

    ``clock`` (seconds, monotonic) times ``allow_responses`` expiry; tests
    inject their own.
    """

    __slots__ = ("permissions", "filter_delivery", "_c", "_pcache", "_scache", "_dcache", "_resp",
                 "_replies", "_prune_at", "_clock")

    def __init__(self, permissions: Permissions, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.permissions = permissions
        self.filter_delivery = False
        """True once an accepted wildcard or queue subscription overlaps a subscribe deny entry."""
        self._c = permissions.compiled()
        self._pcache: dict[bytes, bool] = {}
        self._scache: dict[Any, bool] = {}
        self._dcache: dict[Any, bool] = {}
        self._resp = permissions.allow_responses
        self._replies: dict[bytes, list[Any]] = {}  # reply -> [noted at, replies sent]
        self._prune_at = REPLY_PRUNE_AT
        self._clock = clock

    # -- publish ----------------------------------------------------------------

    def can_publish(self, subject: bytes) -> bool:
        """May this client publish to ``subject`` (counts a reply under ``allow_responses``)?"""
        allowed = self._pcache.get(subject)
        if allowed is not None:
            return allowed
        return self._check_publish(subject)

    def _check_publish(self, subject: bytes) -> bool:
        c = self._c
        allowed = True
        if c.pub_allow is not None:
            allowed = bool(_match(c.pub_allow, subject).psubs)
        if allowed and c.pub_deny is not None:
            allowed = not _match(c.pub_deny, subject).psubs
        if not allowed and self._resp is not None:
            # A reply to a request this client received; never cached.
            entry = self._replies.get(subject)
            if entry is not None:
                entry[1] += 1
                resp = self._resp
                if resp.max_msgs > 0 and entry[1] > resp.max_msgs:
                    del self._replies[subject]
                elif resp.expires > 0 and self._clock() - entry[0] > resp.expires:
                    del self._replies[subject]
                else:
                    allowed = True
            return allowed
        cache = self._pcache
        if len(cache) >= PERM_CACHE_MAX:
            cache.clear()
        cache[subject] = allowed
        return allowed

    # -- subscribe --------------------------------------------------------------

    def can_subscribe(self, subject: bytes, queue: bytes | None = None) -> bool:
        """May this client subscribe to ``subject`` (in queue group ``queue``)?"""
        key: Any = subject if queue is None else (subject, queue)
        allowed = self._scache.get(key)
        if allowed is not None:
            return allowed
        allowed = self._check_subscribe(subject, queue)
        cache = self._scache
        if len(cache) >= PERM_CACHE_MAX:
            cache.clear()
        cache[key] = allowed
        return allowed

    def _check_subscribe(self, subject: bytes, queue: bytes | None) -> bool:
        if queue == SYS_QUEUE:
            return False
        c = self._c
        allowed = True
        if c.sub_allow is not None:
            r = _match(c.sub_allow, subject)
            allowed = bool(r.psubs)
            if queue and r.qsubs:
                allowed = _queue_matches(queue, r.qsubs)
        if allowed and c.sub_deny is not None:
            r = _match(c.sub_deny, subject)
            allowed = not r.psubs
            if allowed and queue and r.qsubs:
                allowed = not _queue_matches(queue, r.qsubs)
            if allowed and not self.filter_delivery and (queue or has_wildcard(subject)):
                if any(subjects_collide(d, subject) for d in c.sub_deny_subjects):
                    self.filter_delivery = True
        return allowed

    def deny_delivery(self, subject: bytes, queue: bytes | None = None) -> bool:
        """True if a message on ``subject`` must not be delivered to this client's
        subscription (in queue group ``queue``).

        Only ever true after :attr:`filter_delivery` was set, by a wildcard or
        queue subscription that a subscribe deny entry overlaps.
        """
        if not self.filter_delivery:
            return False
        key: Any = subject if queue is None else (subject, queue)
        denied = self._dcache.get(key)
        if denied is None:
            sub_deny = self._c.sub_deny
            denied = False
            if sub_deny is not None:
                r = _match(sub_deny, subject)
                denied = bool(r.psubs) or bool(queue and r.qsubs and _queue_matches(queue, r.qsubs))
            cache = self._dcache
            if len(cache) >= DENY_CACHE_MAX:
                cache.clear()
            cache[key] = denied
        return denied

    # -- allow_responses --------------------------------------------------------

    def note_request(self, reply: bytes) -> None:
        """This client was delivered a message with reply subject ``reply``.

        Under ``allow_responses`` it may then publish to ``reply`` (up to
        ``max`` times, until ``expires``); a later request with the same reply
        starts the count again. Does nothing without ``allow_responses``.
        """
        if self._resp is None:
            return
        replies = self._replies
        replies[reply] = [self._clock(), 0]
        if len(replies) > self._prune_at:
            self._prune_replies()

    def _prune_replies(self) -> None:
        resp = self._resp
        assert resp is not None
        now = self._clock()
        mm, ttl = resp.max_msgs, resp.expires
        replies = self._replies
        for reply in [r for r, (t, n) in replies.items()
                      if (mm > 0 and n >= mm) or (ttl > 0 and now - t > ttl)]:
            del replies[reply]
        if len(replies) > REPLY_HARD_MAX:
            # Forget the oldest live ones, down to 3/4 of the cap so this
            # does not run again on the next request.
            for reply in list(replies)[:len(replies) - REPLY_HARD_MAX * 3 // 4]:
                del replies[reply]
        # Prune again only once the table has doubled (or reaches the cap),
        # so a steady backlog of live replies does not cost a scan per request.
        self._prune_at = min(max(REPLY_PRUNE_AT, 2 * len(replies)), REPLY_HARD_MAX)

    @property
    def pending_replies(self) -> int:
        """Reply subjects currently tracked (for tests and monitoring)."""
        return len(self._replies)
