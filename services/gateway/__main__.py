import asyncio

from prometheus_client import start_http_server

from services.common.heap import keep_heap_small
from services.common.logs import configure_logging
from services.common.server import run_service
from services.common.settings import load_settings
from services.common.tracing import configure_tracing, shutdown_tracing
from services.gateway.config import GatewaySettings
from services.gateway.metrics import GatewayMetrics
from services.gateway.wiring import gateway_service


def main() -> None:
    keep_heap_small()  # before any thread starts: sessions' memory goes back when they end
    settings = load_settings(GatewaySettings)
    configure_logging("gateway", settings.log_level, json_lines=settings.log_json)
    tracing = configure_tracing("gateway")
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host)

    async def serve() -> None:
        # Built inside the event loop: gRPC channels and locks belong to the loop that runs them.
        metrics = GatewayMetrics.process()  # the registry the metrics port serves
        metrics.watch_event_loop(asyncio.get_running_loop())
        await run_service(settings, [gateway_service(settings, metrics)])

    try:
        asyncio.run(serve())
    finally:
        if tracing:
            shutdown_tracing()


if __name__ == "__main__":
    main()
