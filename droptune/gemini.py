"""Baseline vs tuned Gemini on a run's test split: the Gemini backend's evaluation.

    evaluate_slice(EvaluationRequest(run_uri, tuning_job), genai_client)

The base model answers with the same system instruction the data carries, the tuned model
through the endpoint its tuning job names; both greedily, `eval_max_output_tokens` at most,
with `concurrency` requests in flight (the SDK retries 429 and 503 with backoff and jitter).
Each request's `usage_metadata` and latency are kept, so the report can say what tuning
saves per call: a tuned model no longer needs long instructions or examples in the prompt,
and answers in the format it was taught instead of in paragraphs.

The test split is answered in slices of `slice_size` examples, one slice per call, each
slice saved to `evaluation/parts/` before the call returns: a caller with a request timeout
(a workflow's HTTP call, a Cloud Run request) loops until `done`, and a retried call redoes
one slice at most. The last call scores every part with the core's metrics, writes
`evaluation/metrics.json` and `predictions.csv` (the same files as the custom backend's, plus
a token table), `training/tuning_job.json`, and the HTML report.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from droptune import evaluation
from droptune.cases import Answer, Case, cases, compare, labels_of, system_prompt_of
from droptune.cloud import genai as gemini
from droptune.errors import DroptuneError
from droptune.log import get_logger
from droptune.reporting import try_render_run
from droptune.storage import join, read_all, write_all

log = get_logger("droptune.gemini")
SLICE = 100  # examples per call: 200 requests, well inside a 30-minute request timeout
CONCURRENCY = 8  # requests in flight; Vertex AI's default quotas take this without 429s


class EvaluationError(DroptuneError):
    """The run folder or the tuning job cannot be evaluated; the message says why."""


@dataclass(frozen=True)
class EvaluationRequest:
    run_uri: str  # gs://<runs>/runs/<run_id>/ (or a local run folder)
    tuning_job: str  # projects/…/tuningJobs/…
    offset: int = 0  # the first test example of this slice

    @classmethod
    def from_json(cls, body: Any) -> EvaluationRequest:
        if not isinstance(body, dict) or not body.get("run_uri") or not body.get("tuning_job"):
            raise EvaluationError(
                'send {"run_uri": "gs://…/runs/<run_id>/", "tuning_job": "projects/…/tuningJobs/…"}'
                ' (and "offset" to go on from a slice)'
            )
        offset = body.get("offset") or 0
        if not isinstance(offset, int) or offset < 0:
            raise EvaluationError(f"offset must be a whole number from 0; got {offset!r}")
        return cls(str(body["run_uri"]), str(body["tuning_job"]), offset)


def evaluate_slice(
    request: EvaluationRequest,
    client: Any,
    concurrency: int = CONCURRENCY,
    slice_size: int | None = None,
) -> dict[str, Any]:
    """Answer one slice of the test split; after the last, score them all. Returns
    `{"done": false, "next_offset": n}` or `{"done": true, "n", "gate", "metrics_uri",
    "system_instruction"}`."""
    slice_size = slice_size or SLICE
    run = read_json(join(request.run_uri, "run.json"))
    config = run.get("config") or {}
    job = gemini.get_tuning(client, request.tuning_job)
    if not job.succeeded or not job.endpoint:
        raise EvaluationError(
            f"{request.tuning_job} is {job.state} with no tuned endpoint: nothing to evaluate"
        )
    if request.offset == 0:
        write_json(join(request.run_uri, "training", "tuning_job.json"), tuning_record(job))
    tests = cases(read_jsonl(join(request.run_uri, "data", "test.jsonl")))
    if not tests:
        raise EvaluationError(f"{request.run_uri}data/test.jsonl has no test examples")
    chunk = tests[request.offset : request.offset + slice_size]
    models = {"baseline": str(config.get("base_model")), "tuned": job.endpoint}
    max_tokens = int(config.get("eval_max_output_tokens") or 256)
    thinking = gemini.least_thinking(models["baseline"])  # the tuned model is of its family

    def answer(case: Case, model: str) -> Answer:
        a = gemini.generate(
            client, model, case.prompt, max_output_tokens=max_tokens, thinking_budget=thinking
        )
        return Answer(a.text, a.output_tokens, a.input_tokens, a.latency_s)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        replies = {
            side: list(pool.map(answer, chunk, [model] * len(chunk)))
            for side, model in models.items()
        }
    part = [
        {"index": request.offset + i, "baseline": asdict(b), "tuned": asdict(t)}
        for i, (b, t) in enumerate(zip(replies["baseline"], replies["tuned"], strict=True))
    ]
    write_jsonl(part_uri(request.run_uri, request.offset), part)
    next_offset = request.offset + len(chunk)
    log.info(f"evaluated test examples {request.offset}-{next_offset - 1} of {len(tests)}")
    if next_offset < len(tests):
        return {"done": False, "next_offset": next_offset, "n": len(tests)}
    metrics = finish(request.run_uri, tests, config, job, slice_size)
    return {
        "done": True,
        "n": metrics["n"],
        "gate": metrics["gate"],
        "metrics_uri": join(request.run_uri, "evaluation", "metrics.json"),
        # endpoint.json's calls send it: the tuned model expects its system turn
        "system_instruction": system_prompt_of(request.run_uri, config),
    }


def finish(
    run_uri: str, tests: list[Case], config: dict[str, Any], job: Any, slice_size: int
) -> dict[str, Any]:
    """Score every saved slice; write metrics.json, predictions.csv and the report."""
    replies: list[dict[str, Any]] = []
    for offset in range(0, len(tests), slice_size):
        replies += read_jsonl(part_uri(run_uri, offset))
    answers = {side: [Answer(**r[side]) for r in replies] for side in ("baseline", "tuned")}
    metrics, rows = compare(tests, answers["baseline"], answers["tuned"], labels_of(run_uri))
    metrics["gate"] = evaluation.gate(metrics, **(config.get("gate") or {}))
    metrics["tokens"] = token_table(replies)
    metrics["backend"] = "gemini"
    metrics["models"] = {"baseline": config.get("base_model"), "tuned": job.endpoint}
    if is_emulated(job):
        metrics["emulated"] = True
    evaluation.write_results(join(run_uri, "evaluation"), metrics, rows)
    log.info(f"evaluated {metrics['n']} test examples: {metrics['gate']['reason']}")
    try_render_run(run_uri)
    return metrics


def token_table(replies: list[dict[str, Any]]) -> dict[str, Any]:
    """Input and output tokens of each model over the test split, and what tuning saved.

    >>> t = token_table([{"baseline": {"input_tokens": 40, "output_tokens": 52},
    ...                   "tuned": {"input_tokens": 30, "output_tokens": 4}}])
    >>> t["saved"]
    {'input': 0.25, 'output': 0.9231}
    """
    table: dict[str, Any] = {}
    for side in ("baseline", "tuned"):
        table[side] = {
            kind: sum(r[side][f"{kind}_tokens"] or 0 for r in replies)
            for kind in ("input", "output")
        }
    table["saved"] = {
        kind: round(1 - table["tuned"][kind] / table["baseline"][kind], 4)
        if table["baseline"][kind]
        else None
        for kind in ("input", "output")
    }
    return table


def tuning_record(job: Any) -> dict[str, Any]:
    """`training/tuning_job.json`: the job as Vertex AI returned it, and what droptune read."""
    record = {
        "name": job.name,
        "state": job.state,
        "tuned_model": job.tuned_model,
        "endpoint": job.endpoint,
        "data_stats": job.data_stats,
        "resource": job.resource,
    }
    if is_emulated(job):
        record["emulated"] = True
    return record


def is_emulated(job: Any) -> bool:
    """A job droptune's local Vertex AI server emulated (it says so in its description)."""
    return "Emulated" in str(job.resource.get("description", ""))


# --- run folder I/O ------------------------------------------------------------------------
def part_uri(run_uri: str, offset: int) -> str:
    return join(run_uri, "evaluation", "parts", f"{offset:07d}.jsonl")


def read_bytes(uri: str) -> bytes:
    try:
        return read_all(uri)
    except DroptuneError as exc:
        raise EvaluationError(f"{uri}: cannot be read ({exc})") from None


def read_json(uri: str) -> dict[str, Any]:
    try:
        return json.loads(read_bytes(uri))
    except ValueError as exc:
        raise EvaluationError(f"{uri}: not JSON ({exc})") from None


def read_jsonl(uri: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in read_bytes(uri).splitlines() if line.strip()]


def write_json(uri: str, value: Any) -> None:
    write_all(uri, json.dumps(value, indent=2).encode())


def write_jsonl(uri: str, rows: list[dict[str, Any]]) -> None:
    write_all(uri, b"".join(json.dumps(row).encode() + b"\n" for row in rows))
