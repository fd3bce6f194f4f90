"""MQTT topics and NATS subjects, mapped both ways exactly as nats-server maps them.

MQTT separates levels with ``/`` and has ``+``/``#`` wildcards; NATS
separates tokens with ``.`` and has ``*``/``>``. nats-server's rules
(``mqttToNATSSubjectConversion``), which natsd follows so that MQTT and NATS
clients of either server exchange messages on the same subjects:

- ``/`` becomes ``.``; a leading ``/`` becomes ``/.``, and a ``/`` that ends
  the topic or is followed by another ``/`` becomes ``./`` (empty levels are
  kept: ``foo//bar`` is ``foo./.bar``);
- ``.`` inside a level becomes ``//``;
- ``+`` becomes ``*`` and ``#`` becomes ``>``; a filter ending in ``/#``
  also matches its parent level (``foo/#`` subscribes ``foo.>`` and ``foo``);
- a subject ending in ``.`` gets a trailing ``/``;
- whitespace and DEL are refused.

The reverse (a NATS subject shown to an MQTT subscriber) undoes the escapes.
"""

from __future__ import annotations

from functools import lru_cache

from natsd.routing.subjects import valid_literal_subject

CACHED = 8192
"""Conversions remembered (devices publish on the same topics again and again)."""

UNSUPPORTED = frozenset(" \t\n\r\f\x7f")


class TopicError(ValueError):
    """A topic name or filter that MQTT, or its mapping to NATS, does not allow."""


def _convert(topic: str, wildcards: bool) -> str:
    out: list[str] = []
    end = len(topic) - 1
    for i, c in enumerate(topic):
        if c == "/":
            if i == 0 or (out and out[-1].endswith(".")):
                out.append("/.")
            elif i == end or topic[i + 1] == "/":
                out.append("./")
            else:
                out.append(".")
        elif c in UNSUPPORTED:
            raise TopicError("unsupported characters in topic")
        elif c == ".":
            out.append("//")
        elif c in "+#":
            if not wildcards:
                raise TopicError(f"wildcards not allowed in publish's topic: {topic!r}")
            out.append("*" if c == "+" else ">")
        else:
            out.append(c)
    subject = "".join(out)
    if subject.endswith("."):
        subject += "/"
    return subject


def check_topic_name(topic: str) -> None:
    """A PUBLISH topic: not empty, no wildcard (MQTT-3.3.2-1, -2)."""
    if not topic:
        raise TopicError("empty topic")
    if "+" in topic or "#" in topic:
        raise TopicError(f"wildcards not allowed in publish's topic: {topic!r}")


def check_topic_filter(topic: str) -> None:
    """A SUBSCRIBE filter: not empty; ``+`` a whole level; ``#`` a whole level and the last."""
    if not topic:
        raise TopicError("empty topic filter")
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "+" in level and level != "+":
            raise TopicError(f"invalid topic filter {topic!r}")
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise TopicError(f"invalid topic filter {topic!r}")


@lru_cache(maxsize=CACHED)
def topic_to_subject(topic: str) -> str:
    """The NATS subject a PUBLISH on ``topic`` goes to (raises :class:`TopicError`).

    A level that is exactly ``*`` or ``>`` would be a NATS wildcard: such a
    topic is refused rather than published to a wildcard subject.
    """
    check_topic_name(topic)
    subject = _convert(topic, False)
    if not valid_literal_subject(subject.encode()):
        raise TopicError(f"topic {topic!r} maps to {subject!r}, not a literal NATS subject")
    return subject


def filter_to_subjects(topic: str) -> list[str]:
    """The NATS subjects a SUBSCRIBE to ``topic`` listens on: one, or two for ``<parent>/#``."""
    check_topic_filter(topic)
    subject = _convert(topic, True)
    subjects = [subject]
    if subject.endswith(".>") and len(subject) > 2:
        subjects.append(subject[:-2])
    return subjects


@lru_cache(maxsize=CACHED)
def subject_to_topic(subject: str) -> str:
    """The topic an MQTT subscriber sees for a message on the NATS ``subject``."""
    out: list[str] = []
    i, end = 0, len(subject)
    while i < end:
        c = subject[i]
        if c == "/":
            if i + 1 < end and subject[i + 1] in "./":
                out.append("/" if subject[i + 1] == "." else ".")
                i += 2
                continue
            i += 1  # a lone '/' (no MQTT topic maps to it) is dropped, as nats-server does
            continue
        out.append("/" if c == "." else c)
        i += 1
    return "".join(out)
