"""The trainer sizes what the run leaves unset to its data (droptune.sizing), records each
choice with its reason in training/metrics.json, and keeps whatever the run sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from droptune_trainer.config import TrainConfig, from_run_config
from droptune_trainer.train import lengths, setup, train, write_training_metrics

from droptune import sizing
from droptune.errors import ConfigError
from tests.trainer.conftest import make_run_dir

QUICK = {"max_length": 256, "evaluate_at_end": False, "checkpoint_every": 10**6}


def run_without_epochs(folder: Path) -> Path:
    """A run folder whose run.json leaves `epochs` to the trainer (RunConfig's "auto")."""
    run_dir = make_run_dir(folder)
    record = json.loads((run_dir / "run.json").read_text())
    record["config"]["epochs"] = None
    (run_dir / "run.json").write_text(json.dumps(record))
    return run_dir


def test_a_run_without_epochs_leaves_them_to_the_trainer():
    assert "epochs" not in from_run_config({"epochs": None, "max_length": 512})
    assert "epochs" not in from_run_config({"epochs": 0})
    assert from_run_config({"epochs": 2})["epochs"] == 2
    config = TrainConfig.from_mapping({})
    assert (config.epochs, config.learning_rate, config.gradient_accumulation) == (None, None, None)


def test_negative_counts_are_refused_with_a_sentence():
    with pytest.raises(ConfigError, match="epochs must be above 0"):
        TrainConfig.from_mapping({"epochs": -1})
    with pytest.raises(ConfigError, match="early_stopping_patience must be 0"):
        TrainConfig.from_mapping({"early_stopping_patience": -2})


def test_unset_settings_are_sized_to_the_data_and_recorded_with_why(
    tmp_path: Path, tiny_model: Path
):
    s = setup(str(run_without_epochs(tmp_path)), overrides={**QUICK, "base_model": str(tiny_model)})
    examples = sum(len(row.examples) for row in s.train_rows)
    assert s.plan is not None and s.plan.epochs.auto
    assert s.config.epochs == sizing.openai_epochs(examples)  # a tiny file: 100+ seen
    assert s.config.learning_rate == 1e-3  # a tiny model
    assert s.config.eval_examples == sizing.VALIDATION_EXAMPLES["cpu"]
    assert lengths(s).total >= 40  # not the handful of steps big packed rows made
    s.config.max_steps = 2  # the test needs the record, not the whole run
    history = train(s)
    metrics = write_training_metrics(s, history)
    saved = json.loads((s.run_dir / "training" / "metrics.json").read_text())
    assert saved["chosen"] == metrics["chosen"]
    for key in ("epochs", "examples_per_step", "learning_rate", "eval_every"):
        assert saved["chosen"][key]["auto"] and saved["chosen"][key]["why"], key
    assert saved["planned_steps"] == s.plan.steps


def test_what_the_run_sets_wins(tmp_path: Path, tiny_model: Path):
    given = {"epochs": 2, "learning_rate": 5e-4, "eval_every": 3, "early_stopping_patience": 0}
    s = setup(
        str(make_run_dir(tmp_path)),
        overrides={**QUICK, **given, "base_model": str(tiny_model), "tokens_per_batch": 512},
    )
    for key, value in given.items():
        assert getattr(s.config, key) == value
        assert not s.plan.to_dict()[key]["auto"]
    assert s.config.tokens_per_batch == 512 and not s.plan.tokens_per_batch.auto


def test_a_micro_batch_shorter_than_the_longest_example_is_refused(
    tmp_path: Path, tiny_model: Path
):
    overrides = {**QUICK, "base_model": str(tiny_model), "max_length": 64, "tokens_per_batch": 64}
    setup(str(make_run_dir(tmp_path)), overrides=overrides)  # examples cut to 64 tokens fit
    with pytest.raises(ConfigError, match="must hold one whole example"):
        setup(str(make_run_dir(tmp_path / "b")), overrides={**overrides, "tokens_per_batch": 32})
