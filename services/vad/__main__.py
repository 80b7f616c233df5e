from services.common.server import serve_main
from services.vad.config import VadSettings
from services.vad.server import vad_service

if __name__ == "__main__":
    serve_main("vad", VadSettings, vad_service)
