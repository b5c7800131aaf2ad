"""Run configuration: defaults, checks with a sentence, coercion of metadata strings."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from droptune.config import DEFAULT_CUSTOM_MODEL, DEFAULT_GEMINI_MODEL, RunConfig
from droptune.errors import ConfigError, DroptuneError


def test_defaults(monkeypatch) -> None:
    monkeypatch.delenv("DROPTUNE_DEFAULT_BASE_MODEL", raising=False)
    config = RunConfig()
    assert (config.backend, config.base_model) == ("custom", DEFAULT_CUSTOM_MODEL)
    assert (config.validation_fraction, config.test_fraction, config.min_examples) == (0.1, 0.1, 10)
    assert config.column_map == {}
    assert RunConfig(backend="gemini").base_model == DEFAULT_GEMINI_MODEL


def test_deployment_default_model_applies_only_to_its_backend(monkeypatch) -> None:
    monkeypatch.setenv("DROPTUNE_DEFAULT_BASE_MODEL", "gemini-2.0-flash")
    assert RunConfig(backend="gemini").base_model == "gemini-2.0-flash"
    assert RunConfig().base_model == DEFAULT_CUSTOM_MODEL
    monkeypatch.setenv("DROPTUNE_DEFAULT_BASE_MODEL", "Qwen/Qwen2.5-0.5B-Instruct")
    assert RunConfig().base_model == "Qwen/Qwen2.5-0.5B-Instruct"
    assert RunConfig(base_model="mine").base_model == "mine"


def test_unknown_key_suggests_the_closest() -> None:
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_mapping({"min_exampels": 3, "zzz": 1}, source="droptune.yaml")
    message = str(caught.value)
    assert "droptune.yaml" in message
    assert "'min_exampels' (did you mean 'min_examples'?)" in message
    assert "'zzz'" in message and "Known keys: backend" in message
    assert isinstance(caught.value, DroptuneError)


def test_metadata_strings_are_coerced() -> None:
    config = RunConfig.from_mapping(
        {
            "validation_fraction": "0.2",
            "test-fraction": "0",
            "min_examples": "5",
            "max-length": "512",
            "price_per_million_tokens": "2.5",
            "column_map": "{query: prompt, reply: completion}",
        }
    )
    assert config.validation_fraction == 0.2
    assert config.test_fraction == 0.0
    assert (config.min_examples, config.max_length) == (5, 512)
    assert config.price_per_million_tokens == 2.5
    assert config.column_map == {"query": "prompt", "reply": "completion"}


def test_a_metadata_column_map_with_number_keys_reads_them_as_text():
    config = RunConfig.from_mapping({"column_map": "{0: prompt, 1: completion}"}, "metadata")
    assert config.column_map == {"0": "prompt", "1": "completion"}


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"min_examples": "many"}, "min_examples must be a"),
        ({"validation_fraction": "a fifth"}, "validation_fraction must be a number"),
        ({"column_map": "[a, b]"}, "column_map must be a mapping"),
        ({"epochs": 2.5}, "epochs must be a"),
        ({"backend": "openai"}, "backend must be one of custom, gemini"),
        ({"format": "csv"}, "format 'csv' is unknown"),
        ({"validation_fraction": 1.0}, "validation_fraction must be in [0, 1)"),
        ({"test_fraction": -0.1}, "test_fraction must be in [0, 1)"),
        ({"validation_fraction": 0.5, "test_fraction": 0.5}, "must leave examples for training"),
        ({"min_examples": 0}, "min_examples must be at least 1"),
        ({"training_machines": 0}, "training_machines must be at least 1"),
        ({"max_length": "0"}, "max_length must be at least 1"),
        ({"gate": {"metric": "f1"}}, "gate.metric must be one of accuracy, macro_f1,"),
        ({"gate": {"min_delta": "0.1"}}, "gate.min_delta must be a number"),
        ({"gate": {"min_delta": float("nan")}}, "gate.min_delta must be a finite number"),
        ({"learning_rate_multiplier": "inf"}, "learning_rate_multiplier must be a finite number"),
        ({"price_per_million_tokens": 1e400}, "price_per_million_tokens must be a finite"),
        ({"epochs": 2**63}, "epochs is beyond a 64-bit integer"),
        ({"training": {"schedule": [1, 2**64]}}, "training.schedule[1] is beyond a 64-bit"),
        ({"system_instruction": "\ud800"}, "system_instruction holds text that is not valid"),
        ({"column_map": {"text": 1}}, "column_map maps column names to field names"),
        ({"gate": {"require_significance": "yes"}}, "must be true or false; got 'yes'"),
        ({"gate": {"treshold": 0.1}}, "gate takes metric, min_delta, require_significance"),
        ({"training": {"max_step": 2}}, "in training: 'max_step' (did you mean 'max_steps'?)"),
        ({"training": {"lora_rank": "many"}}, "lora_rank must be an integer"),
    ],
)
def test_bad_values_fail_with_a_sentence(values: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=r"^meta: ") as caught:
        RunConfig.from_mapping(values, source="meta")
    assert words in str(caught.value)


def test_from_yaml(tmp_path) -> None:
    path = tmp_path / "droptune.yaml"
    path.write_text("backend: gemini\nmin_examples: 20\ncolumn_map: {q: question}\n")
    config = RunConfig.from_yaml(path)
    assert (config.backend, config.min_examples, config.column_map) == (
        "gemini",
        20,
        {"q": "question"},
    )
    (tmp_path / "empty.yaml").write_text("")
    assert RunConfig.from_yaml(tmp_path / "empty.yaml") == RunConfig()
    (tmp_path / "headerless.yaml").write_text("column_map: {0: prompt, 1: completion}\n")
    positions = RunConfig.from_yaml(tmp_path / "headerless.yaml").column_map
    assert positions == {"0": "prompt", "1": "completion"}  # YAML's numbers, read as text


@pytest.mark.parametrize(
    ("text", "words"), [("- a\n- b\n", "expected a mapping"), ("a: [\n", "cannot read")]
)
def test_from_yaml_problems(tmp_path, text: str, words: str) -> None:
    path = tmp_path / "droptune.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words):
        RunConfig.from_yaml(path)


def test_missing_yaml_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        RunConfig.from_yaml(tmp_path / "nope.yaml")


def test_help_table_covers_every_key() -> None:
    rows = RunConfig.help_table()
    assert [key for key, _, _ in rows] == [f.name for f in fields(RunConfig)]
    assert all(help_text for _, _, help_text in rows)
    assert ("min_examples", "10", "Fewest valid examples a run accepts.") in rows


def test_to_dict_round_trips_through_from_mapping() -> None:
    config = RunConfig(backend="gemini", min_examples=3)
    assert RunConfig.from_mapping(config.to_dict()) == config


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"adapter_size": "ADAPTER_SIZE_3"}, "adapter_size must be one of ADAPTER_SIZE_ONE"),
        ({"learning_rate_multiplier": 0}, "learning_rate_multiplier must be above 0"),
        ({"eval_max_output_tokens": 0}, "eval_max_output_tokens must be at least 1"),
    ],
)
def test_gemini_settings_out_of_range_say_what_is_allowed(settings, words) -> None:
    with pytest.raises(ConfigError, match=words):
        RunConfig(backend="gemini", **settings)


def test_a_strict_gate_on_macro_f1_is_kept_for_the_evaluators() -> None:
    gate = {"metric": "macro_f1", "min_delta": 0.05, "require_significance": True}
    assert RunConfig.from_mapping({"gate": gate}).to_dict()["gate"] == gate


def test_a_blank_system_instruction_is_refused() -> None:
    with pytest.raises(ConfigError, match="system_instruction is blank"):
        RunConfig(system_instruction="  ")


@pytest.mark.parametrize("key", ["system_instruction", "validation_file", "base_model"])
def test_a_text_setting_given_something_else_is_refused(key) -> None:
    with pytest.raises(ConfigError, match=rf"^droptune.yaml: {key} must be text; got 5$"):
        RunConfig.from_mapping({key: 5}, source="droptune.yaml")


def test_training_settings_are_checked_as_the_trainer_builds_them_from_the_run():
    """With the run's own max_length, as the trainer merges them; the demo's sidecar too."""
    RunConfig.from_mapping({"max_length": 128, "training": {"tokens_per_batch": 512}})
    with pytest.raises(ConfigError, match="must hold one whole example of max_length"):
        RunConfig.from_mapping({"training": {"tokens_per_batch": 512}})  # max_length 2048
    sidecar = Path(__file__).parents[2] / "droptune" / "examples" / "tickets.droptune.yaml"
    assert RunConfig.from_yaml(sidecar).training["tokens_per_batch"] == 512
