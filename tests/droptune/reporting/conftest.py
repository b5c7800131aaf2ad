"""A finished run folder on local disk, built the way the units build it: metrics from the
core's own `Comparison` and `gate`, predictions through `write_results`, the other files as
the upload function, the trainer and the workflow write them. Nothing depends on the clock,
so rendered output can be compared with a snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from droptune import evaluation

LABELS = ["billing", "bug", "feature", "account"]
TICKETS = [
    ("I was charged twice this month", "billing"),
    ("The export button crashes the app", "bug"),
    ("Please add a dark mode", "feature"),
    ("I cannot log in to my account", "account"),
]


def _answers(i: int, reference: str) -> tuple[str, str]:
    """Baseline right on 1 in 4 tickets (chatty otherwise); tuned wrong on half of those."""
    wrong = LABELS[(LABELS.index(reference) + 1) % len(LABELS)]
    baseline = reference if i % 4 == 0 else f"This looks like a {wrong} question to me."
    tuned = wrong if i % 8 == 4 else reference
    return baseline, tuned


def write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))


def make_run(root: Path, n: int = 40, min_delta: float = 0.1, state: str = "SUCCEEDED") -> Path:
    run_id = "tickets-1700000000123456-2cae3432"
    folder = root / run_id
    config = {
        "backend": "custom",
        "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "epochs": 3,
        "machine_type": "g2-standard-8",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
        "gate": {"metric": "accuracy", "min_delta": min_delta},
    }
    write_json(
        folder / "run.json",
        {"run_id": run_id, "config": config, "created_at": "2025-01-02T03:04:05.000Z"},
    )
    comparison = evaluation.Comparison(labels=LABELS)
    rows = []
    for i in range(n):
        text, label = TICKETS[i % len(TICKETS)]
        baseline, tuned = _answers(i, label)
        b = evaluation.score(
            baseline,
            label,
            LABELS,
            9 if baseline != label else 1,
            input_tokens=30 + i % 5,
            latency_s=0.25,
        )
        t = evaluation.score(tuned, label, LABELS, 1, input_tokens=30 + i % 5, latency_s=0.2)
        comparison.add(b, t)
        rows.append(evaluation.prediction_row(f"{text} (#{i})", label, baseline, tuned, b, t))
    metrics = comparison.metrics(seed=0)
    metrics["gate"] = evaluation.gate(metrics, "accuracy", min_delta)
    evaluation.write_results(str(folder / "evaluation"), metrics, rows)
    write_json(
        folder / "validation" / "report.json",
        {
            "valid": True,
            "format": {"name": "classification", "title": "classification (text, label)"},
            "counts": {"records": 96, "valid": 96, "splits": {"train": 68, "validation": 9,
                       "test": 19}, "labels": {"billing": 24, "bug": 24, "feature": 24,
                       "account": 24}},
            "warnings": 0,
            "tokens": {"method": "exact", "description": "SmolLM2 tokenizer", "examples": 96,
                       "total": 4800, "min": 38, "mean": 50.0, "p50": 49, "p95": 61, "max": 70,
                       "train_total": 3400, "epochs": 3, "billable": 10200, "limit": 128,
                       "over_limit": 0, "histogram": {"edges": [38, 46, 54, 62, 70, 78],
                                                      "counts": [20, 41, 25, 9, 1]}},
            "cost": None,
        },
    )  # fmt: skip
    write_json(
        folder / "training" / "metrics.json",
        {
            "steps": 12,
            "train_loss": [[s, 3.0 * 0.8**s] for s in range(1, 13)],
            "eval_loss": [[s, 2.6 * 0.85**s] for s in (4, 8, 12)],
            "final_train_loss": 3.0 * 0.8**12,
            "best_eval_loss": 2.6 * 0.85**12,
            "tokens_per_second": 1830.5,
            "wall_seconds": 420.0,
            "peak_memory_mb": 2048.0,
            "device": "cuda",
            "method": "lora",
        },
    )
    if state in ("SUCCEEDED",):
        write_json(
            folder / "endpoint.json",
            {
                "endpoint": "projects/p/locations/us-central1/endpoints/droptune",
                "deployed_model_id": "1234",
                "model": "projects/p/locations/us-central1/models/droptune-" + run_id,
                "predict_url": "https://us-central1-aiplatform.googleapis.com/v1/projects/p/"
                "locations/us-central1/endpoints/droptune:predict",
                "request_example": {
                    "instances": [{"messages": [{"role": "user", "content": "hi"}]}]
                },
                "examples": {"curl": "curl -X POST ... -d @request.json", "python": "print('hi')"},
            },
        )
    history = [
        {"state": s, "at": f"2025-01-02T03:0{i}:00.000Z", "detail": s.lower()}
        for i, s in enumerate(["VALIDATING", "QUEUED", "TRAINING", "EVALUATING", state])
    ]
    write_json(
        folder / "status.json",
        {"state": state, "updated_at": history[-1]["at"], "detail": metrics["gate"]["reason"],
         "gate": metrics["gate"], "history": history},
    )  # fmt: skip
    return folder


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    return make_run(tmp_path / "runs")
