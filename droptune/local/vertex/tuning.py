"""TuningJobs (create, get, list, cancel) and `generateContent`, for Gemini supervised tuning.

The API side is the same whoever does the work: bodies are checked against the aiplatform v1
`TuningJob` and `GenerateContentRequest` types (unknown or mistyped fields are a 400), jobs
are resources with Vertex AI's states and timestamps, and every end state sets `endTime`.
The work itself is a `Tuner`'s:

- `EmulatedTuning` (local mode, in `emulation`) tunes a small open model on this machine with droptune's
  trainer, from the run folder that the job's `gs://…/data/gemini/train.jsonl` belongs to,
  and answers `generateContent` from it; the base model's answers come from the same small
  model untuned. Gemini is not involved, and every output says so: the job's description,
  the tuned model's display name and each response's `modelVersion`.
- Tests give a scripted tuner (states per poll, failures, throttling) to check droptune's
  clients against the contract without a cloud.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from google.cloud.aiplatform_v1.types import (
    GenerateContentRequest,
    JobState,
    TuningJob,
)

from droptune.local.vertex import ids, schema
from droptune.local.vertex.errors import invalid, not_found, precondition
from droptune.local.vertex.filters import matches
from droptune.local.vertex.routing import ID, PARENT, Request, Route, Runtime, page
from droptune.log import get_logger

log = get_logger("droptune.local.vertex")
ENDED = {
    JobState.JOB_STATE_SUCCEEDED,
    JobState.JOB_STATE_FAILED,
    JobState.JOB_STATE_CANCELLED,
    JobState.JOB_STATE_EXPIRED,
    JobState.JOB_STATE_PARTIALLY_SUCCEEDED,
}
CODE_CANCELLED = 1
CODE_FAILED = 3
EMULATED = "emulated"


def tuning_log(root: Path, job_id: str) -> Path:
    """Where the output of tuning job `job_id` goes, under the server's root."""
    return root / "tuningJobs" / job_id / "tuning.log"


@dataclass
class Tuning:
    """A tuning job's resource (the proto the API returns) and what its tuner keeps."""

    resource: Any  # aiplatform.v1.TuningJob (raw protobuf message)
    cancel_requested: bool = False
    polls: int = 0
    script: Any = None  # what a scripted tuner keeps for this job

    @property
    def id(self) -> str:
        return self.resource.name.rsplit("/", 1)[1]

    @property
    def ended(self) -> bool:
        return self.resource.state in ENDED

    def set_state(self, state: JobState) -> None:
        self.resource.state = state
        self.resource.update_time.CopyFrom(schema.now())
        if state == JobState.JOB_STATE_RUNNING and not self.resource.HasField("start_time"):
            self.resource.start_time.CopyFrom(self.resource.update_time)
        if state in ENDED:
            self.resource.end_time.CopyFrom(self.resource.update_time)
        log.info("tuning job state", job=self.resource.name, state=JobState(state).name)

    def fail(self, state: JobState, code: int, message: str) -> None:
        self.resource.error.code = code
        self.resource.error.message = message
        self.set_state(state)

    def succeed(self) -> None:
        """Ended well: the tuned model and its endpoint are named after the job."""
        parent = self.resource.name.split("/tuningJobs/")[0]
        self.resource.tuned_model.model = f"{parent}/models/{self.id}@1"
        self.resource.tuned_model.endpoint = f"{parent}/endpoints/{self.id}"
        self.set_state(JobState.JOB_STATE_SUCCEEDED)


class Tuner(Protocol):
    """Who does the work behind the API. Methods other than `run` are called under the
    service's lock; `run` runs in a thread of its own once the job is created."""

    def admit(self, job: Tuning) -> None:
        """Raise an ApiError to refuse a create (nothing is created)."""

    def run(self, job: Tuning, lock: threading.Lock) -> None:
        """Do the tuning; change the job's state under `lock`."""

    def polled(self, job: Tuning) -> None:
        """A client read the job."""

    def cancel(self, job: Tuning) -> None:
        """Stop the work; `run` ends the job CANCELLED."""

    def generate(self, target: str, request: Any, body: dict[str, Any]) -> dict[str, Any]:
        """The GenerateContentResponse JSON for `target` (a publisher model or an endpoint)."""

    def stop_all(self, grace: float) -> None:
        """The server is stopping."""


class TuningJobs:
    """The `tuningJobs` collection and `generateContent`, of every project and location."""

    def __init__(self, runtime: Runtime, tuner: Tuner) -> None:
        self.runtime = runtime
        self.tuner = tuner
        self._lock = threading.Lock()
        self._jobs: dict[str, Tuning] = {}

    def routes(self) -> list[Route]:
        jobs = PARENT + "/tuningJobs"
        return [
            Route.of("POST", jobs, self.create),
            Route.of("GET", jobs, self.list),
            Route.of("GET", jobs + "/" + ID, self.get),
            Route.of("POST", jobs + "/" + ID + ":cancel", self.cancel),
            Route.of(
                "POST",
                PARENT + r"/(?P<target>publishers/[^/:]+/models/[^/:]+):generateContent",
                self.generate,
            ),
            Route.of(
                "POST", PARENT + r"/(?P<target>endpoints/[^/:]+):generateContent", self.generate
            ),
        ]

    # --- API methods ---------------------------------------------------------------------
    def create(self, request: Request) -> dict[str, Any]:
        resource = schema.parse(request.body, TuningJob, "TuningJob")
        check_tuning_job(resource)
        resource.name = f"{request.params['parent']}/tuningJobs/{ids.new_id()}"
        resource.state = JobState.JOB_STATE_PENDING
        resource.create_time.CopyFrom(schema.now())
        resource.update_time.CopyFrom(resource.create_time)
        job = Tuning(resource)
        with self._lock:
            self.tuner.admit(job)
            self._jobs[resource.name] = job
            answer = schema.to_json(resource)
        log.info("tuning job created", job=resource.name, base_model=resource.base_model)
        threading.Thread(target=self.tuner.run, args=(job, self._lock), daemon=True).start()
        return answer

    def get(self, request: Request) -> dict[str, Any]:
        with self._lock:
            job = self._find(request)
            job.polls += 1
            self.tuner.polled(job)
            return schema.to_json(job.resource)

    def list(self, request: Request) -> dict[str, Any]:
        prefix = request.params["parent"] + "/tuningJobs/"
        with self._lock:
            found = [
                schema.to_json(j.resource) for n, j in self._jobs.items() if n.startswith(prefix)
            ]
        found = [job for job in found if matches(request.query.get("filter"), job)]
        return page(found, request.query, "tuningJobs")

    def cancel(self, request: Request) -> dict[str, Any]:
        with self._lock:
            job = self._find(request)
            if job.ended or job.cancel_requested:
                state = JobState(job.resource.state).name
                raise precondition(f"Cannot cancel TuningJob {job.resource.name} in state {state}.")
            job.cancel_requested = True
            job.set_state(JobState.JOB_STATE_CANCELLING)
            self.tuner.cancel(job)
        return {}

    def generate(self, request: Request) -> dict[str, Any]:
        parsed = schema.parse(request.body, GenerateContentRequest, "GenerateContentRequest")
        if not parsed.contents:
            raise invalid("contents is required.")
        target = f"{request.params['parent']}/{request.params['target']}"
        return self.tuner.generate(target, parsed, request.body)

    # --- helpers -------------------------------------------------------------------------
    def stop_all(self, grace: float) -> None:
        self.tuner.stop_all(grace)

    def _find(self, request: Request) -> Tuning:
        name = f"{request.params['parent']}/tuningJobs/{request.params['id']}"
        job = self._jobs.get(name)
        if job is None:
            raise not_found(f"TuningJob {name}")
        return job


def check_tuning_job(resource: Any) -> None:
    """What Vertex AI requires of a supervised tuning job, said as it says it."""
    if not resource.base_model:
        raise invalid("tuningJob.baseModel is required.")
    spec = resource.supervised_tuning_spec
    if not spec.training_dataset_uri:
        raise invalid("tuningJob.supervisedTuningSpec.trainingDatasetUri is required.")
    for name, uri in (
        ("trainingDatasetUri", spec.training_dataset_uri),
        ("validationDatasetUri", spec.validation_dataset_uri),
    ):
        if uri and not (uri.startswith("gs://") and uri.endswith(".jsonl")):
            raise invalid(f"supervisedTuningSpec.{name} must be a gs:// JSONL file; got {uri!r}.")


# --- requests and answers in Gemini's shape ------------------------------------------------
def to_messages(request: Any) -> list[dict[str, str]]:
    """A GenerateContentRequest's system instruction and contents as chat messages."""
    messages = []
    system = "".join(p.text for p in request.system_instruction.parts)
    if system:
        messages.append({"role": "system", "content": system})
    for content in request.contents:
        role = "assistant" if content.role == "model" else "user"
        messages.append({"role": role, "content": "".join(p.text for p in content.parts)})
    return messages


def gemini_response(text: str, usage: dict[str, int], model_version: str) -> dict[str, Any]:
    prompt, output = usage.get("inputTokens", 0), usage.get("outputTokens", 0)
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}
        ],
        "usageMetadata": {
            "promptTokenCount": prompt,
            "candidatesTokenCount": output,
            "totalTokenCount": prompt + output,
        },
        "modelVersion": model_version,
    }
