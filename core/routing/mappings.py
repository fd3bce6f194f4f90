"""Subject mappings: rewriting the subject of published messages, as nats-server does.

A ``mappings {}`` block (top level for the global account, or inside an
account) maps a *source* subject, which may hold ``*`` and ``>`` wildcards,
to one *destination* or to several weighted ones::

    mappings {
      "foo": "bar"
      "orders.*": "orders.{{wildcard(1)}}.new"
      "weighted": [ {destination: "a", weight: 80%}, {destination: "b", weight: 20%} ]
    }

:class:`SubjectTransform` compiles one (source, destination) pair;
:class:`Mapping` holds a source with its weighted destinations;
:class:`Mappings` is the collection of one account, with the per-subject
cache the publish path uses (``if mappings: subject = mappings.map(subject)``).

Destination syntax (nats-server 2.15.1, checked against the binary):

* ``$N`` (legacy) and ``{{wildcard(N)}}`` insert the token matched by the
  N-th ``*`` of the source. ``>`` at the end of the destination carries over
  the tokens matched by ``>`` in the source.
* ``{{partition(n, i, j, ...)}}``: the FNV-1a 32-bit hash of the tokens of
  wildcards i, j, ... concatenated without separator, modulo n, in decimal;
  ``{{partition(n)}}`` hashes the whole subject (its tokens joined with
  dots); n = 0 gives ``0``.
* ``{{random(n)}}``: a random number in 0..n-1 (``0`` for n = 0), drawn for
  every message.
* ``{{split(i, sep)}}``, ``{{splitFromLeft(i, pos)}}``,
  ``{{splitFromRight(i, pos)}}``, ``{{sliceFromLeft(i, size)}}`` and
  ``{{sliceFromRight(i, size)}}`` cut the token of wildcard i into several
  tokens; ``{{left(i, n)}}`` and ``{{right(i, n)}}`` keep its first or last
  n bytes (the whole token when n is not between 1 and its length - 1).
* The first letter of each word of a function name may be either case
  (``Partition``, ``splitfromleft``, ``SplitFromLeft``); spaces are allowed
  around the name and the arguments inside ``{{ }}``.

Rules that nats-server 2.15.1 enforces and this module reproduces:

* the destination must be a valid subject without ``*`` tokens, and has a
  trailing ``>`` exactly when the source has one;
* a wildcard index above the number of ``*`` wildcards is "out of range",
  while ``0`` and negative indexes are accepted and insert the subject's
  *first* token; integer arguments are 32-bit;
* a destination need not use every wildcard of the source (2.9.10 required
  it); only the *strict* transforms of imports, which must be reversible, do,
  and allow no function but ``wildcard``;
* when the source is literal, the destination may hold only literal tokens,
  ``{{partition(n)}}`` and ``{{random(n)}}`` (any other placeholder is "out
  of range"; 2.9.10 copied ``$1`` literally);
* weights are 0..100 each and at most 100 in total; when they add up to less
  than 100 the remainder maps to the original subject, unless the source is
  itself listed as a destination, in which case the remainder is dropped
  (nats-server's "they want loss"); ``cluster`` scoped destinations count
  towards the total but are only used inside that cluster;
* a subject is mapped once (the result is not mapped again), and a result
  with an empty token (``{{split(1,-)}}`` of ``a--``) is delivered to no one:
  :meth:`Mappings.map` returns :data:`DROP` for it, as for the dropped share.

Deliberate differences:

* An empty destination (``"foo": ""``) is refused: nats-server 2.15.1
  accepts it and then crashes on the first message published to the source.
* When several sources match one subject, nats-server picks whichever comes
  first in a Go map iteration, which is random per start. Here a mapping
  whose source equals the subject wins, then wildcard sources in
  configuration order -- one of the orders nats-server may pick.
* ``cluster`` scoped destinations are validated and kept, but never chosen
  since natsd has no clusters yet; nats-server outside a cluster does the
  same (it falls back to the destinations without a cluster).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Mapping as _MappingABC
from dataclasses import dataclass
from typing import Any

from natsd.config.conf import ConfError, ConfList, ConfMap

from .subjects import valid_subject

__all__ = [
    "CACHE_MAX",
    "DROP",
    "MAPPING_KEYS",
    "MapDest",
    "Mapping",
    "MappingError",
    "Mappings",
    "SubjectTransform",
    "fnv32a",
    "transform_tokenize",
    "transform_untokenize",
    "validate_destination",
]

DROP = b""
"""What :meth:`Mappings.map` returns when the message must be dropped: the
weights leave a share unassigned, or a transform produced a subject with an
empty token (nats-server delivers those to no one)."""

CACHE_MAX = 1024
"""Default bound of :class:`Mappings`' per-subject cache."""

MAPPING_KEYS = ("mappings", "maps")
"""The keys nats-server accepts for a mappings block (top level and in accounts)."""

_BAD_SUBJECT = "invalid subject"
_BAD_DEST = "invalid mapping destination"
_NOT_ENOUGH = f"{_BAD_DEST}: not enough arguments passed to the function"
_TOO_MANY = f"{_BAD_DEST}: too many arguments passed to the function"
_BAD_ARG = f"{_BAD_DEST}: function argument is invalid or in the wrong format"
_UNKNOWN_FN = f"{_BAD_DEST}: unknown function"
_OUT_OF_RANGE = f"{_BAD_DEST}: wildcard index out of range"
_NOT_ALL = f"{_BAD_DEST}: not using all of the token wildcard(s)"
_IMPORT_ONLY_WILDCARD = f"{_BAD_DEST}: the only mapping function allowed for import transforms is {{{{Wildcard()}}}}"
_MAX_INT32 = 2**31 - 1


class MappingError(ValueError):
    """An invalid mapping; the message reads like nats-server's.

    ``destination`` is the destination at fault (``None`` when the source is),
    ``index`` its position in the list given to :class:`Mapping`.
    """

    def __init__(self, message: str, destination: str | None = None, index: int | None = None):
        super().__init__(message)
        self.destination = destination
        self.index = index


# --------------------------------------------------------------------------
# Destination tokens
# --------------------------------------------------------------------------

_S = r"[\t\n\f\r ]*"  # Go's regexp \s


def _fn(name: str) -> re.Pattern[str]:
    # nats-server writes each word as [xX]..., e.g. [sS]plit[fF]rom[lL]eft.
    words = re.findall(r"[A-Z][a-z]*", name)
    pat = "".join(f"[{w[0].lower()}{w[0]}]{w[1:]}" for w in words)
    return re.compile(r"\{\{" + _S + pat + _S + r"\((.*)\)" + _S + r"\}\}")


# In the order nats-server tries them; searched, not anchored, like Go's FindStringSubmatch.
_WILDCARD = _fn("Wildcard")
_PARTITION = _fn("Partition")
_SPLIT_FROM_LEFT = _fn("SplitFromLeft")
_SPLIT_FROM_RIGHT = _fn("SplitFromRight")
_SLICE_FROM_LEFT = _fn("SliceFromLeft")
_SLICE_FROM_RIGHT = _fn("SliceFromRight")
_SPLIT = _fn("Split")
_LEFT = _fn("Left")
_RIGHT = _fn("Right")
_RANDOM_FN = _fn("Random")
_FUNCTIONS = (_PARTITION, _WILDCARD, _SPLIT_FROM_LEFT, _SPLIT_FROM_RIGHT,
              _SLICE_FROM_LEFT, _SLICE_FROM_RIGHT, _SPLIT, _LEFT, _RIGHT, _RANDOM_FN)
_COMMA = re.compile(r"," + _S)
_ATOI = re.compile(r"[+-]?[0-9]+\Z")
_DEST_WS = frozenset("\t\n\f\r ")


def _atoi(text: str) -> int | None:
    """Go's strconv.Atoi: optional sign and decimal digits within int64, else None."""
    if not _ATOI.match(text):
        return None
    n = int(text)
    return n if -(2**63) <= n < 2**63 else None


def _int32(n: int) -> int:
    """Go's int32(n) conversion (wraps)."""
    return (n + 2**31) % 2**32 - 2**31


def _is_mustache(token: str) -> bool:
    return len(token) > 4 and token.startswith("{{") and token.endswith("}}")


def _args(pattern: re.Pattern[str], token: str) -> list[str] | None:
    m = pattern.search(token)
    return None if m is None else _COMMA.split(m.group(1))


def validate_destination(destination: str) -> None:
    """nats-server's ValidateMappingDestination: raise :class:`MappingError` if invalid."""
    fwc = False
    for token in destination.split("."):
        if not token or fwc:
            raise MappingError(f"{_BAD_DEST}: invalid subject in {token}", destination)
        if _is_mustache(token):
            if not any(p.search(token) for p in _FUNCTIONS):
                raise MappingError(f"{_UNKNOWN_FN} in {token}", destination)
            continue
        if token == ">":
            fwc = True
        elif _DEST_WS.intersection(token):
            raise MappingError(f"{_BAD_DEST}: invalid subject", destination)


# Kinds of destination tokens.
_LITERAL, _WILD, _PART, _SFL, _SFR, _SLL, _SLR, _SPL, _LFT, _RGT, _RND = range(11)


def _int32_arg(text: str) -> int | None:
    """Go's strconv.ParseInt(text, 10, 32): None when not a number or out of range."""
    n = _atoi(text)
    return n if n is not None and -(2**31) <= n <= _MAX_INT32 else None


def _count_arg(text: str) -> int | None:
    """A partition or random count: an int, at most MaxInt32, then converted to int32."""
    n = _atoi(text.strip(" "))
    return None if n is None or n > _MAX_INT32 else _int32(n)


def _placeholder(token: str) -> tuple[int, list[int], int, str]:
    """nats-server's indexPlaceHolders: (kind, wildcard indexes, int argument, string argument)."""
    if len(token) > 1 and token[0] == "$":
        n = _atoi(token[1:])
        return (_LITERAL, [], 0, "") if n is None else (_WILD, [n], 0, "")
    if not _is_mustache(token):
        return _LITERAL, [], 0, ""
    args = _args(_WILDCARD, token)
    if args is not None:
        if len(args) == 1 and args[0] == "":
            raise MappingError(f"{_NOT_ENOUGH} in {token}")
        if len(args) > 1:
            raise MappingError(f"{_TOO_MANY} in {token}")
        n = _atoi(args[0].strip(" "))
        if n is None:
            raise MappingError(f"{_BAD_ARG} in {token}")
        return _WILD, [n], 0, ""
    args = _args(_PARTITION, token)
    if args is not None:
        count = _count_arg(args[0])
        indexes = [_atoi(a.strip(" ")) for a in args[1:]]
        if count is None or None in indexes:
            raise MappingError(f"{_BAD_ARG} in {token}")
        return _PART, indexes, count, ""  # type: ignore[return-value]
    for pattern, kind in ((_SPLIT_FROM_LEFT, _SFL), (_SPLIT_FROM_RIGHT, _SFR),
                          (_SLICE_FROM_LEFT, _SLL), (_SLICE_FROM_RIGHT, _SLR),
                          (_RIGHT, _RGT), (_LEFT, _LFT)):
        args = _args(pattern, token)
        if args is not None:
            if len(args) < 2:
                raise MappingError(f"{_NOT_ENOUGH} in {token}")
            if len(args) > 2:
                raise MappingError(f"{_TOO_MANY} in {token}")
            index, size = _atoi(args[0].strip(" ")), _int32_arg(args[1].strip(" "))
            if index is None or size is None:
                raise MappingError(f"{_BAD_ARG} in {token}")
            return kind, [index], size, ""
    args = _args(_SPLIT, token)
    if args is not None:
        if len(args) < 2:
            raise MappingError(f"{_NOT_ENOUGH} in {token}")
        if len(args) > 2:
            raise MappingError(f"{_TOO_MANY} in {token}")
        index = _atoi(args[0].strip(" "))
        if index is None or " " in args[1] or "." in args[1]:
            raise MappingError(f"{_BAD_ARG} in {token}")
        return _SPL, [index], 0, args[1]
    args = _args(_RANDOM_FN, token)
    if args is not None:
        if len(args) != 1:
            raise MappingError(f"{_NOT_ENOUGH} in {token}")
        count = _count_arg(args[0])
        if count is None:
            raise MappingError(f"{_BAD_ARG} in {token}")
        return _RND, [], count, ""
    raise MappingError(f"{_UNKNOWN_FN} in {token}")


# --------------------------------------------------------------------------
# Token functions (byte for byte as nats-server's transform)
# --------------------------------------------------------------------------

def fnv32a(data: bytes) -> int:
    """32-bit FNV-1a of ``data`` (Go's hash/fnv New32a), used by ``partition``."""
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def _partition(indexes: list[int], count: int) -> Callable[[list[bytes]], bytes]:
    buckets = count % 2**32  # Go: uint32(int(int32 count))
    if buckets == 0:
        return lambda tokens: b"0"
    if not indexes:  # {{partition(n)}}: the whole subject
        return lambda tokens: b"%d" % (fnv32a(b".".join(tokens)) % buckets)

    def partition(tokens: list[bytes]) -> bytes:
        return b"%d" % (fnv32a(b"".join([tokens[i] for i in indexes])) % buckets)
    return partition


def _random(count: int) -> Callable[[list[bytes]], bytes]:
    ceiling = abs(count)  # Go: rand.Int31() % ceiling keeps the sign of the (positive) draw
    if ceiling == 0:
        return lambda tokens: b"0"
    return lambda tokens: b"%d" % (_RANDOM.randrange(2**31) % ceiling)


def _left(i: int, size: int) -> Callable[[list[bytes]], bytes]:
    def left(tokens: list[bytes]) -> bytes:
        t = tokens[i]
        return t[:size] if 0 < size < len(t) else t
    return left


def _right(i: int, size: int) -> Callable[[list[bytes]], bytes]:
    def right(tokens: list[bytes]) -> bytes:
        t = tokens[i]
        return t[len(t) - size:] if 0 < size < len(t) else t
    return right


def _split_from_left(i: int, pos: int) -> Callable[[list[bytes]], bytes]:
    def split_from_left(tokens: list[bytes]) -> bytes:
        t = tokens[i]
        return t[:pos] + b"." + t[pos:] if 0 < pos < len(t) else t
    return split_from_left


def _split_from_right(i: int, pos: int) -> Callable[[list[bytes]], bytes]:
    def split_from_right(tokens: list[bytes]) -> bytes:
        t = tokens[i]
        n = len(t)
        return t[:n - pos] + b"." + t[n - pos:] if 0 < pos < n else t
    return split_from_right


def _slice_from_left(i: int, size: int) -> Callable[[list[bytes]], bytes]:
    def slice_from_left(tokens: list[bytes]) -> bytes:
        t = tokens[i]
        if not 0 < size < len(t):
            return t
        return b".".join([t[j:j + size] for j in range(0, len(t), size)])
    return slice_from_left


def _slice_from_right(i: int, size: int) -> Callable[[list[bytes]], bytes]:
    def slice_from_right(tokens: list[bytes]) -> bytes:
        t = tokens[i]
        n = len(t)
        if not 0 < size < n:
            return t
        rem = n % size
        parts = [t[:rem]] if rem else []
        parts.extend(t[j:j + size] for j in range(rem, n, size))
        return b".".join(parts)
    return slice_from_right


def _runes(t: bytes) -> list[bytes]:
    # Go's strings.Split(s, ""): one piece per UTF-8 sequence, invalid bytes alone.
    return [c.encode("utf-8", "surrogateescape") for c in t.decode("utf-8", "surrogateescape")]


def _split(i: int, sep: bytes) -> Callable[[list[bytes]], bytes]:
    def split(tokens: list[bytes]) -> bytes:
        pieces = tokens[i].split(sep) if sep else _runes(tokens[i])
        out = bytearray()
        last = len(pieces) - 1
        for j, piece in enumerate(pieces):
            out += piece
            if j < last and pieces[j + 1] and not (j == 0 and not piece):
                out += b"."
        return bytes(out)
    return split


_Op = bytes | int | Callable[[list[bytes]], bytes]


def _as_text(subject: str | bytes) -> str:
    return subject.decode("utf-8", "surrogateescape") if isinstance(subject, bytes) else subject


def _as_bytes(subject: str) -> bytes:
    return subject.encode("utf-8", "surrogateescape")


class SubjectTransform:
    """A compiled (source, destination) pair, validated as nats-server does.

    ``apply(subject)`` returns the destination for a literal ``subject`` the
    source matches, ``None`` when it does not. ``strict`` is for imports,
    whose transforms must be reversible: every wildcard used, no function
    but ``wildcard``. ``random`` is True when ``{{random(n)}}`` makes the
    result differ from message to message. Raises :class:`MappingError`.
    """

    __slots__ = ("source", "destination", "literal", "random", "_constant", "_checks", "_ntokens",
                 "_fwc", "_ops", "_tail", "_may_be_invalid")

    def __init__(self, source: str | bytes, destination: str | bytes, *, strict: bool = False) -> None:
        src, dest = _as_text(source), _as_text(destination)
        self.source: bytes = _as_bytes(src)
        self.destination: bytes = _as_bytes(dest)
        if not valid_subject(self.source):
            raise MappingError(_BAD_SUBJECT)
        validate_destination(dest)
        stokens, dtokens = src.split("."), dest.split(".")
        if "*" in dtokens or (stokens[-1] == ">") != (dtokens[-1] == ">"):
            raise MappingError(_BAD_SUBJECT, dest)
        self._fwc = stokens[-1] == ">"
        self._ntokens = len(stokens)
        wildcards = [i for i, t in enumerate(stokens) if t == "*"]
        # Source tokens to compare: (index, literal token).
        self._checks = tuple((i, _as_bytes(t)) for i, t in enumerate(stokens) if t not in ("*", ">"))
        self.literal = not wildcards and not self._fwc
        self.random = False
        self._tail = len(stokens) - 1 if self._fwc else -1
        self._may_be_invalid = False
        ops: list[_Op] = []
        used = 0
        for token in (dtokens[:-1] if self._fwc else dtokens):
            try:
                kind, indexes, number, text = _placeholder(token)
            except MappingError as e:
                raise MappingError(str(e), dest) from None
            if strict and kind not in (_LITERAL, _WILD):
                raise MappingError(f"{_IMPORT_ONLY_WILDCARD} in {token}", dest)
            if kind == _LITERAL:
                ops.append(_as_bytes(token))
                continue
            if kind == _RND:
                ops.append(_random(number))
                self.random = True
                continue
            if self.literal:
                if kind != _PART:  # a literal source has no wildcard to refer to
                    raise MappingError(f"{_OUT_OF_RANGE} in {token}", dest)
                ops.append(_partition([], number))  # the indexes do not count: the whole subject
                continue
            used += len(indexes)
            positions = []
            for n in indexes:
                if n > len(wildcards):
                    raise MappingError(f"{_OUT_OF_RANGE} in {token}: [{n}]", dest)
                # nats-server looks indexes up in a map from 1..N: 0 and below give token 0.
                positions.append(wildcards[n - 1] if n >= 1 else 0)
            if kind == _WILD:
                ops.append(positions[0])
            elif kind == _PART:
                ops.append(_partition(positions, number))
            elif kind == _SFL:
                ops.append(_split_from_left(positions[0], number))
            elif kind == _SFR:
                ops.append(_split_from_right(positions[0], number))
            elif kind == _SLL:
                ops.append(_slice_from_left(positions[0], number))
            elif kind == _SLR:
                ops.append(_slice_from_right(positions[0], number))
            elif kind == _LFT:
                ops.append(_left(positions[0], number))
            elif kind == _RGT:
                ops.append(_right(positions[0], number))
            else:
                ops.append(_split(positions[0], _as_bytes(text)))
                self._may_be_invalid = True
        if strict and used < len(wildcards):
            raise MappingError(f"{_NOT_ALL} in {dest}", dest)
        self._ops = tuple(ops)
        self._constant: bytes | None = None
        if self.literal and not self.random:  # the one subject it matches always maps the same
            self._constant = self._render(self.source.split(b"."))

    def __repr__(self) -> str:
        return f"SubjectTransform({self.source!r}, {self.destination!r})"

    def matches(self, tokens: list[bytes]) -> bool:
        """True if the source matches a literal subject split into ``tokens``."""
        n = len(tokens)
        if n != self._ntokens and not (self._fwc and n >= self._ntokens):
            return False
        for i, t in self._checks:
            if tokens[i] != t:
                return False
        return True

    def render(self, tokens: list[bytes]) -> bytes:
        """The destination for ``tokens``, which the source must match."""
        if self._constant is not None:
            return self._constant
        return self._render(tokens)

    def _render(self, tokens: list[bytes]) -> bytes:
        out: list[bytes] = []
        for op in self._ops:
            cls = op.__class__
            if cls is bytes:
                out.append(op)  # type: ignore[arg-type]
            elif cls is int:
                out.append(tokens[op])  # type: ignore[index]
            else:
                out.append(op(tokens))  # type: ignore[operator]
        if self._tail >= 0:
            out.extend(tokens[self._tail:])
        return b".".join(out)

    def apply(self, subject: bytes) -> bytes | None:
        """The mapped subject, or ``None`` if ``subject`` does not match the source."""
        if self.literal:
            if subject != self.source:
                return None
            return self._constant if self._constant is not None else self._render(subject.split(b"."))
        tokens = subject.split(b".")
        if b"" in tokens or not self.matches(tokens):
            return None
        return self.render(tokens)


def transform_tokenize(subject: str | bytes) -> bytes:
    """``foo.*.*`` -> ``foo.$1.$2`` (nats-server's transformTokenize, used for imports)."""
    out, n = [], 0
    for token in _as_bytes(_as_text(subject)).split(b"."):
        if token == b"*":
            n += 1
            out.append(b"$%d" % n)
        else:
            out.append(token)
    return b".".join(out)


def transform_untokenize(subject: str | bytes) -> tuple[bytes, list[bytes]]:
    """``foo.$2.$1`` -> (``foo.*.*``, [``$2``, ``$1``]) (nats-server's transformUntokenize)."""
    out, placeholders = [], []
    for token in _as_bytes(_as_text(subject)).split(b"."):
        if len(token) > 1 and token[0] == 0x24 and 0x31 <= token[1] <= 0x39:  # $1..$9
            placeholders.append(token)
            out.append(b"*")
        else:
            out.append(token)
    return b".".join(out), placeholders


# --------------------------------------------------------------------------
# One source and its weighted destinations
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class MapDest:
    """One destination of a mapping: nats-server's MapDest."""

    subject: str
    weight: int = 100
    cluster: str = ""


_DestLike = MapDest | str | bytes | Sequence[Any]
_RANDOM = random.Random()


def _valid_output(subject: bytes) -> bool:
    return bool(subject) and subject[0] != 0x2E and subject[-1] != 0x2E and b".." not in subject


class Mapping:
    """A source subject with weighted destinations (nats-server's AddWeightedMappings).

    ``destinations`` is a destination subject or a sequence of :class:`MapDest`
    (or ``(subject, weight[, cluster])`` tuples). Raises :class:`MappingError`.

    ``choices`` holds ``(transform, upper bound)`` pairs sorted by weight, the
    bounds cumulative: a draw ``w`` in 0..99 picks the first with ``w < bound``
    (none: the message is dropped). ``cluster_choices`` holds the same per
    cluster name; natsd has no clusters yet, so they are never used.
    """

    __slots__ = ("source", "literal", "choices", "cluster_choices", "fixed", "_transform")

    def __init__(self, source: str | bytes, destinations: _DestLike | Iterable[_DestLike]) -> None:
        src = _as_text(source)
        self.source: bytes = _as_bytes(src)
        if not valid_subject(self.source):
            raise MappingError(_BAD_SUBJECT)
        listed: Iterable[_DestLike] = (
            [destinations] if isinstance(destinations, (str, bytes, MapDest))
            else destinations)  # type: ignore[assignment]
        dests = [_map_dest(d) for d in listed]
        main: list[tuple[SubjectTransform, int]] = []
        by_cluster: dict[str, list[tuple[SubjectTransform, int]]] = {}
        seen: set[str] = set()
        total = 0
        for i, d in enumerate(dests):
            if d.subject in seen:
                raise MappingError(f'duplicate entry for "{d.subject}"', d.subject, i)
            seen.add(d.subject)
            if not 0 <= d.weight <= 100:
                raise MappingError("individual weights need to be <= 100", d.subject, i)
            total += d.weight
            if total > 100:
                raise MappingError("total weight needs to be <= 100", d.subject, i)
            try:
                tr = SubjectTransform(src, d.subject)
            except MappingError as e:
                raise MappingError(str(e), d.subject, i) from None
            (by_cluster.setdefault(d.cluster, []) if d.cluster else main).append((tr, d.weight))
        # The original subject takes what the weights leave, unless it is listed itself.
        self.literal = not any(t in (b"*", b">") for t in self.source.split(b"."))
        self._transform = SubjectTransform(src, src if self.literal else transform_tokenize(src))
        self.choices = self._cumulate(main, src in seen)
        self.cluster_choices = {c: self._cumulate(ch, src in seen) for c, ch in by_cluster.items()}
        # A destination holding the whole 0..99 band makes the draw pointless.
        self.fixed: SubjectTransform | None = None
        prev = 0
        for tr, bound in self.choices:
            if bound - prev == 100:
                self.fixed = tr
            prev = bound

    def _cumulate(self, choices: list[tuple[SubjectTransform, int]],
                  have_source: bool) -> tuple[tuple[SubjectTransform, int], ...]:
        weight = sum(w for _, w in choices)
        if weight != 100 and not have_source:
            choices = choices + [(self._transform, 100 - weight)]
        choices = sorted(choices, key=lambda c: c[1])  # stable, as Go's sort for < 12 entries
        out, bound = [], 0
        for tr, w in choices:
            bound += w
            out.append((tr, bound))
        return tuple(out)

    @property
    def weighted(self) -> bool:
        """True if the outcome depends on a random draw (weights or ``{{random(n)}}``)."""
        return self.fixed is None or self.fixed.random

    def __repr__(self) -> str:
        return f"Mapping({self.source!r}, {[(t.destination, b) for t, b in self.choices]!r})"

    def matches(self, subject: bytes) -> bool:
        if self.literal:
            return subject == self.source
        tokens = subject.split(b".")
        return b"" not in tokens and self._transform.matches(tokens)

    def choose(self, rand: Any = None) -> SubjectTransform | None:
        """The destination transform for one message; ``None`` means drop it."""
        if self.fixed is not None:
            return self.fixed
        w = (rand or _RANDOM).randrange(100)  # nats-server: prand.Int31n(100)
        for tr, bound in self.choices:
            if w < bound:
                return tr
        return None

    def select(self, subject: bytes, rand: Any = None) -> bytes:
        """The mapped subject for one message on ``subject`` (which the source must match).

        ``rand`` is a :class:`random.Random` (anything with ``randrange``).
        Returns :data:`DROP` when the message goes nowhere.
        """
        if not self.matches(subject):
            raise ValueError(f"{subject!r} does not match the mapping source {self.source!r}")
        return self._select(subject, rand)

    def _select(self, subject: bytes, rand: Any) -> bytes:
        tr = self.choose(rand)
        if tr is None:
            return DROP
        if tr._constant is not None:
            return tr._constant
        out = tr.render(subject.split(b"."))
        if tr._may_be_invalid and not _valid_output(out):
            return DROP
        return out


def _map_dest(d: _DestLike) -> MapDest:
    if isinstance(d, MapDest):
        return d
    if isinstance(d, (str, bytes)):
        return MapDest(_as_text(d))
    subject, *rest = tuple(d)
    return MapDest(_as_text(subject), *rest)


# --------------------------------------------------------------------------
# The mappings of one account
# --------------------------------------------------------------------------

_NO_MATCH: Any = object()


class Mappings:
    """The subject mappings of one account, with a bounded per-subject cache.

    ``map(subject)`` is the publish-path call: it returns ``subject`` itself
    when no mapping applies, :data:`DROP` when the message must go nowhere,
    else the mapped subject. ``bool(mappings)`` is False when there are none,
    so the hot path can skip the call. Results for a subject are cached
    (at most ``cache_size`` subjects) unless a random draw decides them.
    """

    def __init__(self, mappings: Iterable[Mapping] = (), *, rand: Any = None,
                 cache_size: int = CACHE_MAX) -> None:
        self._literal: dict[bytes, Mapping] = {}
        self._wild: list[Mapping] = []
        self._cache: dict[bytes, Any] = {}
        self._cache_size = max(1, cache_size)
        self.rand = rand or _RANDOM
        for m in mappings:
            self.add(m)

    def __bool__(self) -> bool:
        return bool(self._literal) or bool(self._wild)

    def __len__(self) -> int:
        return len(self._literal) + len(self._wild)

    def __iter__(self) -> Iterator[Mapping]:
        yield from self._literal.values()
        yield from self._wild

    def __repr__(self) -> str:
        return f"Mappings({list(self)!r})"

    def add(self, mapping: Mapping) -> None:
        """Add ``mapping``, replacing one with the same source (in its place)."""
        if mapping.literal:
            self._literal[mapping.source] = mapping
        else:
            for i, m in enumerate(self._wild):
                if m.source == mapping.source:
                    self._wild[i] = mapping
                    break
            else:
                self._wild.append(mapping)
        self._cache.clear()

    def remove(self, source: str | bytes) -> bool:
        """Remove the mapping of ``source``; False if there was none."""
        src = _as_bytes(_as_text(source))
        self._cache.clear()
        if self._literal.pop(src, None) is not None:
            return True
        for i, m in enumerate(self._wild):
            if m.source == src:
                del self._wild[i]
                return True
        return False

    def lookup(self, subject: bytes) -> Mapping | None:
        """The mapping that applies to the literal ``subject``, if any."""
        m = self._literal.get(subject)
        if m is not None or not self._wild:
            return m
        tokens = subject.split(b".")
        if b"" in tokens:
            return None
        for m in self._wild:
            if m._transform.matches(tokens):
                return m
        return None

    def _resolve(self, subject: bytes) -> Any:
        m = self.lookup(subject)
        if m is None:
            return _NO_MATCH
        if m.weighted:
            return m
        out = m._select(subject, None)
        return _NO_MATCH if out == subject else out

    def map(self, subject: bytes) -> bytes:
        """The subject a message published on ``subject`` is delivered to."""
        hit = self._cache.get(subject)
        if hit is None:
            hit = self._resolve(subject)
            cache = self._cache
            if len(cache) >= self._cache_size:
                del cache[next(iter(cache))]
            cache[subject] = hit
        if hit is _NO_MATCH:
            return subject
        if hit.__class__ is bytes:
            return hit
        return hit._select(subject, self.rand)

    @classmethod
    def from_config(cls, block: Any, *, parent: _MappingABC[str, Any] | None = None,
                    key: str = "mappings", rand: Any = None,
                    cache_size: int = CACHE_MAX) -> Mappings:
        """Build from a parsed ``mappings {}`` block (``parent[key]``).

        Errors are :class:`~natsd.config.conf.ConfError` naming the file, line and
        the mapping's source subject as key.
        """
        if not isinstance(block, _MappingABC):
            raise _conf_error(parent, key, key, "expected a block { ... } of subject mappings, "
                              f"got {block!r}")
        mappings = cls(rand=rand, cache_size=cache_size)
        for source, value in block.items():
            if not isinstance(source, str) or not valid_subject(_as_bytes(source)):
                raise _conf_error(block, source, str(source),
                                  f"subject {source!r} is not a valid subject")
            dests, places = _parse_destinations(block, source, value)
            try:
                mapping = Mapping(source, dests)
            except MappingError as e:
                where = places[e.index] if e.index is not None else (block, source)
                if e.destination is None:
                    reason = f"cannot map {source!r}: {e}"
                else:
                    reason = f"cannot map {source!r} to {e.destination!r}: {e}"
                raise _conf_error(where[0], where[1], source, reason) from None
            mappings.add(mapping)
        return mappings


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------

_Where = tuple[Any, Any]  # (container, key or list index) whose position to report


def _conf_error(container: Any, at: Any, key: str, reason: str) -> ConfError:
    pos = None
    if isinstance(container, ConfMap):
        pos = container.positions.get(at)
    elif isinstance(container, ConfList) and isinstance(at, int) and at < len(container.positions):
        pos = container.positions[at]
    if pos is None:
        return ConfError(reason, key=key)
    return ConfError(reason, file=pos.file, line=pos.line, key=key)


def _parse_destinations(block: Any, source: str, value: Any) -> tuple[list[MapDest], list[_Where]]:
    if isinstance(value, str):
        return [MapDest(value)], [(block, source)]
    if isinstance(value, _MappingABC):
        return [_parse_dest(value, (block, source), source)], [(block, source)]
    if isinstance(value, list):
        dests, places = [], []
        for i, entry in enumerate(value):
            where = (value, i)
            if not isinstance(entry, _MappingABC):
                raise _conf_error(value, i, source, "expected an entry for the mapping destination "
                                  f"{{destination: ..., weight: ...}}, got {entry!r}")
            dests.append(_parse_dest(entry, where, source))
            places.append(where)
        return dests, places
    raise _conf_error(block, source, source, "expected a destination subject, an entry "
                      f"{{destination: ..., weight: ...}} or a list of them, got {value!r}")


def _parse_dest(entry: _MappingABC[str, Any], where: _Where, source: str) -> MapDest:
    subject: str | None = None
    weight: int | None = None
    cluster = ""
    for field, v in entry.items():
        f = field.lower()
        if f in ("dest", "destination"):
            if not isinstance(v, str):
                raise _conf_error(entry, field, source, f"expected a destination subject, got {v!r}")
            subject = v
        elif f == "weight":
            weight = _parse_weight(entry, field, source, v)
        elif f == "cluster":
            if not isinstance(v, str):
                raise _conf_error(entry, field, source, f"expected a cluster name, got {v!r}")
            cluster = v  # kept, unused until natsd has clusters
        else:
            raise _conf_error(entry, field, source, f"unknown field {field!r} for mapping destination")
    if weight is None:
        raise _conf_error(*where, source, f"missing weight for mapping destination {subject!r}")
    if subject is None:
        raise _conf_error(*where, source, "missing destination: an entry needs destination (or dest) and weight")
    return MapDest(subject, weight, cluster)


def _parse_weight(entry: Any, field: str, source: str, v: Any) -> int:
    # nats-server: an integer, or a string with an optional trailing '%' (80, 80%, "80%").
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise _conf_error(entry, field, source, f"unknown entry type for weight of {v!r}")
    if isinstance(v, str):
        text = v[:-1] if v.endswith("%") else v
        n = _atoi(text)
        if n is None:
            raise _conf_error(entry, field, source, f"invalid weight {text!r} for mapping destination")
        v = n
    if not 0 <= v <= 100:
        raise _conf_error(entry, field, source,
                          f"invalid weight {v} for mapping destination (must be 0 to 100)")
    return v
