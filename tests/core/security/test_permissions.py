"""Publish/subscribe permissions (natsd.security.permissions), checked against nats-server 2.15.1's rules."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from natsd.security import permissions as perm_mod
from natsd.config.conf import ConfError, parse
from natsd.security.permissions import (
    DEFAULT_RESPONSE_EXPIRES,
    PermissionChecker,
    Permissions,
    ResponsePermission,
    go_quote,
    pub_violation,
    reply_violation,
    sub_violation,
)
from natsd.testing import find_nats_server

NATS_SERVER = find_nats_server()


def conf_perms(text: str, filename: str = "perm.conf") -> Permissions:
    """Permissions from `permissions { <text> }` in a parsed config file."""
    conf = parse(f"permissions {{\n{text}\n}}\n", filename)
    return Permissions.from_config(conf["permissions"], block=conf, key="permissions")


def conf_error(text: str) -> ConfError:
    with pytest.raises(ConfError) as info:
        conf_perms(text)
    return info.value


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def checker(p: Permissions, clock: Clock | None = None) -> PermissionChecker:
    return PermissionChecker(p, clock=clock or Clock())


# -- config shapes -------------------------------------------------------------------


def test_single_subject_list_and_allow_deny_map() -> None:
    p = conf_perms('publish: "a.b"\nsubscribe: ["c", "d.>"]')
    assert p.publish_allow == ("a.b",) and p.publish_deny == ()
    assert p.subscribe_allow == ("c", "d.>") and p.subscribe_deny == ()
    assert p.allow_responses is None
    p = conf_perms('publish { allow: ["a", "b.*"], deny: "b.x" }\nsubscribe { deny: ["q", "r v1"] }')
    assert p.publish_allow == ("a", "b.*") and p.publish_deny == ("b.x",)
    assert p.subscribe_allow is None and p.subscribe_deny == ("q", "r v1")


def test_key_aliases_are_case_insensitive() -> None:
    p = conf_perms('PUB: a\nSub: { ALLOW: b, Deny: c }')
    assert (p.publish_allow, p.subscribe_allow, p.subscribe_deny) == (("a",), ("b",), ("c",))
    p = conf_perms('import: a\nexport: b\npublish_allow_responses: true')
    assert p.publish_allow == ("a",) and p.subscribe_allow == ("b",)
    assert p.allow_responses == ResponsePermission(1, DEFAULT_RESPONSE_EXPIRES)


def test_empty_lists_and_maps_mean_no_restriction() -> None:
    # nats-server turns [] into a nil slice and {} into no permission at all.
    for text in ("publish: []", "publish: {}", "publish: { allow: [] }", "subscribe: []", ""):
        p = conf_perms(text)
        assert p.unrestricted, text
        assert checker(p).can_publish(b"anything") and checker(p).can_subscribe(b">")


def test_allow_responses_shapes_and_defaults() -> None:
    assert conf_perms("allow_responses: false").allow_responses is None
    assert conf_perms("allow_responses: true").allow_responses == ResponsePermission(1, 120.0)
    p = conf_perms('allow_responses: { max: 5, expires: "1m" }')
    assert p.allow_responses == ResponsePermission(5, 60.0)
    p = conf_perms('allow_responses { max_msgs: 0, ttl: "0s" }')  # 0 keeps the defaults
    assert p.allow_responses == ResponsePermission(1, 120.0)
    p = conf_perms('allow_responses { max_responses: -1, expiration: "-1s" }')  # negative: no limit
    assert p.allow_responses == ResponsePermission(-1, -1.0)
    p = conf_perms('allow_responses { max_messages: 3, expires: "1h30m500ms" }')
    assert p.allow_responses == ResponsePermission(3, 5400.5)


def test_allow_responses_turns_off_the_blanket_publish_allow() -> None:
    # Whatever the key order: nats-server applies this after parsing.
    for text in ("allow_responses: true", 'allow_responses: true\npublish: { deny: "z" }',
                 'publish: { deny: "z" }\nallow_responses: true', "publish: []\nallow_responses: true"):
        p = conf_perms(text)
        assert p.publish_allow == (), text
        assert not checker(p).can_publish(b"x")
    p = conf_perms('publish: "ok"\nallow_responses: true')
    assert p.publish_allow == ("ok",)
    assert Permissions(allow_responses=ResponsePermission()).publish_allow == ()


def test_queue_entries_and_their_validation() -> None:
    p = conf_perms('subscribe: ["foo v1", "bar  v2.*", "baz\tq", "foo v1.>"]')
    assert p.subscribe_allow == ("foo v1", "bar  v2.*", "baz\tq", "foo v1.>")
    # nats-server 2.15.1 checks the queue too (2.9.10 did not) ...
    assert conf_error('subscribe: "foo v1.>.x"').reason == 'queue "v1.>.x" is not a valid queue'
    # ... and refuses queue-form entries for publish (2.9.10 took them, matching nothing).
    assert conf_error('publish: "foo v1"').reason == 'subject "foo v1" is not a valid subject'
    assert conf_error('publish: {deny: ["a", "foo v1"]}').reason == 'subject "foo v1" is not a valid subject'


@pytest.mark.parametrize("entry, bad", [
    ("foo..x", "foo..x"),
    ("foo.>.x", "foo.>.x"),
    ("", ""),
    (" foo", " foo"),
    ("foo ", "foo "),
    ("a.b v1 x", "a.b v1 x"),
    ("foo.>.x v1", "foo.>.x"),
    ("foo.. v1", "foo.."),
])
def test_invalid_subjects_name_the_line_and_key(entry: str, bad: str) -> None:
    conf = parse(f'permissions {{\n  publish: "ok"\n  subscribe: {{\n    allow: [\n      "x",\n'
                 f'      "{entry}"\n    ]\n  }}\n}}\n', "users.conf")
    with pytest.raises(ConfError) as info:
        Permissions.from_config(conf["permissions"], block=conf, key="permissions")
    err = info.value
    assert (err.file, err.line, err.key) == ("users.conf", 6, "allow")
    assert err.reason == f"subject {go_quote(bad)} is not a valid subject"


def test_form_feed_in_a_subject_is_invalid() -> None:
    with pytest.raises(ConfError, match="is not a valid subject"):
        Permissions.from_config({"publish": "a.b\f"})
    # Like any whitespace, it may separate a subject from a queue group.
    assert Permissions.from_config({"subscribe": "a\fb"}).subscribe_allow == ("a\fb",)


def test_shape_errors_name_file_line_and_key() -> None:
    err = conf_error("publish: 5")
    assert (err.file, err.line, err.key) == ("perm.conf", 2, "publish")
    assert "Expected subject permissions to be a subject, or array of subjects" in err.reason

    err = conf_error('publish: ["a", true]')
    assert err.key == "publish" and "cannot be cast to string" in err.reason

    err = conf_error('publish {\n allow: a\n bogus: 1\n}')
    assert (err.line, err.key) == (4, "bogus")
    assert err.reason == ("Unknown field name \"bogus\" parsing subject permissions, "
                          "only 'allow' or 'deny' are permitted")

    err = conf_error("publish: a\nbogus: 1")
    assert (err.line, err.key, err.reason) == (3, "bogus", 'Unknown field "bogus" parsing permissions')

    for value in ("1", '"true"', "[true]"):
        err = conf_error(f"allow_responses: {value}")
        assert err.key == "allow_responses" and err.line == 2
        assert err.reason == "error parsing response permissions, expected a boolean or a map"

    err = conf_error('allow_responses {\n max: "x"\n}')
    assert (err.line, err.key) == (3, "max") and "integer" in err.reason
    err = conf_error("allow_responses { max: true }")
    assert err.key == "max"
    err = conf_error("allow_responses {\n\n expires: 5\n}")
    assert (err.line, err.key, err.reason) == (4, "expires", "error parsing expires, not a duration string")
    err = conf_error('allow_responses { ttl: "1x" }')
    assert err.key == "ttl" and err.reason.startswith("error parsing expires")
    err = conf_error('allow_responses { foo: 2 }')
    assert err.key == "foo" and err.reason == 'Unknown field "foo" parsing permissions'

    assert str(conf_error("publish: 5")).startswith("perm.conf:2: key 'publish': ")


def test_permissions_that_are_not_a_map() -> None:
    conf = parse('users = [ { user: a, permissions: "foo" } ]\n', "u.conf")
    entry = conf["users"][0]
    with pytest.raises(ConfError) as info:
        Permissions.from_config(entry["permissions"], block=entry, key="permissions")
    err = info.value
    assert (err.file, err.line, err.key) == ("u.conf", 1, "permissions")
    assert "expected permissions to be a map/struct" in err.reason


def test_used_variables_are_not_unknown_keys() -> None:
    conf = parse("permissions {\n  SUBJ = foo\n  publish: $SUBJ\n}\n", "v.conf")
    p = Permissions.from_config(conf["permissions"], block=conf, key="permissions")
    assert p.publish_allow == ("foo",)


def test_plain_dict_without_positions() -> None:
    p = Permissions.from_config({"publish": {"allow": ["a"]}, "allow_responses": {"max": 2}})
    assert p.publish_allow == ("a",) and p.allow_responses == ResponsePermission(2, 120.0)
    with pytest.raises(ConfError) as info:
        Permissions.from_config({"publish": 1})
    assert info.value.key == "publish" and info.value.line is None


# -- JWT claims ----------------------------------------------------------------------


def test_from_jwt_shapes() -> None:
    assert Permissions.from_jwt({}) is None
    assert Permissions.from_jwt({"pub": {}, "sub": {"allow": [], "deny": None}}) is None
    p = Permissions.from_jwt({"pub": {"allow": ["a.>"], "deny": ["a.b"]},
                              "sub": {"allow": ["x", "y q"], "deny": ["x.z"]}})
    assert p is not None
    assert (p.publish_allow, p.publish_deny) == (("a.>",), ("a.b",))
    assert (p.subscribe_allow, p.subscribe_deny) == (("x", "y q"), ("x.z",))
    assert p.allow_responses is None
    # The user JWT's "nats" member is found on its own.
    p = Permissions.from_jwt({"sub": "UXXX", "nats": {"pub": {"deny": ["secret"]}}})
    assert p is not None and p.publish_allow is None and p.publish_deny == ("secret",)


def test_from_jwt_resp_ttl_is_nanoseconds_and_zero_means_default() -> None:
    p = Permissions.from_jwt({"resp": {"max": 3, "ttl": 5_000_000_000}})
    assert p is not None and p.allow_responses == ResponsePermission(3, 5.0)
    assert p.publish_allow == ()  # only replies may be published
    p = Permissions.from_jwt({"resp": {}})
    assert p is not None and p.allow_responses == ResponsePermission(1, 120.0)
    p = Permissions.from_jwt({"resp": {"max": -1, "ttl": -1}, "pub": {"allow": ["ok"]}})
    assert p is not None and p.allow_responses == ResponsePermission(-1, -1e-9)
    assert p.publish_allow == ("ok",)


def test_from_jwt_explicit_empty_allow_with_deny_allows_nothing() -> None:
    # Go keeps a decoded [] as a non-nil slice: pub.allow exists and is empty.
    p = Permissions.from_jwt({"pub": {"allow": [], "deny": ["x"]}})
    assert p is not None and p.publish_allow == ()
    assert not checker(p).can_publish(b"y")
    p = Permissions.from_jwt({"pub": {"deny": ["x"]}})
    assert p is not None and checker(p).can_publish(b"y") and not checker(p).can_publish(b"x")


@pytest.mark.parametrize("claims", [
    {"pub": ["a"]}, {"pub": {"allow": [1]}}, {"resp": True}, {"resp": {"max": "1"}},
    {"resp": {"ttl": 1.5}}, [],
])
def test_from_jwt_rejects_bad_shapes(claims: Any) -> None:
    with pytest.raises(ValueError):
        Permissions.from_jwt(claims)


# -- publish -------------------------------------------------------------------------


def test_publish_allow_and_deny() -> None:
    c = checker(conf_perms('publish { allow: ["foo.*", "bar.>"], deny: ["foo.secret", "bar.*.x"] }'))
    assert c.can_publish(b"foo.x")
    assert not c.can_publish(b"foo.secret")  # deny wins
    assert not c.can_publish(b"foo.x.y")
    assert not c.can_publish(b"bar")  # '>' needs at least one more token
    assert c.can_publish(b"bar.a") and c.can_publish(b"bar.a.b.c")
    assert not c.can_publish(b"bar.a.x")
    assert not c.can_publish(b"baz")


def test_publish_deny_only() -> None:
    c = checker(conf_perms('publish { deny: ">" }'))
    assert not c.can_publish(b"a") and not c.can_publish(b"a.b")
    c = checker(conf_perms('publish { deny: "$SYS.>" }'))
    assert c.can_publish(b"SYS.x") and not c.can_publish(b"$SYS.x")


def test_subjects_with_empty_tokens_match_no_entry() -> None:
    # nats-server's sublist returns nothing for them: an allow list refuses,
    # a deny list lets them through.
    c = checker(conf_perms('publish: "foo.*.bar"'))
    assert not c.can_publish(b"foo..bar") and c.can_publish(b"foo.x.bar")
    c = checker(conf_perms('publish { deny: ["foo.*.bar", ">"] }'))
    assert c.can_publish(b"foo..bar") and c.can_publish(b"foo.") and c.can_publish(b".foo")
    assert not c.can_publish(b"foo.x.bar")


def test_publish_answers_are_cached_per_subject() -> None:
    c = checker(conf_perms('publish { allow: "a.*", deny: "a.b" }'))
    assert c.can_publish(b"a.c") and not c.can_publish(b"a.b")
    assert c._pcache == {b"a.c": True, b"a.b": False}
    # Beyond the bound the cache starts over, and answers stay right.
    for i in range(perm_mod.PERM_CACHE_MAX * 3):
        assert c.can_publish(b"a.%d" % i)
        assert len(c._pcache) <= perm_mod.PERM_CACHE_MAX
    assert not c.can_publish(b"a.b") and not c.can_publish(b"b.c")
    assert c.can_publish(b"a.c")


def test_compiled_sublists_are_shared_by_connections() -> None:
    p = conf_perms('publish: "a"')
    assert checker(p)._c is checker(p)._c


# -- subscribe -----------------------------------------------------------------------


def test_subscribe_literal_and_wildcards() -> None:
    c = checker(conf_perms('subscribe { allow: ["foo.*", "w.*.*", "bar.>"], deny: ["foo.bar", "bar.x.>"] }'))
    assert c.can_subscribe(b"foo.x")
    assert not c.can_subscribe(b"foo.bar")
    assert c.can_subscribe(b"foo.*")  # covered by foo.*; foo.bar is filtered at delivery
    assert c.can_subscribe(b"foo.>")  # nats-server: foo.* covers foo.> too
    assert not c.can_subscribe(b">") and not c.can_subscribe(b"*.*")
    assert c.can_subscribe(b"w.*.*") and c.can_subscribe(b"w.a.*")
    assert not c.can_subscribe(b"w.>") and not c.can_subscribe(b"w.*")
    assert c.can_subscribe(b"bar.a") and c.can_subscribe(b"bar.>") and c.can_subscribe(b"bar.*.*")
    assert not c.can_subscribe(b"bar.x.y") and not c.can_subscribe(b"bar.x.>")
    assert not c.can_subscribe(b"bar.x.*")  # bar.x.> matches the token '*'


def test_subscribe_wildcard_needs_a_wildcard_allow_entry() -> None:
    c = checker(conf_perms('subscribe: ["foo.bar", "foo.baz"]'))
    assert c.can_subscribe(b"foo.bar")
    assert not c.can_subscribe(b"foo.*") and not c.can_subscribe(b"foo.>")


def test_deny_delivery_for_broader_wildcard_subscriptions() -> None:
    c = checker(conf_perms('subscribe { deny: ["foo.bar", "*.zed", "q v1"] }'))
    assert not c.filter_delivery and not c.deny_delivery(b"foo.bar")
    assert c.can_subscribe(b"other.*")  # overlaps *.zed: other.zed is filtered
    assert c.filter_delivery
    assert c.deny_delivery(b"foo.bar") and c.deny_delivery(b"a.zed")
    assert not c.deny_delivery(b"foo.baz") and not c.deny_delivery(b"q")  # not for plain subscriptions
    assert c.deny_delivery(b"q", b"v1") and not c.deny_delivery(b"q", b"v2")  # a queue entry: its members
    assert c._dcache == {b"foo.bar": True, b"a.zed": True, b"foo.baz": False, b"q": False,
                         (b"q", b"v1"): True, (b"q", b"v2"): False}


def test_queue_subscriptions_start_the_delivery_filter() -> None:
    """nats-server 2.15.1 also filters once a queue subscription overlaps a deny entry."""
    c = checker(conf_perms('subscribe { deny: ["q.x v1", "r.x"] }'))
    assert c.can_subscribe(b"q.y", b"v1") and not c.filter_delivery  # no overlap
    assert c.can_subscribe(b"q.*", b"v1") and c.filter_delivery
    assert c.deny_delivery(b"q.x", b"v1") and not c.deny_delivery(b"q.x", b"v2")
    assert not c.deny_delivery(b"q.x") and c.deny_delivery(b"r.x", b"v1")


def test_delivery_filter_starts_only_for_an_overlapping_wildcard_subscription() -> None:
    c = checker(conf_perms('subscribe { deny: "foo.bar" }'))
    assert c.can_subscribe(b"baz.*") and c.can_subscribe(b"foo.baz") and c.can_subscribe(b"foo.*.x")
    assert not c.filter_delivery
    assert c.can_subscribe(b"*.bar")
    assert c.filter_delivery and c.deny_delivery(b"foo.bar")


def test_deny_star_bar_filters_foo_star() -> None:
    # Any overlap turns the filter on, in nats-server 2.15.1 as in natsd (2.9.10 waited for a
    # deny entry that is a subset of the subscription: there SUB foo.* received foo.zed).
    c = checker(conf_perms('subscribe { deny: "*.zed" }'))
    assert c.can_subscribe(b"foo.*") and c.deny_delivery(b"foo.zed")


def test_queue_permissions_in_allow() -> None:
    c = checker(conf_perms('subscribe: ["foo", "foo v1", "q.> v2.*", "r"]'))
    assert c.can_subscribe(b"foo")
    assert c.can_subscribe(b"foo", b"v1")
    assert not c.can_subscribe(b"foo", b"v2")  # queue entries for foo exist: v1 only
    assert not c.can_subscribe(b"q.a")  # queue-only entry: no plain subscription
    assert c.can_subscribe(b"q.a", b"v2.x") and c.can_subscribe(b"q.a.b", b"v2.*")
    assert not c.can_subscribe(b"q.a", b"v2") and not c.can_subscribe(b"q.a", b"v3.x")
    assert not c.can_subscribe(b"q.a", b"v2.>")  # '>' is not a subset of 'v2.*'
    assert c.can_subscribe(b"r", b"anything")  # no queue entry for r: any queue


def test_queue_permissions_in_deny() -> None:
    c = checker(conf_perms('subscribe { deny: ["e v1", "e.> v2", "d", "d v3"] }'))
    assert c.can_subscribe(b"e") and c.can_subscribe(b"e", b"v2")
    assert not c.can_subscribe(b"e", b"v1")
    assert not c.can_subscribe(b"e.x", b"v2") and not c.can_subscribe(b"e.*", b"v2")
    assert c.can_subscribe(b"e.x", b"v3") and c.can_subscribe(b"e.x")
    assert not c.can_subscribe(b"d")
    # A plain deny entry refuses queue subscriptions too (nats-server 2.9.10 let the
    # queue entries decide alone, accepting "d v1").
    assert not c.can_subscribe(b"d", b"v1") and not c.can_subscribe(b"d", b"v3")


def test_sys_queue_is_refused() -> None:
    c = checker(conf_perms('subscribe: ">"'))
    assert not c.can_subscribe(b"x", perm_mod.SYS_QUEUE) and c.can_subscribe(b"x", b"_SYS_")
    assert not checker(Permissions()).can_subscribe(b"x", b"_sys_")


def test_subscribe_answers_are_cached() -> None:
    c = checker(conf_perms('subscribe { allow: ["a.*", "a.b q"] }'))
    assert c.can_subscribe(b"a.b") and not c.can_subscribe(b"a.b", b"r") and c.can_subscribe(b"a.b", b"q")
    assert c._scache == {b"a.b": True, (b"a.b", b"r"): False, (b"a.b", b"q"): True}
    for i in range(perm_mod.PERM_CACHE_MAX * 2):
        assert c.can_subscribe(b"a.%d" % i) and not c.can_subscribe(b"b.%d" % i)
        assert len(c._scache) <= perm_mod.PERM_CACHE_MAX
    assert not c.can_subscribe(b"a.b", b"r")


# -- allow_responses -----------------------------------------------------------------


def test_reply_allowed_max_times() -> None:
    clock = Clock()
    c = checker(conf_perms('publish: "ok"\nallow_responses: { max: 2 }'), clock)
    assert not c.can_publish(b"_INBOX.1")  # not received yet
    c.note_request(b"_INBOX.1")
    assert c.can_publish(b"_INBOX.1") and c.can_publish(b"_INBOX.1")
    assert not c.can_publish(b"_INBOX.1")
    assert c.pending_replies == 0  # used up: removed
    assert not c.can_publish(b"_INBOX.1")
    assert c.can_publish(b"ok") and not c.can_publish(b"other")


def test_reply_count_restarts_on_a_new_request() -> None:
    c = checker(conf_perms("allow_responses: true"))
    c.note_request(b"r")
    assert c.can_publish(b"r")
    c.note_request(b"r")
    assert c.can_publish(b"r") and not c.can_publish(b"r")


def test_reply_expires() -> None:
    clock = Clock()
    c = checker(conf_perms('allow_responses { max: 10, expires: "1s" }'), clock)
    c.note_request(b"r1")
    clock.now += 1.0
    assert c.can_publish(b"r1")  # not more than 1s yet
    clock.now += 0.001
    assert not c.can_publish(b"r1") and c.pending_replies == 0
    c.note_request(b"r2")
    clock.now += 119  # the 2 minute default does not apply: 1s was configured
    assert not c.can_publish(b"r2")


def test_default_expiry_is_two_minutes() -> None:
    clock = Clock()
    c = checker(conf_perms("allow_responses: { max: 5 }"), clock)
    c.note_request(b"r")
    clock.now += 120
    assert c.can_publish(b"r")
    clock.now += 0.5
    assert not c.can_publish(b"r")


def test_negative_limits_mean_unlimited() -> None:
    clock = Clock()
    c = checker(conf_perms('allow_responses { max: -1, expires: "-1s" }'), clock)
    c.note_request(b"r")
    clock.now += 1e6
    assert all(c.can_publish(b"r") for _ in range(1000))


def test_replies_are_only_tracked_with_allow_responses() -> None:
    c = checker(conf_perms('publish: "ok"'))
    c.note_request(b"r")
    assert c.pending_replies == 0 and not c.can_publish(b"r")


def test_reply_publish_is_not_cached_as_denied() -> None:
    c = checker(conf_perms("allow_responses: true"))
    assert not c.can_publish(b"r") and not c.can_publish(b"r")
    c.note_request(b"r")
    assert c.can_publish(b"r")
    assert b"r" not in c._pcache


def test_deny_still_applies_to_publish_but_replies_override() -> None:
    # As in nats-server, a reply is allowed even to a denied subject.
    c = checker(conf_perms('publish { allow: ">", deny: "secret.>" }\nallow_responses: true'))
    assert not c.can_publish(b"secret.x")
    c.note_request(b"secret.x")
    assert c.can_publish(b"secret.x") and not c.can_publish(b"secret.x")


def test_reply_table_is_pruned_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(perm_mod, "REPLY_PRUNE_AT", 8)
    monkeypatch.setattr(perm_mod, "REPLY_HARD_MAX", 20)
    clock = Clock()
    c = checker(conf_perms('allow_responses { max: 1, expires: "10s" }'), clock)
    for i in range(8):
        c.note_request(b"used.%d" % i)
        assert c.can_publish(b"used.%d" % i)
    c.note_request(b"live.0")  # 9 > 8: the used-up ones go
    assert c.pending_replies == 1
    clock.now += 11
    for i in range(8):
        c.note_request(b"old.%d" % i)
    clock.now += 11
    c.note_request(b"live.1")  # the expired ones go
    assert c.pending_replies <= 9
    for i in range(200):  # live entries only: capped, oldest forgotten first
        c.note_request(b"n.%d" % i)
        assert c.pending_replies <= 20
    assert c.can_publish(b"n.199") and not c.can_publish(b"n.0")


# -- error texts ---------------------------------------------------------------------


def test_violation_texts() -> None:
    assert pub_violation(b"foo.bar") == 'Permissions Violation for Publish to "foo.bar"'
    assert sub_violation(b"foo.*") == 'Permissions Violation for Subscription to "foo.*"'
    assert sub_violation(b"foo", b"v1") == 'Permissions Violation for Subscription to "foo" using queue "v1"'
    assert reply_violation(b"$GNR.x") == 'Permissions Violation for Publish with Reply of "$GNR.x"'
    assert pub_violation("str") == 'Permissions Violation for Publish to "str"'


def test_go_quote() -> None:
    assert go_quote(b'a"b\\c') == '"a\\"b\\\\c"'
    assert go_quote("h\u00e9".encode()) == '"h\u00e9"'
    assert go_quote(b"\x01\x7f\t\n\xff") == '"\\x01\\x7f\\t\\n\\xff"'
    assert go_quote("\u0085\u2028") == '"\\u0085\\u2028"'


# -- side by side with the real nats-server --------------------------------------------


def _require_nats_server() -> str:
    if NATS_SERVER is None:
        if os.environ.get("CI"):
            pytest.fail("nats-server binary not found; CI must run the comparison", pytrace=False)
        pytest.skip("nats-server binary not installed")
    return NATS_SERVER


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Conn:
    def __init__(self, port: int, user: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        assert self._line().startswith(b"INFO ")
        out = self.do(f'CONNECT {{"verbose":false,"pedantic":false,"user":"{user}","pass":"pw",'
                      '"protocol":1}\r\n')
        assert out == [], out

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def do(self, proto: str) -> list[str]:
        """Send ``proto`` and a PING; what came back before the PONG (MSG lines without payload)."""
        self.sock.sendall(proto.encode() + b"PING\r\n")
        out = []
        while True:
            line = self._line()
            if line == b"PONG":
                return out
            if line.startswith(b"INFO "):
                continue  # the INFO after the first PONG of a protocol 1 client (nats-server 2.12+)
            if line.startswith(b"MSG "):
                size = int(line.split()[-1])
                while len(self.buf) < size + 2:
                    self.buf += self.sock.recv(65536)
                self.buf = self.buf[size + 2:]
            out.append(line.decode())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def nats_server(tmp_path: Path):
    """Start nats-server with users u0, u1... (password pw) and the given permission blocks."""
    binary = _require_nats_server()
    procs: list[subprocess.Popen] = []

    def start(perm_blocks: list[str]) -> int:
        port = _free_port()
        users = ",\n".join(f"    {{user: u{i}, password: pw, permissions: {block}}}"
                           for i, block in enumerate(perm_blocks))
        conf = tmp_path / f"s{port}.conf"
        conf.write_text(f"listen: 127.0.0.1:{port}\nauthorization {{\n  users: [\n{users},\n"
                        "    {user: free, password: pw}\n  ]\n}\n")
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return port
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nats-server did not start") from None
                time.sleep(0.05)

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


# (permissions block, operations). An operation is ("pub", subject) or
# ("sub", subject, queue-or-None). Each runs as its own round trip.
SIDE_BY_SIDE: list[tuple[str, list[tuple]]] = [
    ('{publish: {allow: ["foo.*", "bar.>"], deny: ["foo.secret"]}}',
     [("pub", s) for s in ("foo.x", "foo.secret", "foo.x.y", "bar", "bar.a.b", "baz", "foo..x", "foo.")]),
    ('{publish: {deny: ["foo.*.bar", "$SYS.>"]}}',
     [("pub", s) for s in ("foo.x.bar", "foo..bar", "foo.x", "$SYS.a", "SYS.a")]),
    ('{publish: []}', [("pub", "x")]),
    ('{allow_responses: true, publish: {deny: "z"}}', [("pub", "x"), ("pub", "z")]),
    ('{subscribe: {allow: ["foo.*", "q.> v1", "q.x", "w.*.*", "bar.>"], deny: ["foo.bar", "*.zed", "bar.x.>"]}}',
     [("sub", s, None) for s in ("foo.x", "foo.bar", "foo.*", "foo.>", ">", "q.a", "q.x", "w.>",
                                  "w.a.*", "w.*", "*.*", "a.zed", "bar.>", "bar.x.*", "bar.x.y", "bar.*.*")]
     + [("sub", "q.a", "v1"), ("sub", "q.a", "v2"), ("sub", "q.x", "v1"), ("sub", "q.x", "v2"),
        ("sub", "foo.x", "_sys_")]),
    ('{subscribe: {allow: ["foo", "foo v1", "q.> v2.*"]}}',
     [("sub", "foo", None), ("sub", "foo", "v1"), ("sub", "foo", "v2"), ("sub", "q.a", "v2.x"),
      ("sub", "q.a", "v2"), ("sub", "q.a", "v2.>"), ("sub", "q.a", "v2.*"), ("sub", "q.a", None)]),
    ('{subscribe: {deny: ["e v1", "e.> v2", "d", "d v3"]}}',
     [("sub", "e", None), ("sub", "e", "v1"), ("sub", "e", "v2"), ("sub", "e.x", "v2"), ("sub", "e.*", "v2"),
      ("sub", "e.x", "v3"), ("sub", "d", None), ("sub", "d", "v1"), ("sub", "d", "v3")]),
    ('{subscribe: ["foo.bar", "foo.baz"]}',
     [("sub", "foo.bar", None), ("sub", "foo.*", None), ("sub", "foo.>", None)]),
]


def _expected(p: Permissions, ops: list[tuple]) -> list[list[str]]:
    c = PermissionChecker(p)
    out = []
    for op in ops:
        if op[0] == "pub":
            out.append([] if c.can_publish(op[1].encode()) else [f"-ERR '{pub_violation(op[1])}'"])
        else:
            queue = op[2].encode() if op[2] is not None else None
            ok = c.can_subscribe(op[1].encode(), queue)
            out.append([] if ok else [f"-ERR '{sub_violation(op[1], op[2])}'"])
    return out


def _run(conn: _Conn, ops: list[tuple]) -> list[list[str]]:
    out = []
    for i, op in enumerate(ops):
        if op[0] == "pub":
            out.append(conn.do(f"PUB {op[1]} 0\r\n\r\n"))
        else:
            queue = f" {op[2]}" if op[2] is not None else ""
            out.append(conn.do(f"SUB {op[1]}{queue} s{i}\r\n"))
    return out


def test_side_by_side_permission_errors(nats_server: Any) -> None:
    port = nats_server([block for block, _ in SIDE_BY_SIDE])
    for i, (block, ops) in enumerate(SIDE_BY_SIDE):
        conf = parse(f"permissions: {block}\n", "side.conf")
        p = Permissions.from_config(conf["permissions"], block=conf, key="permissions")
        conn = _Conn(port, f"u{i}")
        try:
            real = _run(conn, ops)
        finally:
            conn.close()
        expected = _expected(p, ops)
        for op, theirs, ours in zip(ops, real, expected):
            assert theirs == ours, (block, op)


def test_side_by_side_delivery_filter_and_responses(nats_server: Any) -> None:
    blocks = [
        '{subscribe: {deny: ["foo.bar", "*.zed", "q v1"]}}',
        '{publish: "ok", allow_responses: {max: 2, expires: "400ms"}}',
        '{subscribe: {deny: ["q.x v1"]}}',
    ]
    port = nats_server(blocks)
    sender = _Conn(port, "free")
    sub = _Conn(port, "u0")
    resp = _Conn(port, "u1")
    queues = _Conn(port, "u2")
    try:
        # Delivery filter: foo.* is accepted, foo.bar (and, once filtering, *.zed) dropped.
        c = PermissionChecker(conf_perms("subscribe { deny: [\"foo.bar\", \"*.zed\", \"q v1\"] }"))
        assert sub.do("SUB foo.* 1\r\nSUB q 2\r\n") == []
        assert c.can_subscribe(b"foo.*") and c.can_subscribe(b"q")
        sender.do("PUB foo.bar 1\r\nx\r\nPUB foo.baz 1\r\nx\r\nPUB foo.zed 1\r\nx\r\nPUB q 1\r\nx\r\n")
        real = sub.do("")
        ours = [f"MSG {s} {sid} 1" for s, sid in (("foo.bar", 1), ("foo.baz", 1), ("foo.zed", 1), ("q", 2))
                if not c.deny_delivery(s.encode())]
        assert real == ours == ["MSG foo.baz 1 1", "MSG q 2 1"]

        # nats-server 2.15.1: a queue subscription overlapping a deny entry that names its
        # queue starts the filter, and that entry then drops messages for that queue only.
        c = PermissionChecker(conf_perms('subscribe { deny: ["q.x v1"] }'))
        assert queues.do("SUB q.* v1 1\r\nSUB q.* v2 2\r\n") == []
        assert c.can_subscribe(b"q.*", b"v1") and c.can_subscribe(b"q.*", b"v2")
        sender.do("PUB q.x 1\r\nx\r\nPUB q.y 1\r\nx\r\n")
        real = sorted(queues.do(""))
        ours = sorted(f"MSG {s} {sid} 1" for s in ("q.x", "q.y") for sid, q in ((1, b"v1"), (2, b"v2"))
                      if not c.deny_delivery(s.encode(), q))
        assert real == ours == ["MSG q.x 2 1", "MSG q.y 1 1", "MSG q.y 2 1"]

        # allow_responses: 2 replies per request, counted again after a new request, expiring.
        assert resp.do("SUB req 1\r\nPUB other 0\r\n\r\n") == [
            "-ERR 'Permissions Violation for Publish to \"other\"'"]
        sender.do("PUB req _INBOX.1 0\r\n\r\n")
        assert resp.do("") == ["MSG req 1 _INBOX.1 0"]
        errs = [resp.do("PUB _INBOX.1 0\r\n\r\n") for _ in range(3)]
        assert errs == [[], [], ["-ERR 'Permissions Violation for Publish to \"_INBOX.1\"'"]]
        sender.do("PUB req _INBOX.2 0\r\n\r\n")
        resp.do("")
        time.sleep(0.6)
        assert resp.do("PUB _INBOX.2 0\r\n\r\n") == ["-ERR 'Permissions Violation for Publish to \"_INBOX.2\"'"]
        assert sender.do("SUB x _sys_ 9\r\n") == [
            "-ERR 'Permissions Violation for Subscription to \"x\" using queue \"_sys_\"'"]
    finally:
        for conn in (sender, sub, resp, queues):
            conn.close()


CONFIG_AGREEMENT = [
    '{publish: "a", subscribe: ["b", "c v1"], allow_responses: true}',
    '{pub: {allow: "a", deny: ["b"]}, sub: {}, publish_allow_responses: {max: 2, ttl: "-1s"}}',
    '{publish: "foo..x"}',
    '{subscribe: "foo.>.x v1"}',
    '{subscribe: "foo v1.>.x"}',
    '{subscribe: "foo v1.>"}',
    '{publish: "foo v1"}',
    '{subscribe: "a.b v1 x"}',
    '{subscribe: " foo"}',
    '{publish: 5}',
    '{publish: {allow: "x", bogus: 1}}',
    '{bogus: 1}',
    '{allow_responses: 1}',
    '{allow_responses: {max: 2, expires: 5}}',
    '{allow_responses: {max: 2, expires: "1x"}}',
    '{allow_responses: {foo: 2}}',
    '"foo"',
]


@pytest.mark.parametrize("block", CONFIG_AGREEMENT)
def test_config_accepted_exactly_when_nats_server_accepts(block: str, tmp_path: Path) -> None:
    binary = _require_nats_server()
    text = f"authorization {{\n  users: [ {{user: a, password: b, permissions: {block}}} ]\n}}\n"
    path = tmp_path / "t.conf"
    path.write_text(text)
    run = subprocess.run([binary, "-t", "-c", str(path)], capture_output=True, text=True, timeout=10)
    theirs = "is valid" in run.stdout + run.stderr
    conf = parse(text, str(path))
    entry = conf["authorization"]["users"][0]
    try:
        Permissions.from_config(entry["permissions"], block=entry, key="permissions")
        ours = True
    except ConfError:
        ours = False
    assert ours == theirs, run.stdout + run.stderr
