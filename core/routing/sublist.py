"""The subscription index: a trie over subject tokens with a result cache.

Modelled on nats-server's sublist. Each level of the trie maps literal tokens
to nodes and has two extra slots for ``*`` and ``>``. :meth:`Sublist.match`
returns a :class:`SublistResult` with plain subscriptions and queue groups;
results for literal subjects are cached (bounded). A literal subscription
that comes or goes drops only its own subject from the cache, so a stream of
request/reply inbox subscriptions does not flush the cache of a busy subject;
a wildcard one drops the whole cache at once (``dict.clear``: constant work
per SUB or UNSUB however full the cache is, where testing each cached subject
against the wildcard let one client's subscription churn stall the server).
Matching walks the trie without recursion, so a subscription with a
thousand ``*`` tokens costs time, never the interpreter's stack.

Subscriptions of connections to other servers (routes, leaf nodes: see
:data:`REMOTE_KINDS`) live in their own slots of each node and reach the
result as :attr:`SublistResult.remote`, grouped by connection, so that a
server without such connections never looks at them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .subjects import has_wildcard

if TYPE_CHECKING:
    from .connection import Connection

REMOTE_KINDS = frozenset({1, 2, 4, 7})
"""``Kind.ROUTER``, ``Kind.GATEWAY``, ``Kind.LEAF`` and ``Kind.HUB`` (see :mod:`.connection`)."""

CACHE_MAX = 1024
"""Cached subjects per sublist (nats-server uses the same bound)."""


class Subscription:
    """One SUB of one connection (a client, an in-process client, a remote server).

    ``weight`` counts the members a queue subscription of a remote server
    stands for (``RS+ <acc> <subject> <queue> <weight>``); it is 1 otherwise.
    """

    __slots__ = ("client", "subject", "queue", "sid", "max_msgs", "delivered", "closed", "weight")

    def __init__(self, client: Any, subject: bytes, queue: bytes | None, sid: bytes,
                 weight: int = 1) -> None:
        self.client = client
        self.subject = subject
        self.queue = queue
        self.sid = sid
        self.max_msgs = 0  # 0: no auto-unsubscribe
        self.delivered = 0
        self.closed = False
        self.weight = weight

    def __repr__(self) -> str:
        q = f" queue={self.queue!r}" if self.queue else ""
        return f"<Subscription {self.subject!r} sid={self.sid!r}{q}>"


Target = tuple["Subscription", "Connection", "list[bytes] | None", bytes]
"""What the router keeps per plain subscription of a cached result: the subscription, its
connection, the connection's output list (``None``: the careful path) and the frame's head."""


class Remote:
    """The remote part of a :class:`SublistResult`.

    ``plain`` lists each remote connection with a plain subscription that
    matched, once however many matched. ``groups`` holds every queue group
    that has a remote member, as ``(queue, members)``: local members once,
    remote ones repeated by their weight, so that a uniform pick is weighted.
    """

    __slots__ = ("plain", "groups")

    def __init__(self, plain: tuple[Any, ...],
                 groups: tuple[tuple[bytes, tuple[Subscription, ...]], ...]) -> None:
        self.plain = plain
        self.groups = groups


class SublistResult:
    """Subscriptions matching one literal subject.

    ``psubs`` are local plain subscriptions; ``qsubs`` holds one tuple per
    local queue group, of which one member receives each message. ``remote``
    is ``None`` unless a remote connection's subscription matched (a
    :class:`Remote`; queue groups with a remote member are then there, not
    in ``qsubs``). ``interest`` is true when anything matched. ``targets`` is
    filled lazily by the delivery code: per plain subscription, the
    subscription, its client, the client's output list and
    ``MSG <subject> <sid> ``; ``htargets`` likewise for messages with headers
    (``HMSG <subject> <sid> ``, and no output list for a client that takes
    no headers, which the careful path serves).
    """

    __slots__ = ("psubs", "qsubs", "remote", "interest", "targets", "htargets")

    def __init__(self, psubs: tuple[Subscription, ...], qsubs: tuple[tuple[Subscription, ...], ...],
                 remote: Remote | None = None):
        self.psubs = psubs
        self.qsubs = qsubs
        self.remote = remote
        self.interest = bool(psubs or qsubs or remote)
        self.targets: tuple[Target, ...] | None = None
        self.htargets: tuple[Target, ...] | None = None

    def __bool__(self) -> bool:
        return self.interest


EMPTY_RESULT = SublistResult((), ())


class _Node:
    __slots__ = ("next", "psubs", "qsubs", "rsubs")

    def __init__(self) -> None:
        self.next: _Level | None = None
        self.psubs: dict[Subscription, None] = {}
        self.qsubs: dict[bytes, dict[Subscription, None]] = {}
        self.rsubs: dict[Subscription, None] | None = None  # remote kinds, plain and queue

    def empty(self) -> bool:
        return (not self.psubs and not self.qsubs and not self.rsubs
                and (self.next is None or self.next.empty()))


class _Level:
    __slots__ = ("nodes", "pwc", "fwc")

    def __init__(self) -> None:
        self.nodes: dict[bytes, _Node] = {}
        self.pwc: _Node | None = None
        self.fwc: _Node | None = None

    def empty(self) -> bool:
        return not self.nodes and self.pwc is None and self.fwc is None


class Sublist:
    """Subscriptions of one account, indexed for matching literal subjects."""

    __slots__ = ("_root", "cache", "count", "removes")

    def __init__(self) -> None:
        self._root = _Level()
        self.cache: dict[bytes, SublistResult] = {}
        self.count = 0
        self.removes = 0  # for monitoring: inserts are count + removes

    def insert(self, sub: Subscription) -> None:
        level = self._root
        node: _Node | None = None
        for token in sub.subject.split(b"."):
            if token == b"*":
                node = level.pwc = level.pwc or _Node()
            elif token == b">":
                node = level.fwc = level.fwc or _Node()
            else:
                node = level.nodes.get(token)
                if node is None:
                    node = level.nodes[token] = _Node()
            if node.next is None:
                node.next = _Level()
            level = node.next
        assert node is not None
        if _is_remote(sub):
            if node.rsubs is None:
                node.rsubs = {}
            node.rsubs[sub] = None
        elif sub.queue is None:
            node.psubs[sub] = None
        else:
            node.qsubs.setdefault(sub.queue, {})[sub] = None
        self.count += 1
        self._invalidate(sub.subject)

    def remove(self, sub: Subscription) -> bool:
        """Remove ``sub``; returns False if it was not present."""
        path: list[tuple[_Level, bytes, _Node]] = []
        level: _Level | None = self._root
        node: _Node | None = None
        for token in sub.subject.split(b"."):
            if level is None:
                return False
            if token == b"*":
                node = level.pwc
            elif token == b">":
                node = level.fwc
            else:
                node = level.nodes.get(token)
            if node is None:
                return False
            path.append((level, token, node))
            level = node.next
        assert node is not None
        if _is_remote(sub):
            if not node.rsubs or node.rsubs.pop(sub, False) is False:
                return False
        elif sub.queue is None:
            if node.psubs.pop(sub, False) is False:
                return False
        else:
            group = node.qsubs.get(sub.queue)
            if group is None or group.pop(sub, False) is False:
                return False
            if not group:
                del node.qsubs[sub.queue]
        self.count -= 1
        self.removes += 1
        for lvl, token, nd in reversed(path):  # prune empty branches
            if not nd.empty():
                break
            if token == b"*":
                lvl.pwc = None
            elif token == b">":
                lvl.fwc = None
            else:
                del lvl.nodes[token]
        self._invalidate(sub.subject)
        return True

    def reweigh(self, sub: Subscription, weight: int) -> None:
        """Change the weight of a remote queue subscription (``RS+`` with a new weight)."""
        sub.weight = weight
        self._invalidate(sub.subject)

    def _invalidate(self, subject: bytes) -> None:
        cache = self.cache
        if not cache:
            return
        if has_wildcard(subject):
            cache.clear()
        else:
            cache.pop(subject, None)

    def match(self, subject: bytes) -> SublistResult:
        """Subscriptions matching the literal ``subject``."""
        result = self.cache.get(subject)
        if result is not None:
            return result
        psubs: list[Subscription] = []
        groups: dict[bytes, list[Subscription]] = {}
        remote: list[Subscription] = []
        tokens = subject.split(b".")
        if b"" not in tokens:  # as nats-server: a subject with an empty token matches nothing
            _collect(self._root, tokens, psubs, groups, remote)
        if remote:
            result = _with_remote(psubs, groups, remote)
        else:
            result = SublistResult(tuple(psubs), tuple(tuple(g) for g in groups.values()))
        cache = self.cache
        if len(cache) >= CACHE_MAX:
            del cache[next(iter(cache))]
        cache[subject] = result
        return result

    def all(self) -> list[Subscription]:
        """Every subscription (for monitoring and tests)."""
        out: list[Subscription] = []
        _all(self._root, out)
        return out


def _is_remote(sub: Subscription) -> bool:
    return getattr(sub.client, "kind", 0) in REMOTE_KINDS


def _with_remote(psubs: list[Subscription], groups: dict[bytes, list[Subscription]],
                 remote: list[Subscription]) -> SublistResult:
    """A result whose remote subscriptions are grouped per connection and per queue group."""
    plain: dict[Any, None] = {}
    mixed: dict[bytes, list[Subscription]] = {}
    for sub in remote:
        if sub.queue is None:
            plain[sub.client] = None
        else:
            mixed.setdefault(sub.queue, [])
    for queue in mixed:
        mixed[queue].extend(groups.pop(queue, ()))
    for sub in remote:
        if sub.queue is not None:
            mixed[sub.queue].extend([sub] * max(sub.weight, 1))
    return SublistResult(tuple(psubs), tuple(tuple(g) for g in groups.values()),
                         Remote(tuple(plain), tuple((q, tuple(m)) for q, m in mixed.items())))


def _add(node: _Node, psubs: list[Subscription], groups: dict[bytes, list[Subscription]],
         remote: list[Subscription]) -> None:
    psubs.extend(node.psubs)
    for queue, members in node.qsubs.items():
        groups.setdefault(queue, []).extend(members)
    if node.rsubs:
        remote.extend(node.rsubs)


def _collect(root: _Level, tokens: list[bytes], psubs: list[Subscription],
             groups: dict[bytes, list[Subscription]], remote: list[Subscription]) -> None:
    """Add every subscription matching ``tokens`` (a literal subject), walking the trie
    with an explicit stack of ``(level, token index)``."""
    last = len(tokens) - 1
    stack = [(root, 0)]
    while stack:
        level, i = stack.pop()
        while True:
            if level.fwc is not None:
                _add(level.fwc, psubs, groups, remote)
            pwc = level.pwc
            if pwc is not None:
                if i == last:
                    _add(pwc, psubs, groups, remote)
                elif pwc.next is not None:
                    stack.append((pwc.next, i + 1))
            node = level.nodes.get(tokens[i])
            if node is None:
                break
            if i == last:
                _add(node, psubs, groups, remote)
                break
            if node.next is None:
                break
            level = node.next
            i += 1


def _all(root: _Level, out: list[Subscription]) -> None:
    """Every subscription, depth first in insertion order (a stack of levels, no recursion)."""
    stack = [iter(_children(root))]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
            continue
        out.extend(node.psubs)
        for members in node.qsubs.values():
            out.extend(members)
        if node.rsubs:
            out.extend(node.rsubs)
        if node.next is not None:
            stack.append(iter(_children(node.next)))


def _children(level: _Level) -> list[_Node]:
    nodes = list(level.nodes.values())
    if level.pwc is not None:
        nodes.append(level.pwc)
    if level.fwc is not None:
        nodes.append(level.fwc)
    return nodes
