"""The `kokoro` (PyTorch KModel) backend: a KModel of random weights built from Kokoro-82M's real
config, saved as a full weights file and served through the production loader, strictly."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.channels import open_channel
from services.common.server import GrpcServer
from services.tts.config import TtsSettings
from services.tts.engine import KMODEL_PARTS, TorchEngine, load_kmodel
from services.tts.server import tts_service
from tests.support.serving import serve
from tools.fetch_models import KOKORO_DIR
from voice.v1 import tts_pb2, tts_pb2_grpc

# Kokoro's config and voices (make models).


@pytest.fixture(scope="module")
def kokoro_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kokoro import KModel

    folder = tmp_path_factory.mktemp("kokoro")
    for name in ("config.json", "voices-v1.0.npz"):
        shutil.copy2(KOKORO_DIR / name, folder / name)
    torch.manual_seed(0)
    empty = folder / "empty.pth"
    torch.save({}, empty)
    model = KModel(repo_id="hexgrad/Kokoro-82M", config=str(folder / "config.json"), model=str(empty))
    with torch.no_grad():
        model.predictor.duration_proj.linear_layer.bias.fill_(-8.0)  # keep random durations short
    # Saved the way the released weights are: one state dict per part, keys prefixed "module.".
    torch.save({part: {f"module.{k}": v for k, v in getattr(model, part).state_dict().items()}
                for part in KMODEL_PARTS}, folder / "kokoro-v1_0.pth")
    return folder


def test_loader_restores_every_weight(kokoro_dir: Path) -> None:
    saved = torch.load(kokoro_dir / "kokoro-v1_0.pth", weights_only=True)
    model = load_kmodel(kokoro_dir / "config.json", kokoro_dir / "kokoro-v1_0.pth", "cpu")
    for part in KMODEL_PARTS:
        loaded = getattr(model, part).state_dict()
        assert set(loaded) == {k.removeprefix("module.") for k in saved[part]}
        for key, value in loaded.items():
            assert torch.equal(value, saved[part][f"module.{key}"]), f"{part}.{key} not loaded"


def test_loader_refuses_missing_parts_and_keys(kokoro_dir: Path, tmp_path: Path) -> None:
    saved = torch.load(kokoro_dir / "kokoro-v1_0.pth", weights_only=True)
    without_decoder = {k: v for k, v in saved.items() if k != "decoder"}
    torch.save(without_decoder, tmp_path / "a.pth")
    with pytest.raises(ValueError, match=r"missing parts \['decoder'\]"):
        load_kmodel(kokoro_dir / "config.json", tmp_path / "a.pth", "cpu")
    one_key_short = dict(saved)
    one_key_short["predictor"] = dict(list(saved["predictor"].items())[1:])
    torch.save(one_key_short, tmp_path / "b.pth")
    with pytest.raises(RuntimeError, match="Missing key"):
        load_kmodel(kokoro_dir / "config.json", tmp_path / "b.pth", "cpu")


def test_engine_speaks_phonemes_with_the_voice_style(kokoro_dir: Path) -> None:
    engine = TorchEngine(kokoro_dir / "config.json", kokoro_dir / "kokoro-v1_0.pth", "cpu")
    pack = np.load(kokoro_dir / "voices-v1.0.npz")["af_heart"]
    audio = engine.synthesize("həlˈO wˈɜɹld", pack, 1.0)
    assert audio.dtype == np.float32 and audio.size > 0 and np.isfinite(audio).all()
    other = engine.synthesize("həlˈO wˈɜɹld", np.load(kokoro_dir / "voices-v1.0.npz")["am_adam"], 1.0)
    assert not np.array_equal(audio, other)  # the voice pack reaches the model


@pytest.mark.asyncio
async def test_service_on_the_kokoro_backend(kokoro_dir: Path) -> None:
    settings = TtsSettings(port=0, grace_s=0, backend="kokoro", device="cpu", models_dir=kokoro_dir, timeout_s=60)
    server, target = await serve(settings, tts_service(settings))
    try:
        async with open_channel(target, tts_pb2.DESCRIPTOR.services_by_name["TtsService"]) as ch:
            stub = tts_pb2_grpc.TtsServiceStub(ch)
            info = await stub.ListVoices(tts_pb2.ListVoicesRequest(), timeout=5)
            assert info.backend == "kokoro (cpu)"
            chunks = [c async for c in stub.Synthesize(
                tts_pb2.SynthesizeRequest(text="Hello there. How are you?", sample_rate_hz=16000), timeout=60)]
        assert [c.text for c in chunks] == ["Hello there.", "How are you?"]
        assert all(c.sample_rate_hz == 16000 and len(c.audio) > 0 and len(c.audio) % 2 == 0 for c in chunks)
    finally:
        await server.stop(0)


@pytest.mark.asyncio
async def test_missing_weights_fail_the_start_with_a_clear_message(tmp_path: Path) -> None:
    settings = TtsSettings(port=0, backend="kokoro", device="cpu", models_dir=tmp_path)
    server = GrpcServer(settings, [tts_service(settings)])
    port = await server.start()
    try:
        with pytest.raises(FileNotFoundError, match="kokoro-v1_0.pth is missing"):
            await server.warm_up()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await server.stop(0)
