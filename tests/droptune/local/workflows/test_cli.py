"""`droptune workflows run` as a user runs it: result on stdout, error map on stderr, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def droptune(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "droptune", "workflows", "run", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def write(tmp_path: Path, text: str, name: str = "w.workflows.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_result_as_json_on_stdout(tmp_path):
    path = write(
        tmp_path, "main:\n  params: [args]\n  steps:\n    - r:\n        return: ${args.n * 2}\n"
    )
    result = droptune(path, "--data", '{"n": 21}')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == 42


def test_env_and_virtual_clock(tmp_path):
    text = (
        "- wait:\n    call: sys.sleep\n    args: {seconds: 3600}\n"
        '- r:\n    return: ${sys.get_env("REGION")}\n'
    )
    result = droptune(write(tmp_path, text), "--env", "REGION=europe-west4", "--virtual-clock")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "europe-west4"


def test_json_workflow_file(tmp_path):
    path = write(tmp_path, json.dumps([{"r": {"return": "${1 + 1}"}}]), "w.workflows.json")
    assert json.loads(droptune(path).stdout) == 2


def test_unhandled_error_map_on_stderr_exit_1(tmp_path):
    result = droptune(write(tmp_path, "- r:\n    return: ${missing}\n"))
    assert result.returncode == 1
    error = json.loads(result.stderr)
    assert error["tags"] == ["KeyError"]
    assert "missing" in error["message"]
    assert error["context"] == "in step 'r' (line 2), routine 'main', expression ${missing}"
    assert result.stdout == ""


def test_invalid_workflow_exit_2_with_line_and_no_traceback(tmp_path):
    result = droptune(write(tmp_path, "- a:\n    assign:\n      - x: 1\n- b:\n    cal: sys.log\n"))
    assert result.returncode == 2
    assert "w.workflows.yaml:5" in result.stderr and "cal" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_data_exit_2(tmp_path):
    result = droptune(write(tmp_path, "- r:\n    return: 1\n"), "--data", "{nope")
    assert result.returncode == 2
    assert "--data is not JSON" in result.stderr


def test_trace_lists_steps(tmp_path):
    text = "- a:\n    assign: [{x: 1}]\n- b:\n    return: ${x}\n"
    result = droptune(write(tmp_path, text), "--trace")
    assert result.returncode == 0
    assert "2 steps" in result.stderr and " a " in result.stderr


def test_data_over_32_kb_is_refused_as_the_executions_api_refuses_it(tmp_path):
    path = write(
        tmp_path, "main:\n  params: [args]\n  steps:\n    - r:\n        return: ${len(args)}\n"
    )
    fits = droptune(path, "--data", json.dumps("x" * (32 * 1024 - 2)))
    assert fits.returncode == 0, fits.stderr
    too_big = droptune(path, "--data", json.dumps("x" * (32 * 1024 - 1)))
    assert too_big.returncode == 2
    assert "32,769 bytes" in too_big.stderr and "32 KB" in too_big.stderr
