#!/usr/bin/env python3
"""Draw one trace as a trace viewer shows it: docs/images/trace-waterfall.svg.

    python benchmarks/trace_picture.py [--out PATH]

It runs the scenario of docs/tracing.md in-process: an MQTT 5 device (paho-mqtt)
publishes ``orders/new`` with a ``traceparent`` user property and a response
topic; a NATS service (nats-py) answers; a stream stores the message and a pull
consumer fetches it. The spans natsd made, plus the device's own span they hang
from, are drawn as a waterfall (one row per span, indented by depth, bars on a
common time axis). Plain SVG: no plotting library needed.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEVICE_SPAN = "00f067aa0ba902b7"
PARENT = f"00-4bf92f3577b34da6a3ce929d0e0e4736-{DEVICE_SPAN}-01"
COLOURS = {"receive": "#4e79a7", "send": "#59a14f", "store": "#e15759", "deliver": "#f28e2b"}


async def collect() -> list[Any]:
    import nats
    import paho.mqtt.client as mqtt
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from natsd import Server
    from natsd.config.conf import parse
    from natsd.server import free_port

    port = free_port()
    store = tempfile.mkdtemp(prefix="trace-picture-")
    server = Server(parse(f'host: 127.0.0.1\nport: -1\notel {{ exporter: none }}\n'
                          f'mqtt {{ listen: "127.0.0.1:{port}" }}\njetstream {{ store_dir: "{store}" }}'))
    await server.start()
    spans = InMemorySpanExporter()
    server.service("otel").provider.add_span_processor(SimpleSpanProcessor(spans))
    nc = await nats.connect(server.client_url, name="pricing-service")
    js = nc.jetstream()
    await js.add_stream(name="ORDERS", subjects=["orders.>"])
    consumer = await js.pull_subscribe("orders.>", durable="audit")

    async def answer(msg: Any) -> None:
        await nc.publish(msg.reply, b"price: 42", headers={"traceparent": msg.headers["traceparent"]})
    await nc.subscribe("orders.new", cb=answer)
    await nc.flush()
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="truck-7", protocol=mqtt.MQTTv5)
    answered = asyncio.Event()
    loop = asyncio.get_running_loop()
    device.on_message = lambda c, u, m: loop.call_soon_threadsafe(answered.set)
    await asyncio.to_thread(device.connect, "127.0.0.1", port)
    device.loop_start()
    await asyncio.to_thread(lambda: device.subscribe("replies/truck-7")[0])
    await asyncio.sleep(0.2)
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("traceparent", PARENT)]
    props.ResponseTopic = "replies/truck-7"
    await asyncio.to_thread(lambda: device.publish("orders/new", b'{"sku": 1}', qos=1,
                                                   properties=props).wait_for_publish(5))
    await asyncio.wait_for(answered.wait(), 5)
    for msg in await consumer.fetch(1, timeout=5):
        await msg.ack()
    await asyncio.sleep(0.2)
    device.loop_stop()
    await asyncio.to_thread(device.disconnect)
    await nc.close()
    await server.shutdown()
    return list(spans.get_finished_spans())


def render(spans: list[Any]) -> str:
    """The SVG waterfall of ``spans`` (one trace)."""
    parent_of = {s.context.span_id: (s.parent.span_id if s.parent else None) for s in spans}
    device = int(DEVICE_SPAN, 16)

    def depth(span: Any) -> int:
        d, pid = 1, parent_of.get(span.context.span_id)
        while pid is not None and pid != device and pid in parent_of:
            d, pid = d + 1, parent_of[pid]
        return d

    children: dict[int, list[Any]] = {}
    for s in spans:
        children.setdefault(s.parent.span_id if s.parent else 0, []).append(s)
    ordered: list[Any] = []

    def walk(pid: int) -> None:
        for s in sorted(children.get(pid, []), key=lambda s: s.start_time):
            ordered.append(s)
            walk(s.context.span_id)
    walk(device)
    t0 = min(s.start_time for s in spans)
    t1 = max(s.end_time for s in spans)
    total = max(t1 - t0, 1)
    label_w, bar_w, row_h = 330, 560, 26
    width, height = label_w + bar_w + 120, row_h * (len(ordered) + 2) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'font-family="Helvetica, Arial, sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           '<text x="10" y="20" font-size="14" font-weight="bold">trace 4bf92f35…4736: '
           'MQTT device → natsd → NATS service, stream, consumer</text>',
           f'<text x="10" y="{row_h + 24}" fill="#555">truck-7 (MQTT 5 device): publish orders/new '
           '— the producer span, outside natsd</text>']
    for i, span in enumerate(ordered):
        y = row_h * (i + 2) + 20
        indent = 10 + 16 * depth(span)
        op = span.name.split(" ")[0]
        who = span.attributes.get("nats.client.name", "")
        label = html.escape(f"{span.name}" + (f"  ({who})" if who else ""))
        x = label_w + bar_w * (span.start_time - t0) / total
        w = max(bar_w * (span.end_time - span.start_time) / total, 2)
        us = (span.end_time - span.start_time) / 1000
        out.append(f'<text x="{indent}" y="{y + 4}">{label}</text>')
        out.append(f'<rect x="{x:.1f}" y="{y - 9}" width="{w:.1f}" height="16" rx="2" '
                   f'fill="{COLOURS.get(op, "#888")}"/>')
        out.append(f'<text x="{x + w + 6:.1f}" y="{y + 4}" fill="#333">'
                   f'{us / 1000:.2f} ms</text>' if us >= 1000 else
                   f'<text x="{x + w + 6:.1f}" y="{y + 4}" fill="#333">{us:.0f} µs</text>')
    axis_y = height - 12
    out.append(f'<line x1="{label_w}" y1="{axis_y - 10}" x2="{label_w + bar_w}" y2="{axis_y - 10}" '
               'stroke="#999"/>')
    for k in range(5):
        x = label_w + bar_w * k / 4
        out.append(f'<text x="{x:.1f}" y="{axis_y}" fill="#555" text-anchor="middle">'
                   f'{total * k / 4 / 1e6:.1f} ms</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "images" / "trace-waterfall.svg"))
    args = ap.parse_args()
    spans = asyncio.run(collect())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(render(spans))
    print(f"{len(spans)} spans -> {args.out}")


if __name__ == "__main__":
    main()
