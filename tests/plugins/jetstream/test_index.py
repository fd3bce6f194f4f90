"""The stream index against a plain model of what it must answer (hypothesis)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from natsd.routing.subjects import subject_matches
from natsd_plugins.jetstream.store import index as index_module
from natsd_plugins.jetstream.store.base import Append, Compact, Op, Remove, Skip, StoredMsg
from natsd_plugins.jetstream.store.index import Index

SUBJECTS = [f"{a}.{b}" for a in "abc" for b in "xyz"] + ["a", "b.x.deep"]
FILTERS = [">", "a.>", "*.x", "b.*", "c.z", "a", "nothing.here", "*.*.deep"]


@dataclass
class Model:
    """The stream as a dict of sequence to (subject, size)."""

    msgs: dict[int, tuple[str, int]] = field(default_factory=dict)
    first: int = 0
    last: int = 0

    def apply(self, op: Op) -> list[int]:
        removed: list[int] = []
        if isinstance(op, Append):
            if not self.msgs:
                self.first = op.msg.seq
            self.msgs[op.msg.seq] = (op.msg.subject, op.msg.size())
            self.last = op.msg.seq
        elif isinstance(op, Skip):
            if not self.msgs:
                self.first = op.seq + 1
            self.last = max(self.last, op.seq)
        elif isinstance(op, Remove):
            removed = [s for s in op.seqs if self.msgs.pop(s, None) is not None]
            if not self.msgs:
                self.first = max(self.first, self.last + 1)
        else:
            removed = sorted(s for s in self.msgs if s < op.first_seq)
            for s in removed:
                del self.msgs[s]
            if not self.msgs:
                self.first = max(self.first, self.last + 1, op.first_seq)
                self.last = max(self.last, self.first - 1)
        if self.msgs:
            self.first = min(self.msgs)
        return removed

    def matching(self, filter: str) -> list[int]:
        return sorted(s for s, (subj, _) in self.msgs.items() if subject_matches(filter.encode(), subj.encode()))


def ops() -> st.SearchStrategy[list[tuple[str, int, int]]]:
    kinds = st.sampled_from(["append", "append", "append", "append", "remove", "compact", "skip"])
    return st.lists(st.tuples(kinds, st.integers(0, len(SUBJECTS) - 1), st.integers(0, 40)), max_size=120)


def check(index: Index, model: Model) -> None:
    state = index.state
    assert state.msgs == len(model.msgs)
    assert state.bytes == sum(size for _, size in model.msgs.values())
    assert (state.first_seq, state.last_seq) == (model.first, model.last)
    assert state.deleted == (model.last - model.first + 1 - len(model.msgs) if model.msgs else 0)
    for seq in range(max(model.first - 3, 0), model.last + 3):
        assert index.has(seq) == (seq in model.msgs)
    for filter in FILTERS:
        matching = model.matching(filter)
        assert index.last_seq_matching(filter) == (matching[-1] if matching else None)
        for start in (0, model.first, (model.first + model.last) // 2, model.last, model.last + 1):
            later = [s for s in matching if s >= start]
            assert index.next_seq_matching(start, filter) == (later[0] if later else None), (filter, start)
            assert index.count_from(start, filter) == len(later), (filter, start)
        got = {subject: (info.count, info.first, info.last) for subject, info in index.subjects(filter)}
        want: dict[str, list[int]] = {}
        for seq in matching:
            want.setdefault(model.msgs[seq][0], []).append(seq)
        assert got == {subject: (len(seqs), seqs[0], seqs[-1]) for subject, seqs in want.items()}
        for subject, seqs in want.items():
            assert index.seqs(subject) == seqs


def run(script: list[tuple[str, int, int]]) -> None:
    index, model = Index(), Model()
    for kind, subject, n in script:
        last = model.last
        op: Op
        if kind == "append":
            op = Append(StoredMsg(last + 1, SUBJECTS[subject], b"", b"x" * n, 0))
        elif kind == "skip":
            op = Skip(last + 1)
        elif kind == "remove":
            op = Remove(tuple(range(max(last - n, 0), last + 1, subject + 1)))
        else:
            op = Compact(max(last - n, 0) if subject % 3 else last + 1 + n)
        assert index.apply(op) == model.apply(op), op
        check(index, model)


@contextmanager
def thresholds(**values: int) -> Iterator[None]:
    """The index module's tuning constants set to ``values`` for a while (hypothesis runs many
    examples in one test, so pytest's function-scoped monkeypatch does not fit)."""
    saved = {name: getattr(index_module, name) for name in values}
    for name, value in values.items():
        setattr(index_module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(index_module, name, value)


@settings(max_examples=150, deadline=None)
@given(ops())
def test_the_index_answers_as_the_model(script: list[tuple[str, int, int]]) -> None:
    run(script)


@settings(max_examples=150, deadline=None)
@given(ops())
def test_walking_and_trimming_paths_answer_alike(script: list[tuple[str, int, int]]) -> None:
    """With tiny thresholds: wildcards walk the sequences, the arrays trim their front often."""
    with thresholds(SCAN_SUBJECTS=0, TRIM_AT=2):
        run(script)


@settings(max_examples=150, deadline=None)
@given(ops())
def test_a_wildcard_search_goes_subject_by_subject_after_a_walk_of_one(
        script: list[tuple[str, int, int]]) -> None:
    """With a walk of one message and tiny memos: the subject-by-subject search, and forgetting."""
    with thresholds(WALK=1, VERDICTS_MAX=2):
        run(script)


def test_a_million_messages_cost_about_17_bytes_each() -> None:
    index = Index()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for seq in range(1, 1_000_001):
            index.apply(Append(StoredMsg(seq, SUBJECTS[seq % len(SUBJECTS)], b"", b"", 0)))
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert index.state.msgs == 1_000_000
    assert used < 24_000_000, used  # arrays grow by about an eighth: 17 B a message and slack
    index.apply(Compact(999_001))  # the front goes: so does its memory
    assert index.state.first_seq == 999_001 and len(index.present) < 10_000


@pytest.mark.parametrize("filter", [">", "a.x", "*.y"])
def test_next_and_count_skip_long_gaps(filter: str) -> None:
    index = Index()
    for seq in range(1, 20_001):
        index.apply(Append(StoredMsg(seq, SUBJECTS[seq % 9], b"", b"", 0)))
    index.apply(Remove(tuple(range(2, 19_990))))
    nxt = index.next_seq_matching(2, filter)
    assert nxt is not None and nxt >= 19_990 and subject_matches(filter.encode(), index.subject_of(nxt).encode())
    assert index.count_from(2, filter) == sum(
        1 for s in range(19_990, 20_001) if subject_matches(filter.encode(), SUBJECTS[s % 9].encode()))
