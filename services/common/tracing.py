"""OpenTelemetry traces, off unless the standard variables ask for them: OTEL_TRACES_EXPORTER=otlp
(to OTEL_EXPORTER_OTLP_ENDPOINT, gRPC) or console. Calls made carry the trace context in their
metadata (OpenTelemetry's aio client instrumentation); calls served open their span under it in
the error interceptor every service has (`incoming`, `server_span`), so a turn's spans in every
service join one trace. Without an exporter the API's no-op tracer is all that runs."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context

log = logging.getLogger(__name__)
EXPORTERS = ("otlp", "console")
# Polled often and of no interest in a turn's trace (method names, and whole services).
QUIET_METHODS = ("GetLoad",)
QUIET_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
tracer = trace.get_tracer("voxtral-voice")
enabled = False  # configure_tracing turned it on in this process


def requested_exporter() -> str:
    """The exporter the environment asks for ("" when tracing is off)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return ""
    chosen = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if chosen in ("", "none"):
        return ""
    if chosen not in EXPORTERS:
        raise SystemExit(f"OTEL_TRACES_EXPORTER={chosen!r} is not supported here: use otlp, console or none")
    return chosen


def configure_tracing(service: str) -> bool:
    """Set up the tracer provider and the gRPC instrumentation (before any server or channel is
    made); False when tracing is off."""
    exporter_name = requested_exporter()
    if not exporter_name:
        return False
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, filters
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, _INSECURE...
    else:
        exporter = ConsoleSpanExporter()
    name = os.environ.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_* tune it
    trace.set_tracer_provider(provider)
    wanted = filters.negate(filters.any_of(filters.health_check(),
                                           *(filters.method_name(m) for m in QUIET_METHODS)))
    # Calls made carry the trace in their metadata; calls served open their span in the error
    # interceptor every service has (`server_span`: it serves handlers that write as well as yield).
    GrpcAioInstrumentorClient(filter_=wanted).instrument()
    global enabled
    enabled = True
    log.info("tracing on", extra={"exporter": exporter_name, "service_name": name})
    return True


def incoming(method: str, metadata: Any) -> Context | None:
    """The caller's trace context for a call served (None: tracing is off, or a method not traced)."""
    if not enabled or method.startswith(QUIET_SERVICES) or method.rsplit("/", 1)[-1] in QUIET_METHODS:
        return None
    from opentelemetry import propagate

    return propagate.extract({key: value for key, value in metadata or () if isinstance(value, str)})


@contextlib.contextmanager
def server_span(method: str, parent: Context | None) -> Iterator[None]:
    """A served call's span, under its caller's trace (nothing when `parent` is None)."""
    if parent is None:
        yield
        return
    with tracer.start_as_current_span(method, context=parent, kind=trace.SpanKind.SERVER,
                                      attributes={"rpc.system": "grpc", "rpc.method": method}):
        yield


def shutdown_tracing() -> None:
    """Send what is buffered (at exit)."""
    provider: Any = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A child of the current span, current inside the block."""
    with tracer.start_as_current_span(name, attributes=_clean(attributes)) as current:
        yield current


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}


def start_root(name: str, link_to: trace.Span | None = None, **attributes: Any) -> trace.Span:
    """A span that begins a trace of its own (a turn), linked to `link_to` (its session)."""
    links = [trace.Link(link_to.get_span_context())] if link_to is not None and link_to.is_recording() else []
    return tracer.start_span(name, context=Context(), links=links, attributes=_clean(attributes))


def end(span_: trace.Span, **attributes: Any) -> None:
    """End `span_` with these attributes, once (a span already ended is left alone)."""
    if span_.is_recording():
        span_.set_attributes(_clean(attributes))
        span_.end()


def record(name: str, parent: trace.Span | Context, started_at: float, ended_at: float, **attributes: Any) -> None:
    """A span for something already over, from monotonic times (a wait measured, not wrapped), under
    `parent` (a span, or a context such as a carrier's)."""
    context = trace.set_span_in_context(parent) if isinstance(parent, trace.Span) else parent
    if not trace.get_current_span(context).get_span_context().is_valid:
        return  # tracing is off, or nothing to hang it on
    now_ns, now = time.time_ns(), time.monotonic()
    start_ns = now_ns - int((now - started_at) * 1e9)
    end_ns = now_ns - int((now - ended_at) * 1e9)
    done = tracer.start_span(name, context=context, start_time=start_ns, attributes=_clean(attributes))
    done.end(end_time=max(start_ns, end_ns))


def carrier(span_: trace.Span) -> dict[str, str]:
    """The W3C trace context of `span_`, to send in band (empty when tracing is off)."""
    from opentelemetry import propagate

    found: dict[str, str] = {}
    if span_.get_span_context().is_valid:
        propagate.inject(found, context=trace.set_span_in_context(span_))
    return found


def context_of(found: dict[str, str]) -> Context:
    """The context a carrier names (a parent for spans made here)."""
    from opentelemetry import propagate

    return propagate.extract(found)
