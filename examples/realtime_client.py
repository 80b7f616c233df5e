"""Talk to the gateway with the stock OpenAI SDK, as to OpenAI's Realtime API: stream a WAV file,
save the spoken reply.

    pip install "openai[realtime]"
    python examples/realtime_client.py question.wav reply.wav [--url ws://127.0.0.1:8080/v1] [--key KEY]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os

import numpy as np
import soundfile as sf
import soxr
from openai import AsyncOpenAI

RATE = 24000  # audio/pcm is PCM16 mono at 24 kHz


async def main(args: argparse.Namespace) -> None:
    audio, rate = sf.read(args.wav, dtype="float32", always_2d=True)
    pcm = (np.clip(soxr.resample(audio[:, 0], rate, RATE), -1, 1) * 32767).astype("<i2")
    pcm = np.concatenate([pcm, np.zeros(RATE * 2, "<i2")])  # silence after it: the server's VAD ends the turn
    client = AsyncOpenAI(api_key=args.key, websocket_base_url=args.url)
    reply = bytearray()
    async with client.realtime.connect(model="voxtral") as conn:
        await conn.session.update(session={"type": "realtime", "instructions": "Answer briefly.",
                                           "audio": {"input": {"turn_detection": {"type": "server_vad"}}}})
        for i in range(0, len(pcm), RATE // 10):  # 100 ms at a time
            await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i:i + RATE // 10].tobytes()).decode())
        async for event in conn:
            if event.type == "response.output_audio.delta":
                reply += base64.b64decode(event.delta)
            elif event.type == "response.output_audio_transcript.delta":
                print(event.delta, end="", flush=True)
            elif event.type == "error":
                print(f"\nerror: {event.error.message}")
            elif event.type == "response.done":
                print(f"\n{event.response.status}")
                break
    sf.write(args.out, np.frombuffer(bytes(reply), "<i2"), RATE)
    print(f"wrote {args.out} ({len(reply) / 2 / RATE:.2f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wav")
    parser.add_argument("out")
    parser.add_argument("--url", default="ws://127.0.0.1:8080/v1")
    parser.add_argument("--key", default=os.environ.get("VOICE_API_KEY", "local"))
    asyncio.run(main(parser.parse_args()))
