"""DARL_DEVICE resolution (the GPU path itself needs a GPU; these check the choice and its errors)."""

from __future__ import annotations

import pytest
import torch

from darl_core.errors import ModelError
from darl_core.settings import torch_device


def test_auto_follows_what_torch_sees(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DARL_DEVICE", raising=False)
    assert torch_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("DARL_DEVICE", "CPU")
    assert torch_device() == "cpu"


def test_unknown_device_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARL_DEVICE", "tpu")
    with pytest.raises(ModelError, match="auto, cpu, cuda"):
        torch_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARL_DEVICE", "cuda:0")
    with pytest.raises(ModelError, match="no CUDA device"):
        torch_device()


def test_zero_shot_cache_size_is_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from darl_core.errors import ConfigError
    from darl_core.settings import zero_shot_cache_bytes

    monkeypatch.delenv("DARL_ZS_CACHE_MB", raising=False)
    assert zero_shot_cache_bytes() == 256 * 2 ** 20
    monkeypatch.setenv("DARL_ZS_CACHE_MB", "0.5")
    assert zero_shot_cache_bytes() == 2 ** 19
    for bad in ("-1", "lots", "nan"):
        monkeypatch.setenv("DARL_ZS_CACHE_MB", bad)
        with pytest.raises(ConfigError, match="DARL_ZS_CACHE_MB must be"):
            zero_shot_cache_bytes()
