"""The console script as a user runs it: exit codes, JSON on stdout, readable text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from droptune.issues import CATALOGUE

EXAMPLE = Path(__file__).parents[2] / "droptune" / "examples" / "chat.jsonl"


def droptune(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "droptune", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
    )


def test_validate_valid_file_json():
    result = droptune("validate", str(EXAMPLE), "--json", "--no-tokens")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["valid"] is True
    assert report["format"]["name"] == "chat"
    assert report["counts"]["valid"] == 12
    assert {"valid", "format", "counts", "issues", "tokens"} <= report.keys()


def test_validate_invalid_file_exit_1_with_location(tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = [EXAMPLE.read_bytes().splitlines()[0]] * 11 + [b'{"messages": [{"role": "user"}]}']
    bad.write_bytes(b"\n".join(lines) + b"\n")
    result = droptune("validate", str(bad), "--no-tokens")
    assert result.returncode == 1
    text = result.stdout.decode()
    assert f"{bad}:12: $.messages[0].content: error:" in text
    assert "[message_missing_key]" in text
    hint = CATALOGUE["message_missing_key"].hint
    assert text.count("how to fix:") == 1
    assert text.count(f"\n  message_missing_key: {hint}\n") == 1  # once for each code


def test_validate_usage_errors_exit_2(tmp_path):
    assert droptune("validate", str(tmp_path / "missing.jsonl")).returncode == 2
    assert droptune("validate", str(EXAMPLE), "--backend", "nope").returncode == 2
    assert droptune("validate").returncode == 2


def test_validate_reads_stdin():
    result = droptune("validate", "-", "--json", "--no-tokens", stdin=EXAMPLE.read_bytes())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["counts"]["valid"] == 12


def test_unknown_config_key_is_a_usage_error(tmp_path):
    config = tmp_path / "droptune.yaml"
    config.write_text("epochz: 3\n")
    result = droptune("validate", str(EXAMPLE), "--config", str(config), "--no-tokens")
    assert result.returncode == 2
    assert "did you mean 'epochs'" in result.stderr.decode()


def test_backend_on_the_command_line_replaces_the_files_model_for_the_other_backend(tmp_path):
    from droptune.cli import _config
    from droptune.config import RunConfig

    config = tmp_path / "droptune.yaml"
    config.write_text("backend: gemini\nbase_model: gemini-2.5-flash\n")
    custom = _config(config, backend="custom", base_model=None)
    assert (custom.backend, custom.base_model) == ("custom", RunConfig().base_model)
    assert _config(config, backend="gemini", base_model=None).base_model == "gemini-2.5-flash"
    chosen = _config(config, backend="custom", base_model="Qwen/Qwen2.5-0.5B-Instruct")
    assert chosen.base_model == "Qwen/Qwen2.5-0.5B-Instruct"


def test_convert_to_gemini(tmp_path):
    out = tmp_path / "gemini.jsonl"
    result = droptune("convert", str(EXAMPLE), "--to", "gemini", "-o", str(out))
    assert result.returncode == 0, result.stderr
    first = orjson.loads(out.read_bytes().splitlines()[0])
    assert first["systemInstruction"]["parts"][0]["text"].startswith("You are droptune")
    assert [c["role"] for c in first["contents"]] == ["user", "model"]


@pytest.mark.slow
def test_validate_with_real_tokenizer():
    result = droptune("validate", str(EXAMPLE), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    tokens = report["tokens"]
    assert tokens["method"] == "exact"
    assert "SmolLM2-135M-Instruct" in tokens["description"]
    assert tokens["examples"] == 12
    assert 20 < tokens["min"] <= tokens["p50"] <= tokens["max"] < 200
    assert 0 < tokens["load_seconds"] <= report["seconds"]  # a fresh process loads it
    text = droptune("validate", str(EXAMPLE)).stdout.decode()
    assert "s of it loading the tokenizer" in text


@pytest.mark.slow
def test_models_pull_prints_the_checkpoint_folder(pulled_model):
    result = droptune("models", "pull")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == str(pulled_model)


def test_no_google_credentials_is_a_usage_error_that_says_how_to_log_in(monkeypatch, capsys):
    from google.auth.exceptions import DefaultCredentialsError

    from droptune import cli

    def no_login() -> None:
        raise DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(cli, "app", no_login)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    assert "gcloud auth application-default login" in capsys.readouterr().err


def test_a_rejected_runs_error_says_where_it_is():
    from droptune.local.run import where

    error = {"code": "bad_role", "line": 2, "path": "$.messages[0].role", "message": "x"}
    assert where(error) == "line 2, $.messages[0].role: "
    assert where({"message": "no location"}) == ""


def test_help_shows_flags_without_a_value():
    """A flag takes no value; a help screen saying `--json <bool>` sends people typing one."""
    result = subprocess.run(
        [sys.executable, "-m", "droptune", "local", "run", "--help"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "120"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "--json" in result.stdout and "--timeout" in result.stdout
    assert "<bool>" not in result.stdout and "BOOLEAN" not in result.stdout


def test_names_in_the_data_are_shown_as_text_not_markup(tmp_path):
    """A file `lab[v2].jsonl` and labels `[urgent]` and `[/b]` are data: markup would hide
    them, or fail on `[/b]` with exit 1, which says the data is invalid."""
    data = tmp_path / "lab[v2].jsonl"
    rows = [
        {"text": f"ticket {i}", "label": label} for i, label in enumerate(["[urgent]", "[/b]"] * 6)
    ]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = subprocess.run(
        [sys.executable, "-m", "droptune", "validate", str(data), "--no-tokens"],
        capture_output=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "400"},  # the whole path on one line
    )
    text = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-800:]
    assert "lab[v2].jsonl" in text and "[urgent] 6" in text and "[/b] 6" in text


def test_a_cut_list_says_so_per_code_and_max_issues_shows_more(tmp_path):
    empty = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]}
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"".join(orjson.dumps(empty) + b"\n" for _ in range(39)))
    result = droptune("validate", str(path), "--no-tokens")
    assert result.returncode == 1
    text = result.stdout.decode()
    assert "empty_text: showing 20 of 39; `--max-issues N` for more" in text
    assert "see --json" not in text
    report = json.loads(droptune("validate", str(path), "--no-tokens", "--json").stdout)
    assert report["issues_shown"]["empty_text"] == 20
    assert report["issues_total"]["empty_text"] == 39
    more = droptune("validate", str(path), "--no-tokens", "--max-issues", "50")
    assert more.stdout.decode().count("[empty_text]") == 39 and b"showing" not in more.stdout
    assert droptune("validate", str(path), "--max-issues", "0").returncode == 2
