"""Message schedules (``allow_msg_schedules``), answer by answer beside nats-server 2.15.1.

Cases run on the servers of ``test_jetstream_streams_nats_server.py``, compared
the same way: the config rules, every refusal of a bad schedule, and what a
one-shot schedule (``@at`` a time already past, so that it fires at once on
both) leaves in the stream: the produced message with its headers, and the
schedule purged. Repeating schedules and cron are tested on natsd alone
(``tests/plugins/jetstream/test_schedules.py``): when they fire depends on the
clock's second boundaries.
"""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client
from test_jetstream_streams_nats_server import (  # noqa: F401  (fixtures)
    KINDS,
    Req,
    Sleep,
    Step,
    api,
    conns,
    create,
    first_difference,
    first_order_difference,
    masked,
    reply,
    servers,
)

pytestmark = pytest.mark.timeout(120)

PAST = "@at 2020-01-01T00:00:00Z"


def schedule(subject: str, pattern: str, target: str | None, data: str = "x", **headers: str) -> Req:
    hdrs = {"Nats-Schedule": pattern, **headers}
    if target is not None:
        hdrs["Nats-Schedule-Target"] = target
    return Req(subject, data, hdrs)


CASES: dict[str, list[Step]] = {
    "config": [
        create("SC", subjects=["sc.>"], allow_msg_schedules=True),
        create("SCN", subjects=["scn.>"], allow_msg_schedules=True, discard="new"),
        create("SCP", subjects=["scp.>"], allow_msg_schedules=True, deny_purge=True),
        api("STREAM.UPDATE.SC", {"name": "SC", "subjects": ["sc.>"]}),
        create("SCL", subjects=["scl.>"]),
        api("STREAM.UPDATE.SCL", {"name": "SCL", "subjects": ["scl.>"], "allow_msg_schedules": True}),
    ],
    "refusals": [
        create("SD", subjects=["sd.>"]),
        schedule("sd.s", PAST, "sd.t"),
        schedule("sd.s", "not a pattern", "sd.t"),
        create("SR", subjects=["sr.>"], allow_msg_schedules=True),
        schedule("sr.s", "not a pattern", "sr.t"),
        schedule("sr.s", "* * * * *", "sr.t"),  # five fields
        schedule("sr.s", "@every 500ms", "sr.t"),
        schedule("sr.s", "@daily", "sr.t", **{"Nats-Schedule-Time-Zone": "Mars/Olympus"}),
        schedule("sr.s", PAST, "sr.t", **{"Nats-Schedule-Time-Zone": "Europe/Paris"}),
        schedule("sr.s", PAST, None),
        schedule("sr.s", PAST, "sr.s"),
        schedule("sr.s", PAST, "sr.*"),
        schedule("sr.s", PAST, "elsewhere"),
        schedule("sr.s", PAST, "sr.t", **{"Nats-Schedule-TTL": "soon"}),
        schedule("sr.s", PAST, "sr.t", **{"Nats-Schedule-TTL": "5s"}),  # TTLs are off
        schedule("sr.s", PAST, "sr.t", **{"Nats-Schedule-Rollup": "all"}),
        schedule("sr.s", PAST, "sr.t", **{"Nats-Schedule-Source": "sr.t"}),
        schedule("sr.s", PAST, "sr.t", **{"Nats-Schedule-Source": "outside"}),
        schedule("sr.s", PAST, "sr.t", **{"Nats-Rollup": "all"}),
        Req("sr.x", "x", {"Nats-Scheduler": "sr.s"}),
        Req("sr.x", "x", {"Nats-Scheduler": "sr.s", "Nats-Schedule-Next": "later"}),
        api("STREAM.INFO.SR"),
    ],
    "one_shot_fires": [
        create("SO", subjects=["so.>"], allow_msg_schedules=True, allow_msg_ttl=True),
        Req("so.src", "from the source", {"X-Source": "yes"}),
        schedule("so.once", PAST, "so.out", "payload", **{"X-Custom": "kept", "Nats-Msg-Id": "dropped",
                                                          "Nats-Schedule-TTL": "30s"}),
        schedule("so.sourced", PAST, "so.out2", "own", **{"Nats-Schedule-Source": "so.src"}),
        Sleep(1.2),
        api("STREAM.INFO.SO", {"subjects_filter": ">"}),
        api("STREAM.MSG.GET.SO", {"last_by_subj": "so.out"}),
        api("STREAM.MSG.GET.SO", {"last_by_subj": "so.out2"}),
        api("STREAM.MSG.GET.SO", {"last_by_subj": "so.once"}),
    ],
    "replaced_and_cancelled": [
        create("SX", subjects=["sx.>"], allow_msg_schedules=True),
        schedule("sx.s", "@at 2099-01-01T00:00:00Z", "sx.t", "first"),
        schedule("sx.s", "@at 2098-01-01T00:00:00Z", "sx.t", "second"),  # rolls up the first
        api("STREAM.INFO.SX", {"subjects_filter": ">"}),
        Req("sx.s", "plain"),  # cancels it
        api("STREAM.MSG.GET.SX", {"last_by_subj": "sx.s"}),
    ],
}


@pytest.mark.parametrize("case", list(CASES))
async def test_message_schedules_match(conns: dict[str, Client], case: str) -> None:  # noqa: F811
    for i, step in enumerate(CASES[case]):
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            continue
        theirs, ours = [masked(r) for r in await asyncio.gather(*(reply(conns[k], step) for k in KINDS))]
        what = f"step {i} ({step.subject} {step.body!r}{f' {step.headers}' if step.headers else ''})"
        diff = first_difference(ours, theirs)
        assert diff is None, f"{what}: natsd answered differently at {diff}\nnatsd: {ours}\nnats-server: {theirs}"
        order = first_order_difference(ours, theirs)
        assert order is None, f"{what}: natsd's key order differs at {order}"
