"""The subject trie and its cache."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from natsd.routing.subjects import subject_matches, valid_literal_subject, valid_subject
from natsd.routing.sublist import CACHE_MAX, Sublist, Subscription


def sub(subject: bytes, queue: bytes | None = None, sid: bytes = b"1") -> Subscription:
    return Subscription(object(), subject, queue, sid)


def test_literal_and_wildcards() -> None:
    sl = Sublist()
    subs = {s: sub(s) for s in (b"foo.bar", b"foo.*", b"foo.>", b">", b"*.bar", b"foo.bar.baz")}
    for s in subs.values():
        sl.insert(s)
    got = {s.subject for s in sl.match(b"foo.bar").psubs}
    assert got == {b"foo.bar", b"foo.*", b"foo.>", b">", b"*.bar"}
    assert {s.subject for s in sl.match(b"foo.bar.baz").psubs} == {b"foo.>", b">", b"foo.bar.baz"}
    assert {s.subject for s in sl.match(b"foo").psubs} == {b">"}


def test_queue_groups_are_grouped() -> None:
    sl = Sublist()
    a, b, c = sub(b"q", b"g1"), sub(b"q", b"g1"), sub(b"q.>", b"g2")
    for s in (a, b, c):
        sl.insert(s)
    groups = sorted((len(g) for g in sl.match(b"q").qsubs))
    assert groups == [2]
    assert sorted(len(g) for g in sl.match(b"q.x").qsubs) == [1]


def test_cache_is_invalidated_on_insert_and_remove() -> None:
    sl = Sublist()
    assert not sl.match(b"a.b")
    s1 = sub(b"a.*")
    sl.insert(s1)
    assert sl.match(b"a.b").psubs == (s1,)
    s2 = sub(b"a.b")
    sl.insert(s2)
    assert set(sl.match(b"a.b").psubs) == {s1, s2}
    assert sl.remove(s1)
    assert sl.match(b"a.b").psubs == (s2,)
    assert not sl.remove(s1)
    assert sl.remove(s2)
    assert not sl.match(b"a.b")
    assert sl.count == 0 and sl.all() == []


def test_literal_insert_keeps_unrelated_cache_entries() -> None:
    sl = Sublist()
    busy = sub(b"busy")
    sl.insert(busy)
    first = sl.match(b"busy")
    sl.insert(sub(b"_INBOX.1"))
    assert sl.match(b"busy") is first


def test_cache_is_bounded() -> None:
    sl = Sublist()
    sl.insert(sub(b">"))
    for i in range(CACHE_MAX + 50):
        sl.match(b"s.%d" % i)
    assert len(sl.cache) <= CACHE_MAX


token = st.sampled_from([b"a", b"b", b"c"])
pattern_token = st.sampled_from([b"a", b"b", b"c", b"*"])


@st.composite
def patterns(draw: st.DrawFn) -> bytes:
    toks = draw(st.lists(pattern_token, min_size=1, max_size=4))
    if draw(st.booleans()):
        toks.append(b">")
    return b".".join(toks)


@settings(max_examples=200, deadline=None)
@given(st.lists(patterns(), max_size=12), st.lists(st.lists(token, min_size=1, max_size=5), max_size=10))
def test_match_agrees_with_brute_force(pats: list[bytes], subjects: list[list[bytes]]) -> None:
    sl = Sublist()
    subs = [sub(p, sid=str(i).encode()) for i, p in enumerate(pats)]
    for s in subs:
        sl.insert(s)
    for toks in subjects:
        subject = b".".join(toks)
        expected = {id(s) for s in subs if subject_matches(s.subject, subject)}
        assert {id(s) for s in sl.match(subject).psubs} == expected
    for s in subs[::2]:
        sl.remove(s)
    for toks in subjects:
        subject = b".".join(toks)
        expected = {id(s) for s in subs[1::2] if subject_matches(s.subject, subject)}
        assert {id(s) for s in sl.match(subject).psubs} == expected


def _valid_by_tokens(subject: bytes, literal: bool) -> bool:
    """The rules token by token: the reference the validators' searches must agree with."""
    if not subject or any(c in subject for c in b" \t\r\n"):
        return False
    tokens = subject.split(b".")
    if any(not t for t in tokens) or b">" in tokens[:-1]:
        return False
    return not literal or not ({b"*", b">"} & set(tokens))


@given(st.lists(st.sampled_from([b"a", b"bc", b"*", b">", b"", b" ", b"\t", b"x>", b"*y", b"\r\n"]), max_size=6))
def test_subject_validation_agrees_with_the_token_rules(parts: list[bytes]) -> None:
    for subject in (b".".join(parts), b"".join(parts)):
        assert valid_subject(subject) == _valid_by_tokens(subject, False), subject
        assert valid_literal_subject(subject) == _valid_by_tokens(subject, True), subject


def test_subject_validation() -> None:
    assert valid_subject(b"foo.*.>")
    assert valid_subject(b">")
    for bad in (b"", b"foo..bar", b".foo", b"foo.", b"foo.>.bar", b"foo bar"):
        assert not valid_subject(bad), bad
    assert valid_literal_subject(b"foo.bar")
    assert valid_literal_subject(b"foo*.bar>")  # wildcards only count as whole tokens
    assert not valid_literal_subject(b"foo.*")
