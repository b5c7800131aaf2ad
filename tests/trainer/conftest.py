"""A tiny run folder (the bundled example, split) and fast training settings for CPU tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from droptune import pipeline
from droptune.config import RunConfig
from droptune.tokens import EstimateCounter

EXAMPLE = Path(__file__).parents[2] / "droptune" / "examples" / "chat.jsonl"
FAST = {
    "max_length": 256,
    "tokens_per_batch": 512,
    "gradient_accumulation": 1,
    "learning_rate": 1e-3,
    "eval_every": 2,
    "eval_max_new_tokens": 16,
}


VERTEX_ENV = ("AIP_MODEL_DIR", "AIP_CHECKPOINT_DIR", "AIP_TENSORBOARD_LOG_DIR")


def make_run_dir(folder: Path) -> Path:
    """`folder` as a run folder: run.json and the example's data, split."""
    config = RunConfig(min_examples=1, validation_fraction=0.2, test_fraction=0.2)
    report = pipeline.prepare(str(EXAMPLE), config, str(folder), counter=EstimateCounter())
    assert report.valid
    (folder / "run.json").write_text(json.dumps({"run_id": "test", "config": config.to_dict()}))
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A two-layer random Llama with a tokenizer of its own (tests/support/tiny_model.py)."""
    from tests.support.tiny_model import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def run_dir(tmp_path: Path, pulled_model: Path) -> Path:
    return make_run_dir(tmp_path)


@pytest.fixture(autouse=True)
def _no_vertex_env(monkeypatch):
    for name in VERTEX_ENV:
        monkeypatch.delenv(name, raising=False)
