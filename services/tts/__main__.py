from services.common.server import serve_main
from services.tts.config import TtsSettings
from services.tts.server import tts_service

if __name__ == "__main__":
    serve_main("tts", TtsSettings, tts_service)
