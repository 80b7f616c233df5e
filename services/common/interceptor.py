"""Server interceptor: exceptions become proper status codes, never a bare UNKNOWN."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.context import Context

from services.common import tracing
from services.common.errors import InvalidArgument, ServiceError, status_for, unreadable

log = logging.getLogger(__name__)

# A call refused while its client still streams first reads on (discarding) until the client
# half-closes or this passes: gRPC's asyncio client reports a write that fails after the server's
# status as INTERNAL "Internal error from Core", hiding the real code (grpc/grpc#36066).
REFUSAL_DRAIN_S = 1.0
# A refusal's in-band notice waits this long at most for a client that reads nothing.
NOTICE_WRITE_S = 1.0


async def drain_requests(requests: Any, limit_s: float = REFUSAL_DRAIN_S) -> None:
    """Read and drop what a client still sends, until it half-closes or `limit_s` passes."""
    async def read_all() -> None:
        async for _ in requests:
            pass

    with contextlib.suppress(Exception):  # a vanished client or an iterator already closed: nothing to drain
        await asyncio.wait_for(read_all(), limit_s)


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    status, message = status_for(exc)
    if isinstance(exc, ServiceError):
        log.info("call failed", extra={"method": method, "code": status.value, "detail": message})
    else:
        log.error("unhandled error", extra={"method": method, "code": status.value}, exc_info=exc)
    retry_after_s = getattr(exc, "retry_after_s", None)
    if retry_after_s is not None:
        context.set_trailing_metadata((("retry-after", str(retry_after_s)),))
    await context.abort(grpc.StatusCode[status.value], message)


class Malformed:
    """A request whose bytes are no message of its type: gRPC would answer UNKNOWN (or, in a stream,
    end the stream) before any handler sees it, so the deserializer hands this on and the handler
    answers INVALID_ARGUMENT."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # noqa: BLE001 (whatever the parser raises, the caller sent a bad message)
            return Malformed(exc)

    return parse


def _refused(request: Any) -> InvalidArgument | None:
    if isinstance(request, Malformed):
        return InvalidArgument(unreadable(request.error))
    return None


def _passes_through(exc: BaseException) -> bool:
    # Aborts already carry a status; cancellation must propagate.
    return isinstance(exc, (grpc.aio.AbortError, asyncio.CancelledError, GeneratorExit))


async def _checked(requests: Any) -> Any:
    """A request stream as the servicer reads it: a message that could not be read ends it with
    INVALID_ARGUMENT, while the call's own stream stays readable (so it can be drained)."""
    async for request in requests:
        if refused := _refused(request):
            raise refused
        yield request


def _wrap(behavior: Callable[..., Any], method: str, streaming_request: bool = False,
          check: bool = True, traced: Context | None = None) -> Callable[..., Any]:
    """`behavior` with every failure a status (after draining a request stream); `check`: unreadable
    requests are refused as INVALID_ARGUMENT first; `traced`: the caller's trace, the call a span in it."""
    async def fail(request: Any, context: grpc.aio.ServicerContext, exc: BaseException) -> None:
        trace.get_current_span().record_exception(exc)
        if streaming_request:
            await drain_requests(request)
        await _abort(context, exc, method)

    def given(request: Any) -> Any:
        return _checked(request) if streaming_request and check else request

    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if check and not streaming_request and (refused := _refused(request)):
                await _abort(context, refused, method)
            with tracing.server_span(method, traced):
                try:
                    async for item in behavior(given(request), context):
                        yield item
                except BaseException as exc:
                    if _passes_through(exc):
                        raise
                    await fail(request, context, exc)

        return stream

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if check and not streaming_request and (refused := _refused(request)):
            await _abort(context, refused, method)
        with tracing.server_span(method, traced):
            try:
                return await behavior(given(request), context)
            except BaseException as exc:
                if _passes_through(exc):
                    raise
                await fail(request, context, exc)

    return unary


async def write_notice(context: grpc.aio.ServicerContext, notice: Any) -> None:
    """Send a last message if the client takes it soon; a gone or stalled client does not hold the call."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(context.write(notice), NOTICE_WRITE_S)


def refusing(handler: grpc.RpcMethodHandler, exc: ServiceError, method: str,
             notice: Any | None = None) -> grpc.RpcMethodHandler:
    """A handler of `handler`'s kind that refuses every call with `exc`; `notice`, a response message,
    is sent first on a response stream, so a client that reads learns the code even if it writes on."""
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        if notice is not None and handler.response_streaming:
            await write_notice(context, notice)
        raise exc

    return rebuild(handler, lambda _: _wrap(refuse, method, handler.request_streaming, check=False))


def rebuild(handler: grpc.RpcMethodHandler, wrap: Callable[[Callable[..., Any]], Callable[..., Any]],
            *, tolerant: bool = False) -> grpc.RpcMethodHandler:
    """A handler of the same kind and serializers whose behaviour is wrap(the original's); `tolerant`:
    a request that cannot be parsed reaches the behaviour as Malformed."""
    deserializer = handler.request_deserializer
    if tolerant:
        deserializer = _tolerant(deserializer)
    kwargs = {
        "request_deserializer": deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), **kwargs)
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream), **kwargs)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        traced = tracing.incoming(method, handler_call_details.invocation_metadata)
        return rebuild(handler, lambda behavior: _wrap(behavior, method, handler.request_streaming, traced=traced),
                       tolerant=True)


class Guard(grpc.aio.ServerInterceptor):
    """Lets a call through or refuses it, before its handler runs: `guards` says which methods are
    checked, `admits` whether a call's metadata passes, `refusal` what a refused caller is told (and
    `notice`, a response message saying it in band on a response stream)."""

    def guards(self, method: str) -> bool:
        raise NotImplementedError

    def admits(self, metadata: Any) -> bool:
        raise NotImplementedError

    def refusal(self) -> ServiceError:
        raise NotImplementedError

    def notice(self, method: str, refused: ServiceError) -> Any | None:
        return None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or not self.guards(details.method) or self.admits(details.invocation_metadata):
            return handler
        refused = self.refusal()
        return refusing(handler, refused, details.method, self.notice(details.method, refused))
