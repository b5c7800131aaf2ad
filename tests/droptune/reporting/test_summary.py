"""The run summary both renderers share: verdicts, metrics, facts from each file, and a run
folder with files missing or broken."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from droptune.reporting import load_run, summarize
from droptune.reporting.examples import most_changed
from tests.droptune.reporting.conftest import make_run, write_json


def test_a_deployed_run(run_folder: Path):
    s = summarize(load_run(str(run_folder)))
    assert s.run_id == "tickets-1700000000123456-2cae3432"
    assert s.verdict.kind == "passed" and s.verdict.title == "Tuned model is better: deployed"
    assert s.headline.name == "accuracy" and s.headline.gated
    accuracy = s.headline
    assert (accuracy.baseline, accuracy.tuned) == (0.25, 0.875) and accuracy.change == "better"
    assert [m.name for m in s.metrics][:4] == ["exact_match", "accuracy", "macro_f1", "rouge_l"]
    assert s.labels["names"] == ["billing", "bug", "feature", "account"]
    assert s.training.train_loss[0] == pytest.approx((1.0, 2.4)) and len(s.training.eval_loss) == 3
    assert ("GPU time", "0.12 h on 1 × NVIDIA_L4 (g2-standard-8)") in s.cost
    assert dict(s.deployment)["deployed model id"] == "1234"
    assert list(s.calls) == ["curl", "python"]
    # baseline right and tuned wrong on billing tickets 4, 12, 20, 28, 36
    assert len(s.regressions) == 5 and all(c.change == -1.0 for c in s.regressions)
    assert all(c.change == 1.0 for c in s.improvements)
    assert s.answer_tokens["tuned"] == [1.0] * 40
    assert "answer_tokens" not in s.to_dict()
    json.dumps(s.to_dict())  # --json prints it


def test_a_gated_run_says_it_was_not_deployed(tmp_path: Path):
    folder = make_run(tmp_path, min_delta=0.9, state="GATED")
    s = summarize(load_run(str(folder)))
    assert s.verdict.kind == "gated"
    assert (
        "not deployed" in s.verdict.title
        and "does not exceed the required +0.9000" in s.verdict.detail
    )
    assert s.deployment == []


def test_a_gated_gemini_run_says_its_model_was_not_promoted():
    """Vertex AI deploys a tuned Gemini model itself: 'not deployed' would be untrue."""
    from droptune.reporting.summary import verdict

    gate = {"passed": False, "reason": "misses"}
    gemini = verdict({"state": "GATED"}, gate, "gemini")
    assert gemini.kind == "gated" and "not promoted" in gemini.title
    assert "not deployed" in verdict({"state": "GATED"}, gate, "custom").title


@pytest.mark.parametrize(
    ("n", "delta", "ci95", "state", "title", "kind"),
    [
        # the measured failure: 0.000 -> 0.000 on a 60-example file, once called "better"
        (
            6,
            0.0,
            [0.0, 0.0],
            "GATED",
            "Unclear (6 test examples, fewer than 20): not deployed",
            "gated",
        ),
        (40, 0.0, [0.0, 0.0], "GATED", "No measurable change: not deployed", "gated"),
        (400, -0.03, [-0.08, 0.02], "GATED", "No measurable change: not deployed", "gated"),
        (400, -0.1, [-0.15, -0.05], "GATED", "Tuned model is worse: not deployed", "gated"),
        (
            10,
            0.2,
            [0.1, 0.3],
            "SUCCEEDED",
            "Unclear (10 test examples, fewer than 20): deployed",
            "unclear",
        ),
        (40, 0.2, [0.1, 0.3], "SUCCEEDED", "Tuned model is better: deployed", "passed"),
    ],
)
def test_the_headline_names_the_outcome_and_what_became_of_the_model(
    n, delta, ci95, state, title, kind
):
    from droptune.evaluation import gate
    from droptune.reporting.summary import verdict

    metrics = {
        "n": n,
        "baseline": {"accuracy": 0.5},
        "tuned": {"accuracy": 0.5 + delta},
        "delta": {"accuracy": delta},
        "ci95": {"accuracy": ci95},
    }
    decision = gate(metrics)
    assert decision["passed"] is (state == "SUCCEEDED")
    said = verdict({"state": state}, decision, "custom", n)
    assert (said.title, said.kind) == (title, kind)
    assert not (said.title.startswith("Tuned model is better") and delta <= 0)


def test_a_run_gated_before_the_gate_recorded_its_outcome_reads_it_from_the_numbers():
    from droptune.reporting.summary import verdict

    old = {"metric": "accuracy", "passed": True, "delta": 0.0, "ci95": [0.0, 0.0], "reason": "r"}
    said = verdict({"state": "SUCCEEDED"}, old, "custom", 60)
    assert said.title == "No measurable change: deployed" and said.kind == "unclear"


def test_failed_and_unfinished_runs(tmp_path: Path):
    write_json(
        tmp_path / "failed" / "status.json",
        {"state": "FAILED", "detail": "x", "error": {"message": "training job failed (OOM)"}},
    )
    write_json(tmp_path / "new" / "status.json", {"state": "TRAINING", "detail": "job started"})
    failed = summarize(load_run(str(tmp_path / "failed")))
    assert failed.verdict.kind == "failed" and failed.verdict.detail == "training job failed (OOM)"
    pending = summarize(load_run(str(tmp_path / "new")))
    assert pending.verdict.title == "Not evaluated yet (state TRAINING)"
    assert pending.metrics == [] and pending.run_id == "new"


def test_missing_and_broken_files_are_tolerated(tmp_path: Path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "status.json").write_text("{not json")
    s = summarize(load_run(str(tmp_path / "run")))
    assert s.state is None and s.verdict.kind == "pending"
    assert len(s.problems) == 1 and s.problems[0].startswith("status.json: unreadable")


def test_a_gemini_run_with_its_tuning_job_and_token_savings(tmp_path: Path):
    folder = make_run(tmp_path)
    write_json(
        folder / "training" / "tuning_job.json",
        {
            "name": "projects/p/locations/us-central1/tuningJobs/42",
            "state": "JOB_STATE_SUCCEEDED",
            "baseModel": "gemini-2.5-flash",
            "startTime": "2025-01-02T03:00:00Z",
            "endTime": "2025-01-02T03:30:00Z",
            "emulated": True,
            "tunedModel": {
                "model": "projects/p/locations/us-central1/models/77",
                "endpoint": "projects/p/locations/us-central1/endpoints/88",
            },
            "tuningDataStats": {
                "supervisedTuningDataStats": {
                    "tuningDatasetExampleCount": "96",
                    "totalBillableTokenCount": "10200",
                    "totalTruncatedExampleCount": "2",
                    "droppedExampleReasons": ["too many tokens", "too many tokens"],
                }
            },
        },
    )
    metrics = json.loads((folder / "evaluation" / "metrics.json").read_text())
    metrics["tokens"] = {
        "baseline": {"input": 1200, "output": 400},
        "tuned": {"input": 1200, "output": 100},
        "saved": {"input": 0.0, "output": 0.75},
    }
    write_json(folder / "evaluation" / "metrics.json", metrics)
    (folder / "endpoint.json").unlink()
    s = summarize(load_run(str(folder)))
    assert s.emulated
    tuning = dict(s.tuning)
    assert tuning["dropped or truncated examples"] == "2"
    assert tuning["why dropped"] == "too many tokens; too many tokens"
    assert tuning["tuning time"] == "30.0 min"
    assert dict(s.deployment) == {
        "tuned model": "projects/p/locations/us-central1/models/77",
        "tuned model endpoint": "projects/p/locations/us-central1/endpoints/88",
    }
    assert s.tokens[1] == {"kind": "output", "baseline": 400, "tuned": 100, "saved": 0.75}
    assert ("billable tokens (Vertex AI)", "10,200 per epoch × 3 epochs") in s.cost


def test_most_changed_prefers_the_gate_metric_and_breaks_ties_by_rouge():
    def row(i, base_acc, tuned_acc, base_rouge, tuned_rouge):
        return {
            "user_input": f"q{i}",
            "baseline_accuracy": str(base_acc),
            "tuned_accuracy": str(tuned_acc),
            "baseline_rouge_l": str(base_rouge),
            "tuned_rouge_l": str(tuned_rouge),
        }

    rows = [
        row(1, 1, 0, 1.0, 0.5),
        row(2, 1, 0, 1.0, 0.0),
        row(3, 0, 0, 0.2, 0.2),
        row(4, 0, 1, 0, 1),
    ]
    worse, better = most_changed(rows, "accuracy")
    assert [c.user_input for c in worse] == ["q2", "q1"]
    assert [c.user_input for c in better] == ["q4"]
    assert most_changed(rows, "exact_match")[0][0].metric == "rouge_l"
    assert most_changed([], "accuracy") == ([], [])


def test_a_delta_without_an_interval_is_unclear():
    """The trainer's latency has no interval (a batch's answers share one time): its delta
    alone cannot say better or worse."""
    from droptune.reporting.summary import MetricRow

    row = MetricRow("mean_latency_s", "seconds per request", 2.0, 1.0, -1.0, None, -1)
    assert row.change == "unclear"
    timed = MetricRow("mean_latency_s", "seconds per request", 2.0, 1.0, -1.0, (-1.2, -0.8), -1)
    assert timed.change == "better"


def test_a_change_measured_on_a_handful_of_examples_is_unclear():
    """Two examples a tuned model both fixes give the interval [1, 1]: the report must not
    call that better where the gate says the test set is too small to tell."""
    from droptune.reporting.summary import MetricRow

    few = MetricRow("accuracy", "accuracy", 0.0, 1.0, 1.0, (1.0, 1.0), 1, n=2)
    assert few.change == "unclear"
    assert MetricRow("accuracy", "accuracy", 0.0, 1.0, 1.0, (1.0, 1.0), 1, n=50).change == "better"


def test_a_nan_loss_leaves_the_training_section_and_drops_only_that_point(run_folder: Path):
    """Python's json writes a diverged step's loss as NaN, which JSON (and orjson) refuse."""
    import json

    from droptune.reporting.terminal import sparkline

    path = run_folder / "training" / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["train_loss"][3][1] = float("nan")
    path.write_text(json.dumps(metrics))
    s = summarize(load_run(str(run_folder)))
    assert s.problems == []
    assert len(s.training.train_loss) == 11  # the NaN step left out
    assert sparkline([loss for _, loss in s.training.train_loss])


def test_a_prediction_longer_than_csv_s_default_field_limit_is_read(run_folder: Path):
    import csv

    path = run_folder / "evaluation" / "predictions.csv"
    rows = list(csv.DictReader(path.open(newline="")))
    rows[0]["user_input"] = "a long document " * 20_000  # 320,000 characters
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    files = load_run(str(run_folder))
    assert not files.problems and len(files.predictions) == len(rows)


def test_a_run_that_passed_its_gate_and_failed_to_deploy_says_so():
    from droptune.reporting.summary import verdict

    failed = {"state": "FAILED", "error": {"message": "the new model failed its smoke prediction"}}
    said = verdict(failed, {"passed": True, "reason": "better"})
    assert said.title == "Failed at deployment: the tuned model is not served"
    assert verdict(failed, None).title == "Failed: no tuned model"
