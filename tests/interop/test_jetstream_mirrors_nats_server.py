"""Mirrors and sources on one server, beside nats-server 2.15.1.

Cases run on the servers of ``test_jetstream_streams_nats_server.py``: an
origin stream, a mirror and sourcing streams of it, publishes before and
after, a deleted message; the streams' states and stored messages are
compared after the feeds caught up. What legitimately differs is masked too:
how long ago a feed last heard from its origin (``active``), and the origin's
identity at the end of a ``Nats-Stream-Source`` header (a hash of when the
origin was created).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

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
    pub,
    reply,
    servers,
    update,
)

pytestmark = pytest.mark.timeout(120)

CATCH_UP = Sleep(1.5)


def get(stream: str, seq: int) -> Req:
    return api(f"STREAM.MSG.GET.{stream}", {"seq": seq})


CASES: dict[str, list[Step]] = {
    "config": [
        create("MC", mirror={"name": "ORIG"}, subjects=["mc"]),
        create("MC", mirror={"name": "ORIG"}, sources=[{"name": "ORIG"}]),
        create("MC", mirror={"name": "ORIG"}, first_seq=5),
        create("MC", mirror={"name": "a.b"}),
        create("MC", mirror={"name": "ORIG", "filter_subject": "x", "subject_transforms": [{"src": "y", "dest": "z"}]}),
        create("SC", sources=[{"name": "ORIG"}, {"name": "ORIG"}]),
        create("SC", sources=[{"name": "a b"}]),
        create("SC", sources=[{"name": "ORIG", "external": {"api": "$JS.API.X"}}]),
        create("SC", sources=[{"name": "ORIG", "external": {"api": "$JS.x.API", "deliver": "d.*"}}]),
        create("MD", subjects=["md"], mirror_direct=True),
    ],
    "mirror_follows": [
        create("MO", subjects=["mo.*"]),
        pub("mo.a", "1"), pub("mo.b", "2"), pub("mo.a", "3"),
        api("STREAM.MSG.DELETE.MO", {"seq": 2}),
        create("MM", mirror={"name": "MO"}),
        CATCH_UP,
        pub("mo.b", "4"),
        CATCH_UP,
        api("STREAM.INFO.MM"),
        get("MM", 1), get("MM", 2), get("MM", 4),
        api("STREAM.INFO.MO"),
        api("CONSUMER.NAMES.MO"),
    ],
    "mirror_direct": [
        # a caught-up mirror_direct mirror answers direct gets addressed to its origin: with the
        # origin gone, it is the only one left to answer them
        create("DO", subjects=["do.*"], allow_direct=True),
        pub("do.a", "1"), pub("do.b", "2"), pub("do.a", "3"),
        create("DM", mirror={"name": "DO"}, mirror_direct=True),
        CATCH_UP,
        api("STREAM.INFO.DM"),
        api("STREAM.DELETE.DO"),
        api("DIRECT.GET.DO", {"seq": 2}),
        api("DIRECT.GET.DO.do.a"),
        update("DM", mirror={"name": "DO"}, mirror_direct=False),
        api("DIRECT.GET.DO", {"seq": 2}),
    ],
    "sources_merge": [
        create("SA", subjects=["sa.*"]),
        create("SB", subjects=["sb.*"]),
        pub("sa.x", "a1"), pub("sb.x", "b1"), pub("sa.y", "a2"),
        create("SM", subjects=["sm"], sources=[{"name": "SA", "filter_subject": "sa.x"}, {"name": "SB"}]),
        CATCH_UP,
        pub("sa.x", "a3"), pub("sm", "own"),
        CATCH_UP,
        api("STREAM.INFO.SM", {"subjects_filter": ">"}),
        # the two feeds catch up side by side: which is stored first varies, so by subject
        api("STREAM.MSG.GET.SM", {"last_by_subj": "sa.x"}), api("STREAM.MSG.GET.SM", {"last_by_subj": "sb.x"}),
    ],
    "start_and_transform": [
        create("ST", subjects=["st.*"]),
        pub("st.a", "1"), pub("st.a", "2"), pub("st.b", "3"),
        create("STS", sources=[{"name": "ST", "opt_start_seq": 2,
                                "subject_transforms": [{"src": "st.*", "dest": "copy.{{wildcard(1)}}"}]}]),
        CATCH_UP,
        api("STREAM.INFO.STS", {"subjects_filter": ">"}),
        get("STS", 1),
    ],
}


def mask(value: Any, key: str = "", merged: bool = False) -> Any:
    """Besides the module docstring's: the order of a stream's ``sources`` infos (nats-server's is a
    Go map's), and with ``merged`` the local sequences and times of messages two feeds raced for."""
    if isinstance(value, dict):
        out = {k: mask(v, k, merged) for k, v in value.items()}
        if merged and key == "message":
            out["seq"], out["time"] = "<seq>", "<time>"
        return out
    if isinstance(value, list) and key == "sources" and all(isinstance(v, dict) and "lag" in v for v in value):
        return sorted((mask(v, "", merged) for v in value), key=lambda v: v["name"])
    if isinstance(value, list):
        return [mask(v, "", merged) for v in value]
    if key == "active" and isinstance(value, int) and value > 0:
        return "<ns>"
    if key == "hdrs" and isinstance(value, str):
        text = base64.b64decode(value).decode(errors="replace")
        lines = []
        for line in text.split("\r\n"):
            if line.startswith("Nats-Stream-Source:") and len(line.split(" ")) == 7:
                line = line.rsplit(" ", 1)[0] + " <ident>"
            lines.append(line)
        return "\r\n".join(lines)
    return value


@pytest.mark.parametrize("case", list(CASES))
async def test_mirrors_and_sources_match(conns: dict[str, Client], case: str) -> None:  # noqa: F811
    for i, step in enumerate(CASES[case]):
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            continue
        theirs, ours = [mask(masked(r), merged=case == "sources_merge")
                        for r in await asyncio.gather(*(reply(conns[k], step) for k in KINDS))]
        what = f"step {i} ({step.subject} {step.body!r})"
        diff = first_difference(ours, theirs)
        assert diff is None, f"{what}: natsd answered differently at {diff}\nnatsd: {ours}\nnats-server: {theirs}"
        order = first_order_difference(ours, theirs)
        assert order is None, f"{what}: natsd's key order differs at {order}"
