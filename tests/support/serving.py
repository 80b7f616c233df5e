"""A service served in the test's own process through the production bootstrap."""

from __future__ import annotations

from services.common.server import GrpcServer, ServiceSpec
from services.common.settings import ServerSettings


async def serve(settings: ServerSettings, spec: ServiceSpec) -> tuple[GrpcServer, str]:
    """Started and warmed up on the settings' port (0: an ephemeral one); returns the server and its target."""
    server = GrpcServer(settings, [spec])
    port = await server.start()
    await server.warm_up()
    return server, f"127.0.0.1:{port}"
