"""The upload function's settings from its environment, and the tokenizer preload they turn on."""

from __future__ import annotations

import pytest

from droptune import tokens
from droptune.config import RunConfig
from droptune.errors import ConfigError
from droptune.intake import IntakeSettings, preload

ENV = {"DROPTUNE_RUNS_BUCKET": "runs", "DROPTUNE_TOPIC": "projects/p/topics/runs"}


def test_defaults_and_every_setting_read():
    assert IntakeSettings.from_env(ENV) == IntakeSettings("runs", "projects/p/topics/runs")
    settings = IntakeSettings.from_env(
        ENV
        | {
            "DROPTUNE_UPLOADS_BUCKET": "uploads",
            "DROPTUNE_DEFAULT_BACKEND": "gemini",
            "DROPTUNE_MAX_UPLOAD_BYTES": "1024",
            "DROPTUNE_MAX_ATTEMPTS": "2",
            "DROPTUNE_PRELOAD_TOKENIZER": "true",
        }
    )
    assert (settings.uploads_bucket, settings.default_backend) == ("uploads", "gemini")
    assert (settings.max_upload_bytes, settings.max_attempts) == (1024, 2)
    assert settings.preload_tokenizer is True


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({}, "needs DROPTUNE_RUNS_BUCKET and DROPTUNE_TOPIC set"),
        (ENV | {"DROPTUNE_TOPIC": "runs"}, "must be projects/<p>/topics/<t>; got 'runs'"),
        (ENV | {"DROPTUNE_MAX_ATTEMPTS": "five"}, "DROPTUNE_MAX_ATTEMPTS must be a whole number"),
        (ENV | {"DROPTUNE_PRELOAD_TOKENIZER": "sure"}, "must be true or false; got 'sure'"),
    ],
)
def test_a_bad_deployment_setting_says_which(env, words):
    with pytest.raises(ConfigError, match=words):
        IntakeSettings.from_env(env)


def test_preload_fills_the_counter_cache_the_first_upload_reads(monkeypatch, pulled_model):
    monkeypatch.delenv("DROPTUNE_DEFAULT_BASE_MODEL", raising=False)
    tokens.counter_for.cache_clear()
    assert preload(IntakeSettings.from_env(ENV)) is None  # off unless asked for
    assert tokens.counter_for.cache_info().currsize == 0
    assert preload(IntakeSettings.from_env(ENV | {"DROPTUNE_PRELOAD_TOKENIZER": "1"})) > 0
    tokens.counter_for("custom", RunConfig().base_model)  # what the upload's scan asks for
    assert tokens.counter_for.cache_info()[:2] == (1, 1)  # (hits, misses): loaded once


def test_a_model_that_cannot_load_is_left_to_the_uploads(monkeypatch, tmp_path):
    monkeypatch.setenv("DROPTUNE_DEFAULT_BASE_MODEL", str(tmp_path / "nothing-here"))
    tokens.counter_for.cache_clear()
    settings = IntakeSettings.from_env(ENV | {"DROPTUNE_PRELOAD_TOKENIZER": "true"})
    assert preload(settings) is None
