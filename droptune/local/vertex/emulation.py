"""Gemini tuning emulated on this machine, for local mode (`EmulatedTuning`, a `Tuner`).

A tuning job trains a small open model (`standin`) with droptune's trainer on the run folder
that its `gs://…/data/gemini/train.jsonl` belongs to; `generateContent` is answered from that
model, and from the same model untuned for the base model. Gemini is not involved, and every
output says so: the job's description, the tuned model's display name and each response's
`modelVersion`.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

from google.cloud.aiplatform_v1.types import JobState, Model, ModelContainerSpec

from droptune.local.processes import Process
from droptune.local.vertex import outputs
from droptune.local.vertex.errors import ApiError, not_found, precondition
from droptune.local.vertex.processes import process_env
from droptune.local.vertex.routing import Runtime
from droptune.local.vertex.serving import Serving, StartFailed
from droptune.local.vertex.tuning import (
    CODE_CANCELLED,
    CODE_FAILED,
    EMULATED,
    Tuning,
    gemini_response,
    to_messages,
    tuning_log,
)
from droptune.log import get_logger
from droptune.storage import join

log = get_logger("droptune.local.vertex")


class EmulatedTuning:
    """Tunes `standin` (a small open model) with droptune's trainer instead of Gemini."""

    def __init__(self, runtime: Runtime, standin: str, deploy_timeout: float) -> None:
        self.runtime = runtime
        self.standin = standin
        self.deploy_timeout = deploy_timeout
        self._processes: dict[str, Process] = {}
        self._tuned: dict[str, Path] = {}  # model folder by tuned model endpoint
        self._serving: dict[str, Serving] = {}  # by model folder
        self._starting = threading.Lock()

    def admit(self, job: Tuning) -> None:
        job.resource.description = (
            f"Emulated by droptune's local Vertex AI server: {self.standin} tuned with LoRA on "
            f"this machine stands in for {job.resource.base_model}."
        )
        name = job.resource.tuned_model_display_name or job.id
        job.resource.tuned_model_display_name = f"{name} ({EMULATED})"

    def polled(self, job: Tuning) -> None:
        pass

    def run(self, job: Tuning, lock: threading.Lock) -> None:
        spec = job.resource.supervised_tuning_spec
        run_dir = run_folder_of(spec.training_dataset_uri)
        folder = tuning_log(self.runtime.root, job.id).parent
        with lock:
            if run_dir is None:
                job.fail(
                    JobState.JOB_STATE_FAILED,
                    CODE_FAILED,
                    "Emulated tuning trains on a droptune run folder: trainingDatasetUri must be "
                    f"gs://…/runs/<run_id>/data/gemini/train.jsonl, not {spec.training_dataset_uri}.",
                )
                return
            if job.cancel_requested or self.runtime.stopping.is_set():
                job.fail(JobState.JOB_STATE_CANCELLED, CODE_CANCELLED, "CANCELED")
                return
            argv = trainer_argv(run_dir, self.standin, spec.hyper_parameters.epoch_count)
            env = process_env(
                self.runtime.env,
                {
                    "AIP_MODEL_DIR": str(folder / "model") + "/",
                    "AIP_CHECKPOINT_DIR": str(folder / "checkpoints") + "/",
                    "CLOUD_ML_JOB_ID": job.id,
                },
            )
            try:
                process = Process.start(argv, env, folder / "tuning.log", folder / "work")
            except OSError as exc:
                job.fail(JobState.JOB_STATE_FAILED, CODE_FAILED, f"Tuning could not start: {exc}")
                return
            self._processes[job.id] = process
            job.set_state(JobState.JOB_STATE_RUNNING)
        status = process.wait()
        self._copy_log(job, process, run_dir)
        with lock:
            if job.cancel_requested or self.runtime.stopping.is_set():
                job.fail(JobState.JOB_STATE_CANCELLED, CODE_CANCELLED, "CANCELED")
            elif status != 0:
                job.fail(
                    JobState.JOB_STATE_FAILED,
                    CODE_FAILED,
                    f"Emulated tuning exited with status {status}. Last lines of its output:\n"
                    f"{process.tail()}",
                )
            else:
                record_stats(job, run_dir, self.runtime.env)
                job.succeed()
                self._tuned[job.resource.tuned_model.endpoint] = folder / "model"

    def cancel(self, job: Tuning) -> None:
        process = self._processes.get(job.id)
        if process is not None:
            threading.Thread(target=process.stop, daemon=True).start()

    def generate(self, target: str, request: Any, body: dict[str, Any]) -> dict[str, Any]:
        model_dir, version = self._model_for(target)
        serving = self._serving_for(model_dir, target)
        config = request.generation_config
        parameters: dict[str, Any] = {"temperature": config.temperature}
        if config.max_output_tokens:
            parameters["max_new_tokens"] = config.max_output_tokens
        answer = serving.call([{"messages": to_messages(request)}], parameters)
        usage = (answer.get("metadata") or {}).get("usage") or [{}]
        return gemini_response(answer["predictions"][0], usage[0], version)

    def stop_all(self, grace: float) -> None:
        running = [*self._processes.values(), *(s.process for s in self._serving.values())]
        stoppers = [threading.Thread(target=p.stop, args=(grace,)) for p in running]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()

    # --- which model answers ---------------------------------------------------------------
    def _model_for(self, target: str) -> tuple[str, str]:
        """(model folder, modelVersion) of a publisher model id or a tuned model's endpoint."""
        if "/publishers/" in target:
            from droptune.models import locate

            files = locate(self.standin)
            if files.gguf_file or not (Path(files.location) / "config.json").is_file():
                raise precondition(
                    f"The emulated base model needs {self.standin} as a local checkpoint: "
                    "run `droptune models pull` first."
                )
            model = target.rsplit("/", 1)[1]
            return files.location, f"{EMULATED}:{self.standin} (untuned, standing in for {model})"
        model_dir = self._tuned.get(target)
        if model_dir is None:
            raise not_found(f"Endpoint {target} (no emulated tuned model is deployed there)")
        return str(model_dir), f"{EMULATED}:{self.standin} tuned by {target}"

    def _serving_for(self, model_dir: str, target: str) -> Serving:
        with self._starting:  # one process per model, however many requests arrive at once
            serving = self._serving.get(model_dir)
            if serving is not None and serving.process.poll() is None:
                return serving
            key = target.rsplit("/", 1)[1]
            spec = ModelContainerSpec(image_uri="droptune-trainer", args=["serve"])
            model = Model.pb(Model(container_spec=spec, artifact_uri=model_dir))
            log_path = self.runtime.root / "generate" / f"{key}.log"
            try:
                serving = Serving.start(
                    model, target.split("/publishers/")[0] + f"/endpoints/{key}", key,
                    self.runtime.env, log_path, "emulated",
                )  # fmt: skip
                serving.wait_healthy(self.deploy_timeout, self.runtime.stopping)
            except StartFailed as exc:
                raise ApiError("UNAVAILABLE", f"The emulated model did not start. {exc}") from None
            self._serving[model_dir] = serving
            return serving

    def _copy_log(self, job: Tuning, process: Process, run_dir: str) -> None:
        try:
            data = process.log_path.read_bytes()
            outputs.write(join(run_dir, "training", "job.log"), data, self.runtime.env)
        except Exception as exc:  # a lost log copy must not hide the job's own outcome
            log.warning("tuning log not copied", job=job.resource.name, error=str(exc))


def run_folder_of(training_uri: str) -> str | None:
    """The run folder a `…/data/gemini/train.jsonl` belongs to.

    >>> run_folder_of("gs://runs/runs/a-1/data/gemini/train.jsonl")
    'gs://runs/runs/a-1/'
    >>> run_folder_of("gs://mine/train.jsonl") is None
    True
    """
    suffix = "data/gemini/train.jsonl"
    return training_uri.removesuffix(suffix) if training_uri.endswith("/" + suffix) else None


def trainer_argv(run_dir: str, standin: str, epochs: int) -> list[str]:
    argv = [sys.executable, "-m", "droptune_trainer", "train", "--run-dir", run_dir]
    argv += ["--set", f"base_model={standin}", "--set", "evaluate_at_end=false"]
    if epochs:
        argv += ["--set", f"epochs={epochs}"]
    return argv


def record_stats(job: Tuning, run_dir: str, env: dict[str, str]) -> None:
    """The data statistics Vertex reports, from the training file and the trainer's metrics."""
    stats = job.resource.tuning_data_stats.supervised_tuning_data_stats
    data = outputs.read(job.resource.supervised_tuning_spec.training_dataset_uri, env) or b""
    stats.tuning_dataset_example_count = sum(1 for line in data.splitlines() if line.strip())
    stats.total_truncated_example_count = 0
    metrics = outputs.read(join(run_dir, "training", "metrics.json"), env)
    if metrics:
        measured = json.loads(metrics)
        stats.tuning_step_count = int(measured.get("steps") or 0)
        stats.total_billable_token_count = int(measured.get("tokens") or 0)
