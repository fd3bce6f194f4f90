"""The ``otel {}`` block, over the standard ``OTEL_*`` environment variables.

::

    otel {
      exporter: otlp                  # otlp (default), console, or none
      endpoint: "http://collector:4318"
      protocol: http/protobuf         # or grpc (pip install 'natsd[otel-grpc]')
      headers: { authorization: "Bearer xyz" }
      service_name: natsd
      resource: { deployment.environment: prod }
      sampler: parentbased_traceidratio
      ratio: 0.01
      start_traces: false             # trace messages that carry no trace context too
      delivery_spans: true            # one span per receiver (false: a count on the receive span)
    }

A key left out takes its ``OTEL_*`` variable as every OpenTelemetry SDK
reads it (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``,
``OTEL_EXPORTER_OTLP_PROTOCOL``, ``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``,
``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_TRACES_EXPORTER``), then the default.
Errors name the file, line and key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from natsd.config import config_error
from natsd.config import fields as value_of

SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on",
            "parentbased_always_off", "parentbased_traceidratio")
PROTOCOLS = ("http/protobuf", "grpc")
EXPORTERS = ("otlp", "console", "none")
KEYS = {"exporter", "endpoint", "protocol", "headers", "service_name", "resource", "sampler", "ratio",
        "start_traces", "delivery_spans", "timeout"}


@dataclass(frozen=True)
class OtelSettings:
    exporter: str = "otlp"
    endpoint: str | None = None
    """None: the exporter's own default (``http://localhost:4318/v1/traces`` for HTTP)."""
    protocol: str = "http/protobuf"
    headers: Mapping[str, str] = field(default_factory=dict)
    service_name: str = "natsd"
    resource: Mapping[str, str] = field(default_factory=dict)
    sampler: str = "parentbased_always_on"
    ratio: float = 1.0
    start_traces: bool = False
    delivery_spans: bool = True
    timeout: float = 10.0

    @property
    def parent_based(self) -> bool:
        return self.sampler.startswith("parentbased_")

    @property
    def root_ratio(self) -> float:
        """The share of traces started here (no parent context) that are sampled."""
        base = self.sampler.removeprefix("parentbased_")
        return {"always_on": 1.0, "always_off": 0.0}.get(base, self.ratio)


def _pairs(text: str) -> dict[str, str]:
    """``k1=v1,k2=v2`` (the W3C baggage-like form OTEL_* variables use)."""
    from urllib.parse import unquote

    out = {}
    for item in text.split(","):
        if "=" in item:
            key, _, value = item.partition("=")
            out[unquote(key.strip())] = unquote(value.strip())
    return out


def _str_map(block: Any, key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise config_error(block, key, f"expected a map of names to strings, got {value!r}")
    return {str(k): str(v) for k, v in value.items()}


def load(block: Any, env: Mapping[str, str] | None = None) -> OtelSettings:
    """Settings from the ``otel {}`` block (a map, or ``true``/``{}`` for the defaults) and ``env``."""
    env = os.environ if env is None else env
    if block is True or block is None:
        block = {}
    if not isinstance(block, Mapping):
        raise config_error(block, "otel", "expected a block otel { ... }")
    for key in block:
        if key not in KEYS:
            raise config_error(block, key, f"unknown field {key!r} (known: {', '.join(sorted(KEYS))})")

    def get(key: str, var: str | None, default: Any) -> tuple[Any, bool]:
        if key in block:
            return block[key], True
        if var is not None and env.get(var):
            return env[var], False
        return default, False

    exporter, _ = get("exporter", "OTEL_TRACES_EXPORTER", "otlp")
    exporter = str(exporter).lower()
    if exporter not in EXPORTERS:
        raise config_error(block, "exporter", f"expected one of {', '.join(EXPORTERS)}, got {exporter!r}")
    endpoint = block.get("endpoint")
    if endpoint is not None:
        endpoint = value_of.string(block, "endpoint", endpoint)
    protocol, _ = get("protocol", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                      or "http/protobuf")
    if protocol not in PROTOCOLS:
        raise config_error(block, "protocol", f"expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    headers = _str_map(block, "headers", block["headers"]) if "headers" in block else {}
    service_name, _ = get("service_name", "OTEL_SERVICE_NAME", "natsd")
    resource = _pairs(env.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    if "resource" in block:
        resource.update(_str_map(block, "resource", block["resource"]))
    sampler, _ = get("sampler", "OTEL_TRACES_SAMPLER", "parentbased_always_on")
    sampler = str(sampler).lower()
    if sampler not in SAMPLERS:
        raise config_error(block, "sampler", f"expected one of {', '.join(SAMPLERS)}, got {sampler!r}")
    ratio_value, from_block = get("ratio", "OTEL_TRACES_SAMPLER_ARG", 1.0)
    try:
        ratio = float(ratio_value)
    except (TypeError, ValueError):
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        if from_block:
            raise config_error(block, "ratio", f"expected a number from 0 to 1, got {ratio_value!r}")
        ratio = 1.0  # as the SDK: a bad OTEL_TRACES_SAMPLER_ARG falls back to the default
    return OtelSettings(
        exporter=exporter,
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        service_name=value_of.string(block, "service_name", service_name),
        resource=resource,
        sampler=sampler,
        ratio=ratio,
        start_traces=value_of.boolean(block, "start_traces", block.get("start_traces", False)),
        delivery_spans=value_of.boolean(block, "delivery_spans", block.get("delivery_spans", True)),
        timeout=value_of.duration(block, "timeout", block["timeout"]) if "timeout" in block else 10.0,
    )
