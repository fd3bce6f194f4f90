"""OpenTelemetry tracing of message flows (``otel {}``).

Each message that carries a W3C ``traceparent`` (and, with
``start_traces``, each message a client publishes) gets spans for its way
through the server, children of the producer's context (:mod:`.spans`);
they are exported over OTLP by the SDK's batching processor, off the event
loop. Settings: :mod:`.settings`; docs/tracing.md.

The plugin registers its service ``"otel"`` (:class:`Otel`): an embedding
program or a test adds span processors to ``service.provider``.
"""

from __future__ import annotations

import logging
from typing import Any

from natsd import hookimpl
from natsd.config import ServerConfig, config_error
from natsd.plugin.contracts import ServerAPI
from natsd.plugin.stash import StashKey

SETTINGS = StashKey[Any]()
OTEL = StashKey["Otel"]()

log = logging.getLogger("natsd.otel")


class Otel:
    """The tracer provider, its exporter and the message tracer of one server."""

    def __init__(self, server: ServerAPI, settings: Any) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON

        from .spans import CountingExporter, OtelTracer

        self.settings = settings
        # who the server is goes in the resource, once, rather than in every span
        resource = Resource.create({**settings.resource, "service.name": settings.service_name,
                                    "service.instance.id": server.server_id, "nats.server.name": server.name})
        # the tracer decides what is sampled before any span exists (spans.OtelTracer.sampled)
        self.provider = TracerProvider(resource=resource, sampler=ALWAYS_ON)
        self.exporter: CountingExporter | None = None
        inner = _exporter(settings)
        if inner is not None:
            self.exporter = CountingExporter(inner)
            self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.tracer = OtelTracer(server, settings, self.provider)

    def stats(self) -> dict[str, Any]:
        exp = self.exporter
        return {"exporter": self.settings.exporter, "sampler": self.settings.sampler,
                "ratio": self.settings.ratio, "traced": self.tracer.traced,
                "exported": exp.exported if exp else 0, "failed": exp.failed if exp else 0}

    def shutdown(self) -> None:
        self.provider.shutdown()


def _exporter(settings: Any) -> Any:
    if settings.exporter == "none":
        return None
    if settings.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    # the exporter's own log would repeat each failure; CountingExporter logs it once
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

        logging.getLogger("opentelemetry.exporter.otlp.proto.grpc.exporter").setLevel(logging.CRITICAL)
        return Grpc(endpoint=settings.endpoint, headers=dict(settings.headers) or None, timeout=settings.timeout)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter").setLevel(logging.CRITICAL)
    return OTLPSpanExporter(endpoint=http_endpoint(settings.endpoint), headers=dict(settings.headers) or None,
                            timeout=settings.timeout)


def http_endpoint(endpoint: str | None) -> str | None:
    """The traces URL of an OTLP/HTTP endpoint given as a base (``http://collector:4318``), as
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` is read; a URL with a path is taken as it is."""
    if endpoint is None:
        return None
    from urllib.parse import urlsplit

    if urlsplit(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


@hookimpl
def natsd_config_blocks() -> tuple[str, ...]:
    return ("otel",)


@hookimpl
def natsd_configure(server: ServerAPI, config: ServerConfig) -> None:
    block = config.blocks.get("otel")
    if block is None:
        return
    from .settings import load

    settings = load(block)
    if settings.exporter == "otlp" and settings.protocol == "grpc":
        try:
            import opentelemetry.exporter.otlp.proto.grpc.trace_exporter  # noqa: F401
        except ImportError:
            raise config_error(block, "protocol", "protocol grpc needs the gRPC exporter: "
                                                  "pip install 'natsd[otel-grpc]'") from None
    server.stash[SETTINGS] = settings


@hookimpl
def natsd_message_tracers(server: ServerAPI) -> Any:
    settings = server.stash.get(SETTINGS, None)
    if settings is None:
        return None
    otel = server.stash[OTEL] = Otel(server, settings)
    server.register_service("otel", otel)
    log.info("OpenTelemetry tracing: %s exporter, sampler %s%s%s", settings.exporter, settings.sampler,
             f" ({settings.ratio:g})" if "ratio" in settings.sampler else "",
             ", starting traces" if settings.start_traces else "")
    return otel.tracer


@hookimpl
async def natsd_shutdown(server: ServerAPI) -> None:
    otel = server.stash.pop(OTEL, None)
    if otel is not None:
        # the batch processor's last export may wait on the network: not on the event loop
        await server.loop.run_in_executor(None, otel.shutdown)


@hookimpl(optionalhook=True)
def natsd_monitor_varz(server: ServerAPI, varz: dict[str, Any]) -> None:
    otel = server.stash.get(OTEL, None)
    if otel is not None:
        varz["otel"] = otel.stats()
