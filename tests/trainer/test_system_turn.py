"""The tuned system turn travels with the model: saved beside the checkpoint, applied by the
server to chats without one, so that the serving container, `droptune runs ask`, the
evaluation, the smoke request and the summary's `curl` give one answer to one conversation."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from droptune_trainer import system_turn
from droptune_trainer.errors import RunFolderError

ROOT = Path(__file__).parents[2]
TICKETS = ROOT / "droptune" / "examples" / "tickets.jsonl"
TICKETS_SYSTEM = json.loads(TICKETS.read_text().splitlines()[0])["system"]  # the demo's turn


def run_folder(folder: Path, system_prompt: str | None) -> Path:
    (folder / "validation").mkdir(parents=True)
    report = {"valid": True, "system_prompt": system_prompt}
    (folder / "validation" / "report.json").write_text(json.dumps(report))
    return folder


def test_the_run_s_system_prompt_is_saved_beside_the_checkpoint_and_read_back(tmp_path):
    run = run_folder(tmp_path / "run", TICKETS_SYSTEM)
    system_turn.save(tmp_path / "merged", run)
    assert json.loads((tmp_path / "merged" / "droptune.json").read_text()) == {
        "system_prompt": TICKETS_SYSTEM
    }
    assert system_turn.load(tmp_path / "merged") == TICKETS_SYSTEM


def test_a_run_without_one_says_so_and_a_plain_checkpoint_has_none(tmp_path):
    system_turn.save(tmp_path / "merged", run_folder(tmp_path / "run", None))
    assert json.loads((tmp_path / "merged" / "droptune.json").read_text()) == {
        "system_prompt": None
    }
    assert system_turn.load(tmp_path / "merged") is None
    assert system_turn.load(tmp_path) is None  # no droptune.json: a Hugging Face checkpoint
    system_turn.save(tmp_path / "bare", tmp_path / "no-report")
    assert system_turn.load(tmp_path / "bare") is None


def test_where_the_examples_turns_differ_the_instruction_they_were_given_is_the_one(tmp_path):
    """The intake gives `system_instruction` to each example without a system turn; the turn
    every example shares comes first (the examples had it, not the instruction): as `ask`."""
    run = run_folder(tmp_path, None)
    config = {"config": {"system_instruction": "Answer in French."}}
    (run / "run.json").write_text(json.dumps(config))
    assert system_turn.tuned_system_prompt(run) == "Answer in French."
    (run / "validation" / "report.json").write_text(json.dumps({"system_prompt": "Be brief."}))
    assert system_turn.tuned_system_prompt(run) == "Be brief."


def test_a_damaged_settings_file_is_an_error_that_says_where(tmp_path):
    (tmp_path / "droptune.json").write_text("{not json")
    with pytest.raises(RunFolderError, match=r"droptune\.json: not JSON"):
        system_turn.load(tmp_path)


def test_a_chat_s_own_system_turn_is_kept():
    own = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert system_turn.opened(own, TICKETS_SYSTEM) == own
    bare = [{"role": "user", "content": "Hi"}]
    assert system_turn.opened(bare, TICKETS_SYSTEM) == [
        {"role": "system", "content": TICKETS_SYSTEM},
        *bare,
    ]


def smoke_request() -> dict[str, Any]:
    """The workflow's smoke request: what endpoint.json's request_example and curl send."""

    def find(node: Any) -> Any:
        if isinstance(node, dict):
            if "smoke_request" in node:
                return node["smoke_request"]
            node = list(node.values())
        if isinstance(node, list):
            return next((r for r in map(find, node) if r is not None), None)
        return None

    workflow = yaml.safe_load((ROOT / "workflows" / "pipeline.workflows.yaml").read_text())
    request = find(workflow)
    assert request is not None, "the workflow no longer has a smoke_request"
    return request


@pytest.fixture(scope="module")
def tuned_folder(pulled_model: Path, tmp_path_factory) -> Path:
    """A run's model folder, the base checkpoint standing in for the tuned one (linked, not
    copied), with the tickets' system turn saved beside it as training saves it."""
    model = tmp_path_factory.mktemp("model")
    merged = model / "merged"
    merged.mkdir()
    for file in pulled_model.iterdir():
        (merged / file.name).symlink_to(file)
    run = run_folder(tmp_path_factory.mktemp("run"), TICKETS_SYSTEM)
    system_turn.save(merged, run)
    return model


def summary_curl_body(run: Path) -> dict[str, Any]:
    """The body of the `curl` that `droptune local run` prints for the run."""
    from rich.console import Console

    from droptune.local.run import summarize

    console = Console(record=True, width=400)
    summarize(run, {"state": "SUCCEEDED", "detail": "deployed"}, console)
    (curl,) = [line for line in console.export_text().splitlines() if "curl -X POST" in line]
    return json.loads(re.search(r"-d '(.*)'$", curl.strip())[1])


@pytest.mark.slow
def test_serve_ask_evaluation_and_the_summary_s_curl_give_one_answer(
    tuned_folder, pulled_model, tmp_path, monkeypatch
):
    import torch
    from droptune_trainer.evaluate import answer_all
    from droptune_trainer.serve import create_app
    from fastapi.testclient import TestClient
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from droptune.actions import ask
    from droptune.cases import cases
    from droptune.cloud import vertex

    smoke = smoke_request()
    (turn,) = smoke["instances"][0]["messages"]  # a user turn alone, as a caller sends it
    budget = int(smoke["parameters"]["max_new_tokens"])

    # The evaluation: a test conversation as the run's data holds it, its system turn first.
    model = AutoModelForCausalLM.from_pretrained(pulled_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(pulled_model)
    conversation = [{"role": "system", "content": TICKETS_SYSTEM}, turn]
    test = cases([{"messages": [*conversation, {"role": "assistant", "content": "account"}]}])
    (evaluated,) = answer_all(model, tokenizer, test, budget, torch.device("cpu"), False)

    run = run_folder(tmp_path / "run", TICKETS_SYSTEM)
    (run / "run.json").write_text(json.dumps({"run_id": "run", "config": {"backend": "custom"}}))
    (run / "status.json").write_text(json.dumps({"state": "SUCCEEDED"}))
    card = {
        "endpoint": "projects/p/locations/local/endpoints/droptune",
        "deployed_model_id": "1",
        "predict_url": "http://127.0.0.1:1/v1/projects/p/locations/local/endpoints/droptune:predict",
        "request_example": smoke,
    }
    with TestClient(create_app(str(tuned_folder))) as server:

        def predict(api, endpoint, instances, parameters=None) -> list[Any]:
            body = {"instances": list(instances), "parameters": dict(parameters or {})}
            return server.post("/predict", json=body).json()["predictions"]

        monkeypatch.setattr(vertex, "predict", predict)
        monkeypatch.setattr(vertex, "deployed_model_ids", lambda api, endpoint: {"1"})
        smoked = server.post("/predict", json=smoke).json()["predictions"][0]
        (run / "endpoint.json").write_text(json.dumps(card | {"smoke_prediction": smoked}))
        curled = server.post("/predict", json=summary_curl_body(run)).json()["predictions"][0]
        asked = ask(str(run), turn["content"], max_new_tokens=budget)
        explicit = server.post(
            "/predict",
            json={"instances": [{"messages": conversation}], "parameters": smoke["parameters"]},
        ).json()["predictions"][0]
    assert smoked == curled == asked == explicit == evaluated.text, (
        smoked, curled, asked, explicit, evaluated.text,
    )  # fmt: skip

    # Without the tuned turn (a plain checkpoint folder) the same request is answered under
    # the template's default system turn: the answer the demo's curl got.
    with TestClient(create_app(str(pulled_model))) as plain:
        assert plain.post("/predict", json=smoke).json()["predictions"][0] != smoked
