"""Shared fixtures: a fast token counter and a one-call `validate` over data written to tmp_path.

Every test counts tokens with `EstimateCounter` (no tokenizer to load) except the few marked
`slow` that ask for `real_counter`, which loads the default base model's tokenizer once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from droptune import pipeline
from droptune.config import RunConfig
from droptune.report import Report
from droptune.tokens import EstimateCounter, TokenCounter

Validate = Callable[..., Report]


@pytest.fixture
def estimate() -> EstimateCounter:
    return EstimateCounter()


@pytest.fixture(scope="session")
def real_counter() -> TokenCounter:
    """The default custom-backend counter (tokenizer + chat template); ~4 s to load."""
    from droptune.tokens import counter_for

    config = RunConfig()
    return counter_for(config.backend, config.base_model)


@pytest.fixture
def validate_data(tmp_path: Path, estimate: EstimateCounter) -> Validate:
    """`validate_data(data, name="data.jsonl", **config)` -> the Report of that file.

    `data` is str (written as UTF-8) or bytes (written exactly). The run config defaults to
    `min_examples=1` so that one-record files are judged on their content alone.
    """

    def run(data: str | bytes, name: str = "data.jsonl", **config: object) -> Report:
        path = tmp_path / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        config.setdefault("min_examples", 1)
        return pipeline.validate(str(path), RunConfig(**config), counter=estimate)

    return run
