"""Atomic batch publish (``allow_atomic``), answer by answer beside nats-server 2.15.1.

Cases run on the servers of ``test_jetstream_streams_nats_server.py`` (a
nats-server and a natsd with ``-js``), with the same comparison: each
publish of a batch is a request whose reply is compared (an empty reply
while a batch is open, the PubAck with ``batch`` and ``count`` at its
commit, or the error), and so are the stream's state and stored messages
afterwards.
"""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client
from test_jetstream_streams_nats_server import (  # noqa: F401  (fixtures)
    KINDS,
    Req,
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


def part(subject: str, batch: str, seq: int | str, data: str = "x", commit: str | None = None,
         **headers: str) -> Req:
    """One message of atomic batch ``batch``."""
    hdrs = {"Nats-Batch-Id": batch, "Nats-Batch-Sequence": str(seq), **headers}
    if commit is not None:
        hdrs["Nats-Batch-Commit"] = commit
    return Req(subject, data, hdrs)


def get(stream: str, seq: int) -> Req:
    return api(f"STREAM.MSG.GET.{stream}", {"seq": seq})


CASES: dict[str, list[Req]] = {
    "config": [
        create("BC", subjects=["bc"], allow_atomic=True),
        create("BCA", subjects=["bca"], allow_atomic=True, persist_mode="async"),
        create("BCM", subjects=["bcm"], allow_atomic=True, storage="memory"),
        api("STREAM.INFO.BCM"),
        api("STREAM.UPDATE.BC", {"name": "BC", "subjects": ["bc"], "allow_atomic": False}),
    ],
    "disabled": [
        create("BD", subjects=["bd"]),
        part("bd", "b1", 1, commit="1"),
        api("STREAM.INFO.BD"),
    ],
    "commit": [
        create("BOK", subjects=["bok.*"], allow_atomic=True),
        part("bok.a", "b1", 1, "one"),
        part("bok.b", "b1", 2, "two"),
        part("bok.a", "b1", 3, "three", commit="1"),
        api("STREAM.INFO.BOK"),
        get("BOK", 1),
        get("BOK", 3),
        part("bok.a", "b1", 1, "again", commit="1"),  # the id can be used again once committed
    ],
    "end_of_batch": [
        create("BEOB", subjects=["beob"], allow_atomic=True),
        part("beob", "e1", 1, "one"),
        part("beob", "e1", 2, "two"),
        part("beob", "e1", 3, "not stored", commit="eob"),
        get("BEOB", 2),
        part("beob", "e2", 1, "alone", commit="eob"),  # nothing to end
        api("STREAM.INFO.BEOB"),
    ],
    "bad_parts": [
        create("BBAD", subjects=["bbad"], allow_atomic=True),
        part("bbad", "x" * 65, 1, commit="1"),
        Req("bbad", "x", {"Nats-Batch-Id": "nos"}),
        part("bbad", "seq", "abc"),
        part("bbad", "late", 2),  # an unknown batch that does not start at 1
        part("bbad", "late", 1001),
        part("bbad", "g", 1), part("bbad", "g", 3),  # a gap: the batch is gone
        part("bbad", "g", 2, commit="1"),
        part("bbad", "c", 1), part("bbad", "c", 2, commit="yes"),
        part("bbad", "c", 3, commit="1"),
        api("STREAM.INFO.BBAD"),
    ],
    "header_checks": [
        create("BH", subjects=["bh.*"], allow_atomic=True, allow_rollup_hdrs=True),
        part("bh.a", "l1", 1), part("bh.a", "l1", 2, commit="1", **{"Nats-Expected-Last-Sequence": "0"}),
        part("bh.a", "l2", 1, **{"Nats-Expected-Last-Sequence": "7"}), part("bh.a", "l2", 2, commit="1"),
        part("bh.a", "l3", 1, **{"Nats-Expected-Last-Sequence": "0"}), part("bh.b", "l3", 2, commit="1"),
        part("bh.a", "l4", 1), part("bh.a", "l4", 2, commit="1", **{"Nats-Expected-Last-Sequence": "3"}),
        part("bh.a", "d1", 1, **{"Nats-Msg-Id": "m"}), part("bh.b", "d1", 2, commit="1", **{"Nats-Msg-Id": "m"}),
        part("bh.a", "i1", 1, commit="1", **{"Nats-Expected-Last-Msg-Id": "m"}),
        part("bh.c", "s1", 1), part("bh.c", "s1", 2, commit="1", **{"Nats-Expected-Last-Subject-Sequence": "0"}),
        part("bh.d", "s2", 1, **{"Nats-Expected-Last-Subject-Sequence": "0"}),
        part("bh.d", "s2", 2, commit="1", **{"Nats-Expected-Last-Subject-Sequence": "0",
                                              "Nats-Expected-Last-Subject-Sequence-Subject": "bh.e"}),
        part("bh.e", "r1", 1), part("bh.e", "r1", 2, commit="1", **{"Nats-Rollup": "sub"}),
        part("bh.e", "r2", 1), part("bh.f", "r2", 2, commit="1", **{"Nats-Rollup": "all"}),
        part("bh.f", "r3", 1, commit="1", **{"Nats-Rollup": "all"}),
        api("STREAM.INFO.BH", {"subjects_filter": ">"}),
    ],
    "discard_new_limits": [
        create("BLIM", subjects=["blim.*"], allow_atomic=True, discard="new", max_msgs=3, max_msgs_per_subject=2),
        part("blim.a", "p1", 1), part("blim.a", "p1", 2), part("blim.a", "p1", 3, commit="1"),
        part("blim.a", "p2", 1), part("blim.b", "p2", 2), part("blim.c", "p2", 3), part("blim.d", "p2", 4, commit="1"),
        part("blim.a", "p3", 1), part("blim.b", "p3", 2, commit="1"),
        api("STREAM.INFO.BLIM"),
        create("BLIMS", subjects=["blims.*"], allow_atomic=True, discard="new", max_msgs_per_subject=2,
               discard_new_per_subject=True, max_bytes=400),
        part("blims.a", "q1", 1), part("blims.a", "q1", 2), part("blims.a", "q1", 3, commit="1"),
        part("blims.a", "q2", 1), part("blims.a", "q2", 2, commit="1"),
        part("blims.b", "q3", 1, "y" * 150), part("blims.c", "q3", 2, "y" * 150, commit="1"),
        api("STREAM.INFO.BLIMS"),
    ],
}


@pytest.mark.parametrize("case", list(CASES))
async def test_atomic_batches_match(conns: dict[str, Client], case: str) -> None:  # noqa: F811
    for i, step in enumerate(CASES[case]):
        theirs, ours = [masked(r) for r in await asyncio.gather(*(reply(conns[k], step) for k in KINDS))]
        what = f"step {i} ({step.subject} {step.body!r}{f' {step.headers}' if step.headers else ''})"
        diff = first_difference(ours, theirs)
        assert diff is None, f"{what}: natsd answered differently at {diff}\nnatsd: {ours}\nnats-server: {theirs}"
        order = first_order_difference(ours, theirs)
        assert order is None, f"{what}: natsd's key order differs at {order}"

