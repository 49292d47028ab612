"""``tuning: auto``: full tuning for a backbone of up to 150M parameters, LoRA above; a chain keeps its tuning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_models import add_new_labels, make_tiny, seed_tiny_project

from darl_core import backbone_size
from darl_core.backbone_size import auto_tuning, parameter_count
from darl_core.config import stage_config
from db.services.users import SYSTEM


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return make_tiny("bert", tmp_path_factory.mktemp("bert"))


@pytest.mark.parametrize("kind", ["bert", "qwen2"])
def test_the_count_is_the_loaded_models_from_safetensors_and_bin_files(kind: str, tmp_path: Path) -> None:
    from transformers import AutoModel

    path = make_tiny(kind, tmp_path / kind)
    model = AutoModel.from_pretrained(path)
    expected = sum(p.numel() for p in model.parameters())
    assert parameter_count(path) == expected
    (tmp_path / "bin").mkdir()  # the older format: a pickled state dict
    torch.save(model.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    assert parameter_count(tmp_path / "bin") == expected


def test_auto_is_full_up_to_the_cut_and_lora_above(bert: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n = parameter_count(bert)
    tuning, why = auto_tuning(bert)
    assert tuning == "full" and f"{n / 1e6:.1f}M parameters" in why
    config = stage_config("ft", {"model_dir": str(bert)})
    assert (config.tuning, config.lr) == ("full", 1e-4)  # the lr follows the resolved tuning
    assert stage_config("dasa", {"model_dir": str(bert), "tuning": "auto"}).lr == 6e-5  # "auto" said = left unset
    assert stage_config("ft", {"model_dir": str(bert), "tuning": "lora"}).tuning == "lora"  # a choice wins
    assert stage_config("lp", {"model_dir": str(bert)}).tuning == "head"
    monkeypatch.setattr(backbone_size, "FULL_TUNING_MAX_PARAMS", n - 1)
    tuning, why = auto_tuning(bert)
    assert tuning == "lora" and "above" in why
    config = stage_config("ft", {"model_dir": str(bert)})
    assert (config.tuning, config.lr) == ("lora", 5e-4)
    assert stage_config("ce", {"model_dir": str(bert)}).tuning == "full"  # the baseline is full tuning by definition


def test_a_directory_that_cannot_be_sized_gets_lora_and_says_why(bert: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((bert / "config.json").read_text())
    assert auto_tuning(bare) == ("lora", "LoRA: the backbone directory has no weight files to size it by")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    tuning, why = auto_tuning(broken)
    assert tuning == "lora" and why.startswith("LoRA: the backbone's size could not be read")


def test_a_launched_chain_keeps_the_tuning_it_started_with(sqlite_database, bert: Path) -> None:
    from db.services.projects import get_project
    from db.services.training import train_stage
    from db.session import session_scope

    fast = {"epochs": 1, "batch_size": 16, "max_length": 24}
    logs: list[str] = []
    with session_scope(sqlite_database) as session:
        seed_tiny_project(session, bert)
        train_stage(session, "tiny", "lp", overrides=fast, actor=SYSTEM)
        auto = train_stage(session, "tiny", "ft", overrides=fast, progress=lambda f, m: logs.append(m), actor=SYSTEM)
        assert auto.config["tuning"] == "full" and auto.config["lr"] == 1e-4
        assert any("tuning: auto, so full: the backbone has" in m for m in logs)
        lora = train_stage(session, "tiny", "ft", overrides={**fast, "tuning": "lora"}, actor=SYSTEM)
        assert lora.config["tuning"] == "lora"
        add_new_labels(session, get_project(session, "tiny").id)  # new labels after the ft versions, for dasa
        logs.clear()
        dasa = train_stage(session, "tiny", "dasa", from_version=lora.name, overrides=fast,
                           progress=lambda f, m: logs.append(m), actor=SYSTEM)
        # left at auto, the dasa stage keeps its LoRA chain (and LoRA's lr), though auto alone would say full
        assert dasa.config["tuning"] == "lora" and dasa.config["lr"] == pytest.approx(3e-4)
        assert any(f"tuning: lora, as in {lora.name}" in m for m in logs)
        full = train_stage(session, "tiny", "dasa", from_version=auto.name, overrides=fast, actor=SYSTEM)
        assert full.config["tuning"] == "full"
        chosen = train_stage(session, "tiny", "dasa", from_version=lora.name, overrides={**fast, "tuning": "full"},
                             actor=SYSTEM)
        assert chosen.config["tuning"] == "full"  # the user's choice wins over the chain's
