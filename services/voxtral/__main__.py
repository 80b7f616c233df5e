from services.common.server import serve_main
from services.voxtral.config import VoxtralSettings
from services.voxtral.server import voxtral_service

if __name__ == "__main__":
    serve_main("voxtral", VoxtralSettings, voxtral_service)
