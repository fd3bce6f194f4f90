"""MQTT topics <-> NATS subjects, as nats-server maps them (examples checked against nats-server's
own conversion tests), and the properties that make the mapping safe."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from natsd.routing.subjects import valid_literal_subject, valid_subject
from natsd_plugins.mqtt.topics import TopicError, filter_to_subjects, subject_to_topic, topic_to_subject


@pytest.mark.parametrize(("topic", "subject"), [
    ("foo", "foo"),
    ("foo/bar", "foo.bar"),
    ("/foo", "/.foo"),
    ("foo/", "foo./"),
    ("/foo/", "/.foo./"),
    ("foo//bar", "foo./.bar"),
    ("//foo", "/./.foo"),
    ("foo//", "foo././"),
    ("/", "/./"),
    ("//", "/././"),
    ("foo.bar", "foo//bar"),
    ("foo./bar", "foo//.bar"),
    ("a/b.c/d", "a.b//c.d"),
    ("sport/tennis/player1", "sport.tennis.player1"),
    ("$SYS/x", "$SYS.x"),
])
def test_topic_names(topic: str, subject: str) -> None:
    assert topic_to_subject(topic) == subject
    assert subject_to_topic(subject) == topic


@pytest.mark.parametrize(("topic", "subjects"), [
    ("+", ["*"]),
    ("#", [">"]),
    ("foo/#", ["foo.>", "foo"]),
    ("foo/+/bar", ["foo.*.bar"]),
    ("+/+", ["*.*"]),
    ("/#", ["/.>", "/"]),
    ("foo/bar/#", ["foo.bar.>", "foo.bar"]),
    ("a.b/+", ["a//b.*"]),
])
def test_topic_filters(topic: str, subjects: list[str]) -> None:
    assert filter_to_subjects(topic) == subjects


@pytest.mark.parametrize("topic", ["", "a/+", "a/#", "a b", "a\tb", "a\x7fb", "a/*", ">", "*/x"])
def test_refused_topic_names(topic: str) -> None:
    with pytest.raises(TopicError):
        topic_to_subject(topic)


@pytest.mark.parametrize("topic", ["", "a+", "a/#/b", "a#", "#/a", "a/b#", "a b/#"])
def test_refused_topic_filters(topic: str) -> None:
    with pytest.raises(TopicError):
        filter_to_subjects(topic)


names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=" \t\n\r\f\x7f\x00+#"),
                min_size=1, max_size=30)


@given(names)
def test_every_topic_name_maps_to_a_literal_subject_and_back_or_is_refused(topic: str) -> None:
    if any(level in ("*", ">") for level in topic.split("/")):
        with pytest.raises(TopicError):  # it would be a NATS wildcard
            topic_to_subject(topic)
        return
    subject = topic_to_subject(topic)
    assert valid_literal_subject(subject.encode())
    assert subject_to_topic(subject) == topic


levels = st.lists(st.one_of(st.just("+"), st.text(st.sampled_from("ab./"), max_size=3).filter(
    lambda s: "/" not in s)), min_size=1, max_size=5)


@given(levels, st.booleans())
def test_every_filter_maps_to_valid_subjects(parts: list[str], hash_: bool) -> None:
    topic = "/".join(parts + (["#"] if hash_ else []))
    if not topic:
        return
    for subject in filter_to_subjects(topic):
        assert valid_subject(subject.encode()), (topic, subject)


level_text = st.text(st.sampled_from("ab."), min_size=1, max_size=2)


@given(st.lists(level_text, min_size=1, max_size=4),
       st.lists(st.one_of(st.just("+"), level_text), min_size=1, max_size=4), st.booleans())
def test_retained_matching_agrees_with_the_subjects_a_filter_listens_on(topic_levels: list[str],
                                                                        filter_levels: list[str],
                                                                        hash_: bool) -> None:
    """A retained message goes to a new subscription exactly when a live one would have reached it."""
    from natsd.routing.subjects import subject_matches
    from natsd_plugins.mqtt.connection import topic_matches

    topic = "/".join(topic_levels)
    filter_ = "/".join(filter_levels + (["#"] if hash_ else []))
    subject = topic_to_subject(topic).encode()
    live = any(subject_matches(s.encode(), subject) for s in filter_to_subjects(filter_))
    assert topic_matches(filter_, topic) == live, (filter_, topic)
