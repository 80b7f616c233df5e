import asyncio

from services.common.logs import configure_logging
from services.common.server import run_service
from services.common.settings import load_settings
from services.vad.config import VadSettings
from services.vad.server import vad_service


def main() -> None:
    settings = load_settings(VadSettings)
    configure_logging("vad", settings.log_level, json_lines=settings.log_json)

    async def serve() -> None:
        # Built inside the event loop: gRPC channels and locks belong to the loop that runs them.
        await run_service(settings, [vad_service(settings)])

    asyncio.run(serve())


if __name__ == "__main__":
    main()
