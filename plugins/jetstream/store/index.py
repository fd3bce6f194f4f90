"""The bookkeeping a backend keeps in memory for one stream, in about 17 bytes a message.

A stream's messages live in its backend; what must be answered without a
read is kept here, in flat arrays indexed by sequence (``seq - base``):

- ``present`` (a byte a sequence): whether the message is still stored, so
  the next stored sequence is one ``bytearray.find``;
- ``sid`` and ``size`` (four bytes each): the message's subject, as a small
  integer, and what it counts against ``max_bytes``;
- per subject, its sequences in ascending order (eight bytes a message),
  so per-subject limits, ``last_by_subj`` and a filtered consumer's
  ``num_pending`` are a bisection, not a scan.

The arrays drop their front as the stream's first sequence moves on, so a
stream that keeps a million messages costs about 17 MB here whatever their
size; a subject costs a few hundred bytes more while it has messages.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterable, Iterator

from natsd.routing.subjects import subject_matches

from .base import Append, Op, Remove, Skip, StreamState, SubjectInfo

TRIM_AT = 4096
"""Positions the per-sequence arrays let go of at once, when the front has moved that far."""
SCAN_SUBJECTS = 64
"""With this many subjects or fewer, a wildcard's next message that a short walk (:data:`WALK`)
did not find is found subject by subject; with more, the walk goes on."""
WALK = 16
"""Stored messages a wildcard's next-message search looks at in order before it goes subject by
subject: a consumer's filter usually matches the message at its cursor or one just after it."""
VERDICTS_MAX = 4096
"""Subjects whose match against one filter the index remembers (the memo is cleared when full)."""


class _Seqs:
    """One subject's sequences, ascending: ``arr[head:]`` (dropping the oldest moves ``head``)."""

    __slots__ = ("arr", "head")

    def __init__(self, seq: int) -> None:
        self.arr = array("Q", (seq,))
        self.head = 0

    def __len__(self) -> int:
        return len(self.arr) - self.head

    def first(self) -> int:
        return self.arr[self.head]

    def last(self) -> int:
        return self.arr[-1]

    def at_or_after(self, seq: int) -> int:
        """The position of the first sequence ``>= seq`` (``len(arr)`` when there is none)."""
        return bisect.bisect_left(self.arr, seq, self.head)

    def drop_front(self, count: int) -> None:
        self.head += count
        if self.head >= 64 and self.head * 2 >= len(self.arr):
            del self.arr[:self.head]
            self.head = 0

    def discard(self, gone: list[int]) -> None:
        """Remove ``gone`` (ascending, all present)."""
        arr, head = self.arr, self.head
        if arr[head:head + len(gone)].tolist() == gone:
            self.drop_front(len(gone))
        elif len(gone) <= 8:
            for seq in gone:
                del arr[bisect.bisect_left(arr, seq, self.head)]
        else:
            drop = set(gone)
            self.arr, self.head = array("Q", [s for s in arr[head:] if s not in drop]), 0


class Index:
    """Counts, the stored sequences and each subject's sequences of one stream.

    Backends call :meth:`apply` with each staged operation, in order.
    """

    def __init__(self, kind: str = "file") -> None:
        self.kind = kind
        """Whose byte accounting the counts follow (see :meth:`StoredMsg.size`)."""
        self.state = StreamState()
        self._verdicts: dict[str, dict[str, bool]] = {}
        """Filter -> subject -> whether the subject matches it (a memo of :func:`subject_matches`)."""
        self._reset(1)

    def _reset(self, base: int) -> None:
        self.base = base
        """The sequence at position 0 of the per-sequence arrays."""
        self.present = bytearray()
        self.sid = array("I")
        self.size = array("I")
        self.by_subject: dict[str, _Seqs] = {}
        self.ids: dict[str, int] = {}
        self.names: list[str] = [""]
        """Subject by id; id 0 is no message."""
        self.free: list[int] = []

    def has(self, seq: int) -> bool:
        pos = seq - self.base
        return 0 <= pos < len(self.present) and self.present[pos] == 1

    # -- changes ------------------------------------------------------------------------------------

    def apply(self, op: Op) -> list[int]:
        """Apply ``op``; the sequences it removed."""
        st = self.state
        if isinstance(op, Append):
            self._append(op)
            return []
        if isinstance(op, Skip):
            if st.msgs == 0:
                st.first_seq = op.seq + 1
            st.last_seq = max(st.last_seq, op.seq)
            st.last_ts = op.ts or st.last_ts
            self._settle()
            return []
        if isinstance(op, Remove):
            removed = self._remove(op.seqs)
        else:
            removed = self._compact(op.first_seq)
            if st.msgs == 0:
                st.first_seq = max(st.first_seq, op.first_seq)
                st.last_seq = max(st.last_seq, st.first_seq - 1)
        self._settle()
        return removed

    def _append(self, op: Append) -> None:
        msg, st = op.msg, self.state
        seq = msg.seq
        if st.msgs == 0:
            self._reset(seq)
            st.first_seq = seq
        pos = seq - self.base
        gap = pos - len(self.present)
        if gap < 0:
            raise ValueError(f"append of sequence {seq} after {self.base + len(self.present) - 1}")
        if gap:
            self.present.extend(bytes(gap))
            self.sid.frombytes(bytes(4 * gap))
            self.size.frombytes(bytes(4 * gap))
        subject = msg.subject
        ident = self.ids.get(subject)
        if ident is None:
            ident = self.free.pop() if self.free else len(self.names)
            if ident == len(self.names):
                self.names.append(subject)
            else:
                self.names[ident] = subject
            self.ids[subject] = ident
            self.by_subject[subject] = _Seqs(seq)
        else:
            self.by_subject[subject].arr.append(seq)
        size = msg.size(self.kind)
        self.present.append(1)
        self.sid.append(ident)
        self.size.append(size)
        st.msgs += 1
        st.bytes += size
        st.last_seq, st.last_ts = seq, msg.ts
        st.deleted = st.last_seq - st.first_seq + 1 - st.msgs

    def _take(self, pos: int, tally: dict[int, list[int]]) -> None:
        """Forget the message at ``pos``; its sequence goes to its subject's list in ``tally``."""
        ident = self.sid[pos]
        self.present[pos] = 0
        self.sid[pos] = 0
        self.state.msgs -= 1
        self.state.bytes -= self.size[pos]
        tally.setdefault(ident, []).append(self.base + pos)

    def _forget(self, ident: int, gone: list[int]) -> None:
        subject = self.names[ident]
        seqs = self.by_subject[subject]
        if len(seqs) == len(gone):
            del self.by_subject[subject], self.ids[subject]
            self.names[ident] = ""
            self.free.append(ident)
        else:
            seqs.discard(gone)

    def _remove(self, seqs: Iterable[int]) -> list[int]:
        tally: dict[int, list[int]] = {}
        removed = []
        for seq in seqs:
            if self.has(seq):
                self._take(seq - self.base, tally)
                removed.append(seq)
        for ident, gone in tally.items():
            gone.sort()
            self._forget(ident, gone)
        return removed

    def _compact(self, first_seq: int) -> list[int]:
        """Remove everything below ``first_seq``: for each subject, the front of its list."""
        tally: dict[int, list[int]] = {}
        present, base = self.present, self.base
        stop = min(first_seq - base, len(present))
        pos = present.find(1, 0, max(stop, 0))
        while pos >= 0:
            self._take(pos, tally)
            pos = present.find(1, pos + 1, stop)
        removed: list[int] = []
        for ident, gone in tally.items():
            self._forget(ident, gone)
            removed.extend(gone)
        removed.sort()
        return removed

    def _settle(self) -> None:
        """Move the first sequence to the first stored message; count the interior gaps."""
        st = self.state
        if st.msgs == 0:
            st.first_seq, st.deleted = max(st.first_seq, st.last_seq + 1), 0
            if self.present:
                self._reset(st.first_seq)
            return
        pos = st.first_seq - self.base
        if not (0 <= pos < len(self.present) and self.present[pos]):
            pos = self.present.find(1, max(pos, 0))
            st.first_seq = self.base + pos
        st.deleted = st.last_seq - st.first_seq + 1 - st.msgs
        if pos >= TRIM_AT and pos * 2 >= len(self.present):
            del self.present[:pos], self.sid[:pos], self.size[:pos]
            self.base += pos

    # -- questions ----------------------------------------------------------------------------------

    def subject_of(self, seq: int) -> str | None:
        return self.names[self.sid[seq - self.base]] if self.has(seq) else None

    def subject_info(self, subject: str) -> SubjectInfo | None:
        seqs = self.by_subject.get(subject)
        return SubjectInfo(len(seqs), seqs.first(), seqs.last()) if seqs is not None else None

    def subjects(self, filter: str = ">") -> Iterator[tuple[str, SubjectInfo]]:
        if not any(c in filter for c in "*>"):
            info = self.subject_info(filter)
            if info is not None:
                yield filter, info
            return
        matches = self._matcher(filter)
        for subject, seqs in list(self.by_subject.items()):
            if filter == ">" or matches(subject):
                yield subject, SubjectInfo(len(seqs), seqs.first(), seqs.last())

    def _matcher(self, filter: str) -> Callable[[str], bool]:
        """Whether a subject matches the wildcard ``filter``, remembered per subject: consumers
        ask the same filter of the same subjects at every message."""
        verdicts = self._verdicts.get(filter)
        if verdicts is None:
            if len(self._verdicts) >= 64:
                self._verdicts.clear()
            verdicts = self._verdicts[filter] = {}
        pattern = filter.encode()

        def matches(subject: str) -> bool:
            hit = verdicts.get(subject)
            if hit is None:
                if len(verdicts) >= VERDICTS_MAX:
                    verdicts.clear()
                hit = verdicts[subject] = subject_matches(pattern, subject.encode())
            return hit

        return matches

    def seqs(self, subject: str) -> list[int]:
        """The stored sequences of ``subject`` (a literal), oldest first."""
        seqs = self.by_subject.get(subject)
        return seqs.arr[seqs.head:].tolist() if seqs is not None else []

    def next_seq_matching(self, start_seq: int, filter: str) -> int | None:
        """The first stored sequence ``>= start_seq`` whose subject matches ``filter``."""
        start = max(start_seq, self.state.first_seq) - self.base
        if filter == ">":
            pos = self.present.find(1, max(start, 0))
            return self.base + pos if pos >= 0 else None
        if not any(c in filter for c in "*>"):
            seqs = self.by_subject.get(filter)
            if seqs is None:
                return None
            at = seqs.at_or_after(start_seq)
            return seqs.arr[at] if at < len(seqs.arr) else None
        matches, names, sid, present = self._matcher(filter), self.names, self.sid, self.present
        few = len(self.by_subject) <= SCAN_SUBJECTS
        steps = 0
        pos = present.find(1, max(start, 0))
        while pos >= 0:
            if matches(names[sid[pos]]):
                return self.base + pos
            steps += 1
            if few and steps >= WALK:
                return self._next_by_subject(self.base + pos + 1, filter)
            pos = present.find(1, pos + 1)
        return None

    def _next_by_subject(self, start_seq: int, filter: str) -> int | None:
        """:meth:`next_seq_matching` for a wildcard, one bisection per matching subject."""
        best: int | None = None
        for subject, _ in self.subjects(filter):
            seqs = self.by_subject[subject]
            at = seqs.at_or_after(start_seq)
            if at < len(seqs.arr) and (best is None or seqs.arr[at] < best):
                best = seqs.arr[at]
        return best

    def count_from(self, start_seq: int, filter: str) -> int:
        """How many stored messages at ``start_seq`` or later match ``filter``."""
        if start_seq <= self.state.first_seq and filter == ">":
            return self.state.msgs
        if filter == ">":
            return self.present.count(1, max(start_seq - self.base, 0))
        total = 0
        for subject, _ in self.subjects(filter):
            seqs = self.by_subject[subject]
            total += len(seqs.arr) - seqs.at_or_after(start_seq)
        return total

    def last_seq_matching(self, filter: str) -> int | None:
        last = [info.last for _, info in self.subjects(filter)]
        return max(last) if last else None
