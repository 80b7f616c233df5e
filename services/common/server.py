"""gRPC server bootstrap every service uses: grpc.aio, health, reflection, limits, graceful drain."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.errors import StartupRefused
from services.common.interceptor import ErrorInterceptor
from services.common.settings import ServerSettings
from services.common.stage_auth import TokenInterceptor

log = logging.getLogger(__name__)
S = TypeVar("S", bound=ServerSettings)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class ServiceSpec:
    """What a stage hands the bootstrap: its full gRPC name, how to register, how to warm up."""

    name: str
    register: Callable[[grpc.aio.Server], None]
    warm_up: Callable[[], Awaitable[None]] | None = None
    close: Callable[[], Awaitable[None]] | None = None
    servicer: Any = None  # the registered implementation, for introspection (tests read its state)
    interceptors: tuple[grpc.aio.ServerInterceptor, ...] = ()
    # Called on SIGTERM after health says NOT_SERVING and before new calls are refused: long
    # streams wind down here (given the grace period in seconds).
    drain: Callable[[float], Awaitable[None]] | None = None


def server_options(settings: ServerSettings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        # Accept client keepalive pings as often as our own clients send them.
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
        # Never share a port with another process: a second bind must fail loudly.
        ("grpc.so_reuseport", 0),
        # A fixed flow-control window: a client cannot make the server buffer ever more of what it
        # sends by pushing fast (bandwidth-delay probing would grow the window to many megabytes).
        ("grpc.http2.bdp_probe", 0),
    ]


class GrpcServer:
    """One process's server. Health says NOT_SERVING until warm_up() has finished."""

    def __init__(self, settings: ServerSettings, services: Sequence[ServiceSpec]) -> None:
        self.settings = settings
        self.services = list(services)
        self.health = health.aio.HealthServicer()
        extra = [i for spec in self.services for i in spec.interceptors]
        if settings.auth_token is not None:
            extra.insert(0, TokenInterceptor(settings.auth_token.get_secret_value().strip()))
        self.server = grpc.aio.server(interceptors=[*extra, ErrorInterceptor()], options=server_options(settings))
        self.port = 0
        self._stopped = False

    async def start(self) -> int:
        for spec in self.services:
            spec.register(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [spec.name for spec in self.services]
        reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server)
        for name in ["", *names]:
            await self.health.set(name, NOT_SERVING)
        address = f"{self.settings.host}:{self.settings.port}"
        if self.settings.tls_cert_file and self.settings.tls_key_file:
            client_ca = self.settings.tls_client_ca_file
            credentials = grpc.ssl_server_credentials(
                [(self.settings.tls_key_file.read_bytes(), self.settings.tls_cert_file.read_bytes())],
                root_certificates=client_ca.read_bytes() if client_ca is not None else None,
                require_client_auth=client_ca is not None)
            self.port = self.server.add_secure_port(address, credentials)
        else:
            self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.settings.host}:{self.settings.port}")
        await self.server.start()
        log.info("listening", extra={"address": f"{self.settings.host}:{self.port}", "services": names})
        return self.port

    async def warm_up(self) -> None:
        for spec in self.services:
            if spec.warm_up is not None:
                started = asyncio.get_running_loop().time()
                await spec.warm_up()
                log.info("warmed up", extra={"service_name": spec.name,
                                             "seconds": round(asyncio.get_running_loop().time() - started, 3)})
        for name in ["", *(spec.name for spec in self.services)]:
            await self.health.set(name, SERVING)
        log.info("serving")

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first (balancers stop routing), refuse new calls, drain the rest."""
        if self._stopped:
            return
        self._stopped = True
        grace = self.settings.grace_s if grace is None else grace
        await self.health.enter_graceful_shutdown()
        log.info("draining", extra={"grace_s": grace})
        started = asyncio.get_running_loop().time()
        for spec in self.services:
            if spec.drain is not None:
                await spec.drain(grace)
        await self.server.stop(max(0.0, grace - (asyncio.get_running_loop().time() - started)))
        for spec in self.services:
            if spec.close is not None:
                await spec.close()
        log.info("stopped")


async def run_service(settings: ServerSettings, services: Sequence[ServiceSpec]) -> None:
    """Process entry point: serve until SIGTERM or SIGINT, then drain for the grace period."""
    server = GrpcServer(settings, services)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    warm = asyncio.create_task(server.warm_up())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({warm, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if warm.done() and warm.exception() is not None:
        log.error("warm-up failed", exc_info=warm.exception())
        await server.stop(grace=0)
        raise SystemExit(1)
    await stopping
    warm.cancel()
    await server.stop()


def serve_main(name: str, settings_class: type[S], service: Callable[[S], ServiceSpec]) -> S:
    """The body of every stage's __main__: settings, logs, then serve until SIGTERM. The stages keep
    glibc's adaptive allocator (not services.common.heap's, which the gateway takes): under a fixed
    mmap threshold every tensor is mapped and unmapped per call, and Voxtral's generation took 1.38x
    as long, Smart Turn's decision 1.12x (make bench-heap)."""
    from services.common.logs import configure_logging
    from services.common.settings import load_settings
    from services.common.tracing import configure_tracing, shutdown_tracing

    settings = load_settings(settings_class)
    configure_logging(name, settings.log_level, json_lines=settings.log_json)
    tracing = configure_tracing(name)
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.host)

    async def serve() -> None:
        # Built inside the event loop: gRPC channels and locks belong to the loop that runs them.
        await run_service(settings, [service(settings)])

    try:
        asyncio.run(serve())
    except StartupRefused as err:
        log.error("cannot start: %s", err)
        print(f"{name}: cannot start: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        if tracing:
            shutdown_tracing()
    return settings
