"""Run ids, the run folder, status.json and the run message."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from droptune.runs import RUN_ID, RunFolder, RunMessage, RunState, RunStatus, run_id_for

TRICKS = [
    "../../etc/passwd.jsonl",
    "/abs/path/data.jsonl",
    "a/./b/../c.jsonl",
    "con\x00trol\x1b[31m.jsonl",
    "new\nline.jsonl",
    "x" * 1000 + ".jsonl",
    "数据集/训练.jsonl",
    "Ünïcödé Fïlé (1).JSONL",
    "....jsonl",
    "-.-.jsonl",
    "%2e%2e%2fescape.jsonl",
    "a\\..\\..\\windows.jsonl",
]


@pytest.mark.parametrize("name", TRICKS)
def test_path_tricks_give_safe_run_ids(name: str) -> None:
    run_id = run_id_for("uploads", name, 1700000000123456)
    assert RUN_ID.match(run_id), run_id
    assert RunFolder.in_bucket("runs", run_id).uri == f"gs://runs/runs/{run_id}/"


@given(st.text(max_size=300), st.integers(min_value=1, max_value=2**63 - 1))
def test_any_name_and_generation_give_a_valid_run_id(name: str, generation: int) -> None:
    run_id = run_id_for("uploads", name, generation)
    assert RUN_ID.match(run_id)
    assert len(run_id) <= 63
    assert run_id == run_id_for("uploads", name, generation)  # a redelivery maps to the same


def test_same_stem_in_other_folders_or_buckets_are_other_runs() -> None:
    ids = {
        run_id_for("up", "a/train.jsonl", 5),
        run_id_for("up", "b/train.jsonl", 5),
        run_id_for("other", "a/train.jsonl", 5),
        run_id_for("up", "a/train.jsonl", 6),
    }
    assert len(ids) == 4


def test_run_folder_refuses_what_is_not_a_run_id() -> None:
    for bad in ["../x", "A", "", "a/b", "x" * 64]:
        with pytest.raises(ValueError):
            RunFolder.in_bucket("runs", bad)


def test_status_round_trip_keeps_history_and_extra_keys() -> None:
    status = RunStatus.start("reading")
    status.extra["message_id"] = "7"
    status.advance(RunState.REJECTED, "bad", error={"code": "json_syntax", "line": 3})
    body = orjson.loads(status.to_json())
    assert body["state"] == "REJECTED"
    assert body["error"] == {"code": "json_syntax", "line": 3}
    assert [h["state"] for h in body["history"]] == ["VALIDATING", "REJECTED"]
    again = RunStatus.from_json(status.to_json())
    assert again == status


def test_run_message_matches_the_contract() -> None:
    message = RunMessage("r-1-abc", "gs://runs/runs/r-1-abc/", "gemini")
    assert orjson.loads(message.data) == {
        "run_id": "r-1-abc",
        "run_uri": "gs://runs/runs/r-1-abc/",
        "backend": "gemini",
    }
    assert message.attributes == {"run_id": "r-1-abc", "backend": "gemini"}
