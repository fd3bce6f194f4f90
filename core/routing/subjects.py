"""Subject syntax: tokens separated by ``.``, with ``*`` and ``>`` wildcards.

Subjects travel through the core as ``bytes`` exactly as they arrived on the
wire, so nothing on the hot path decodes them. These helpers validate them the
way nats-server does for subscriptions and (in pedantic mode) publishes.
"""

from __future__ import annotations

import re

_WS = re.compile(rb"[ \t\r\n]").search


def valid_subject(subject: bytes) -> bool:
    """True if ``subject`` is a valid subscription subject (wildcards allowed).

    Every token is non-empty, ``>`` may only be the last token, and wildcard
    characters only count as wildcards when they are a whole token.
    """
    # C-level searches: every internal publish checks its subject
    if not subject or subject[0] == 46 or subject[-1] == 46 or b".." in subject or _WS(subject):
        return False
    if b">" in subject:
        tokens = subject.split(b".")
        tokens.pop()
        return b">" not in tokens
    return True


def valid_literal_subject(subject: bytes) -> bool:
    """True if ``subject`` is valid and has no wildcard tokens (publishable)."""
    if not valid_subject(subject):
        return False
    if b"*" in subject or b">" in subject:
        tokens = subject.split(b".")
        return b"*" not in tokens and b">" not in tokens
    return True


def has_wildcard(subject: bytes) -> bool:
    """True if any whole token of ``subject`` is ``*`` or ``>``."""
    if b"*" not in subject and b">" not in subject:
        return False
    return any(t == b"*" or t == b">" for t in subject.split(b"."))


def subject_matches(pattern: bytes, subject: bytes) -> bool:
    """True if the literal ``subject`` is matched by ``pattern``."""
    ptoks = pattern.split(b".")
    stoks = subject.split(b".")
    for i, p in enumerate(ptoks):
        if p == b">":
            return len(stoks) > i
        if i >= len(stoks):
            return False
        if p != b"*" and p != stoks[i]:
            return False
    return len(ptoks) == len(stoks)


def subjects_collide(a: bytes, b: bytes) -> bool:
    """True if some literal subject could be matched by both ``a`` and ``b``."""
    at = a.split(b".")
    bt = b.split(b".")
    for i in range(max(len(at), len(bt))):
        x = at[i] if i < len(at) else None
        y = bt[i] if i < len(bt) else None
        if x == b">" or y == b">":
            return x is not None and y is not None
        if x is None or y is None:
            return False
        if x != y and x != b"*" and y != b"*":
            return False
    return True


def subject_is_subset(subject: bytes, pattern: bytes) -> bool:
    """nats-server's subjectIsSubsetMatch: is every subject matched by ``subject`` matched by ``pattern``."""
    tokens = subject.split(b".")
    test = pattern.split(b".")
    for i, t2 in enumerate(test):
        if i >= len(tokens) or not t2:
            return False
        if t2 == b">":
            return True
        t1 = tokens[i]
        if not t1 or t1 == b">":
            return False
        if t1 == b"*":
            if t2 != b"*":
                return False
            continue
        if t2[:1] != b"*" and t1 != t2:
            return False
    return len(tokens) == len(test)
