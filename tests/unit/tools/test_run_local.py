"""`make run`'s choice of Voxtral (one module, its surroundings replaced): the real Voxtral Mini when a
GPU and the hub are there, the small offline one otherwise, each said in one line."""

from __future__ import annotations

import pytest
import torch

from tools import run_local


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    fetched: list[str] = []
    monkeypatch.delenv("VOXTRAL_MODEL_ID", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(run_local, "download", fetched.append)
    return fetched


def test_a_gpu_and_the_hub_run_the_real_voxtral(downloads: list[str], monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _: "NVIDIA H200")
    monkeypatch.setattr(run_local, "hub_reachable", lambda model: model == run_local.REAL_VOXTRAL)
    assert run_local.choose_voxtral() == run_local.REAL_VOXTRAL
    assert downloads == [run_local.REAL_VOXTRAL]
    assert capsys.readouterr().out.strip() == f"model    {run_local.REAL_VOXTRAL} on NVIDIA H200"


@pytest.mark.parametrize(("gpu", "hub", "why"), [(False, True, "no GPU here"),
                                                 (True, False, "the model hub cannot be reached")])
def test_otherwise_the_small_offline_model_and_what_it_means(gpu: bool, hub: bool, why: str, downloads: list[str],
                                                             monkeypatch: pytest.MonkeyPatch, tmp_path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(run_local, "hub_reachable", lambda model: hub)
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setattr(run_local, "ENGLISH_VOXTRAL", tmp_path)
    assert run_local.choose_voxtral() == str(tmp_path)
    line = capsys.readouterr().out.strip()
    assert not downloads and line.count("\n") == 0
    assert f"small offline Voxtral ({why})" in line and run_local.REAL_VOXTRAL in line


def test_a_named_model_is_used_as_named(downloads: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("VOXTRAL_MODEL_ID", str(tmp_path))
    assert run_local.choose_voxtral() == str(tmp_path) and not downloads
