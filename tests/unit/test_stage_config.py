"""What a stage launched from the app or the CLI runs with: the benchmark's recipe under the user's settings."""

from __future__ import annotations

import pytest

from darl_core.config import DARL_LOSS, STAGE_DEFAULTS, StageConfig, stage_config
from darl_core.errors import ConfigError
from db.services import launch


@pytest.mark.parametrize("stage", ["lp", "ft", "dasa", "dpo"])
def test_every_training_stage_starts_with_the_darl_loss(stage: str) -> None:
    loss = stage_config(stage).loss
    assert (loss.class_weights, loss.ordinal_weight, loss.ordinal_power, loss.occ_weight) == ("inverse", 1.0, 2.0, 1.0)
    assert StageConfig(stage).loss.ordinal_weight == 0.0  # the dataclass alone stays plain weighted CE


def test_the_lr_follows_the_tuning_and_the_stage_unless_set() -> None:
    assert stage_config("ft", {"tuning": "lora"}).lr == 5e-4 and stage_config("ft", {"tuning": "full"}).lr == 1e-4
    assert stage_config("dasa", {"tuning": "lora"}).lr == 3e-4 and stage_config("dasa", {"tuning": "full"}).lr == 6e-5
    # Left unset, the tuning is the default backbone's "auto" one: all-MiniLM-L6-v2 (22.7M parameters) is tuned fully.
    assert (stage_config("ft").tuning, stage_config("ft").lr, stage_config("dasa").lr) == ("full", 1e-4, 6e-5)
    assert stage_config("dpo", {"tuning": "full"}).lr == 4e-5
    assert stage_config("dasa", {"tuning": "full"}, {"lr": 2e-5}).lr == 2e-5  # explicit wins
    assert stage_config("dasa", {"lr": 2e-5}, {"tuning": "full"}).lr == 2e-5  # in any layer
    assert stage_config("lp").epochs == 10.0 and stage_config("dasa").epochs == 3.0 and stage_config("dpo").epochs == 1.0


def test_loss_settings_merge_field_by_field_and_later_layers_win() -> None:
    config = stage_config("ft", {"loss": {"occ_weight": 0.5}}, {"head_lr": 1e-3})
    assert config.loss.occ_weight == 0.5 and config.loss.ordinal_weight == 1.0 and config.loss.class_weights == "inverse"
    assert config.head_lr == 1e-3
    assert stage_config("ft", {"loss": {"ordinal_weight": 2.0}}, {"loss": {"ordinal_weight": 0.0}}).loss.ordinal_weight == 0
    assert DARL_LOSS["occ_weight"] == 1.0 and STAGE_DEFAULTS["ft"]["loss"] is DARL_LOSS  # merging did not mutate them
    with pytest.raises(ConfigError, match="ordinal_weight"):
        stage_config("ft", {"loss": {"ordinal_weight": -1}})


def test_the_form_shows_the_recipe_and_sends_only_what_changed() -> None:
    fields = {f.name: f.default for f in launch.stage_form("dasa")}
    assert fields["loss.ordinal_weight"] == 1.0 and fields["loss.occ_weight"] == 1.0
    assert fields["epochs"] == 3.0 and fields["lr"] == 6e-5 and fields["tuning"] == "auto"  # auto: full for MiniLM
    assert launch.overrides_from_form("dasa", fields) == {}  # untouched: train_stage decides the tuning
    tuning_help = next(f.help for f in launch.stage_form("dasa") if f.name == "tuning")
    assert tuning_help.endswith("(here: full)")  # what auto means for this backbone (MiniLM, 22.7M parameters)
    # LoRA chosen, lr left as shown: the stage gets LoRA's lr, not full tuning's.
    overrides = launch.overrides_from_form("dasa", {**fields, "tuning": "lora"})
    assert overrides == {"tuning": "lora"}
    assert stage_config("dasa", overrides).lr == 3e-4
    # One loss weight changed: the others stay the recipe's.
    overrides = launch.overrides_from_form("dasa", {**fields, "loss.occ_weight": 0.0})
    assert overrides == {"loss": {"occ_weight": 0.0}}
    assert stage_config("dasa", overrides).loss.ordinal_weight == 1.0


@pytest.mark.parametrize("stage", ["lp", "ft", "dasa", "dpo"])
def test_the_recipe_is_what_the_quality_benchmark_ran(stage: str) -> None:
    """bench/quality.py's configs (full tuning, the committed tables) and the product's recipe differ only in
    the run's own settings, so the README's numbers describe what a launched stage does."""
    from bench.quality import configs

    bench = configs(0, "full", 1, 2.0, None)[stage]
    product = stage_config(stage, {"tuning": "full"})
    differ = {k for k, v in bench.to_dict().items() if v != product.to_dict()[k]}
    assert differ <= {"max_length", "save_every", "threads"}, differ


def test_the_form_asks_only_for_what_the_stage_uses() -> None:
    names = {stage: [f.name for f in launch.stage_form(stage)] for stage in ("lp", "ft", "wi", "dasa", "dpo")}
    assert "lr" not in names["lp"] and "epochs" in names["lp"]  # the probe trains the head alone
    assert "epochs" not in names["wi"] and "loss.occ_weight" not in names["wi"]  # wi trains nothing
    assert {"wi_alphas", "max_length", "calibrate"} <= set(names["wi"])
    assert {"lr", "tuning", "loss.ordinal_weight"} <= set(names["ft"]) & set(names["dasa"]) & set(names["dpo"])
