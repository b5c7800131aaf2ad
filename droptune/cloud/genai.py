"""Gemini supervised tuning and generation on Vertex AI, through `google-genai`.

The SDK is Google's own client for both; droptune adds what a pipeline needs around it:

- `settings_from_env` reads Vertex AI mode the way the SDK does (`GOOGLE_GENAI_USE_ENTERPRISE`
  wins over `GOOGLE_GENAI_USE_VERTEXAI`) and refuses the Gemini Developer API, which cannot tune
  from `gs://` data; `DROPTUNE_VERTEX_API` points it at another REST root (droptune's local
  Vertex AI server, a contract-test server), which needs no Google credentials.
- `start_tuning`/`get_tuning`/`cancel_tuning` speak in `TuningJob`s: the state, whether it has
  ended (every end state counts, EXPIRED and PARTIALLY_SUCCEEDED included), the tuned model and
  the endpoint that serves it, and the service's data statistics (examples dropped or
  truncated), which otherwise stay buried in the console.
- `generate` answers one conversation and says what it cost (`usage_metadata`) and how long it
  took; throttling (429) and unavailability (503) are retried by the SDK's own retry options,
  with exponential backoff and jitter.

Tuning requests use the v1 REST API: it is what the workflow calls too, so both ask Vertex AI
for the same thing.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.genai import Client, types
from google.genai.errors import ExperimentalWarning

from droptune.cloud.vertex import ENDED_JOB_STATES
from droptune.errors import ConfigError, DroptuneError
from droptune.storage import join

API_VERSION = "v1"
RETRY_STATUS_CODES = (429, 503)  # throttled or briefly unavailable: nothing was done, try again


class GeminiError(DroptuneError):
    """A Gemini API call failed after its retries, or answered something unusable."""

    @property
    def retryable(self) -> bool:
        """Worth another try later: throttling, a server or transport error; not a request
        the API refused (400, 403, 404: the same request would be refused again)."""
        code = getattr(self.__cause__, "code", None)
        return not isinstance(code, int) or code in (408, 429) or code >= 500


@dataclass(frozen=True)
class GeminiSettings:
    project: str
    location: str
    base_url: str | None = None  # another REST root than Vertex AI's own (local, tests)
    attempts: int = 6  # per request, the first included
    first_retry_s: float = 1.0  # then doubling, up to 30 s, plus up to 1 s of jitter
    timeout_s: float = 120.0


def settings_from_env(env: Mapping[str, str] = os.environ) -> GeminiSettings:
    """Vertex AI mode, project and location from the environment.

    >>> settings_from_env({"GOOGLE_CLOUD_PROJECT": "p", "GOOGLE_CLOUD_LOCATION": "europe-west4"})
    GeminiSettings(project='p', location='europe-west4', base_url=None, attempts=6, first_retry_s=1.0, timeout_s=120.0)
    """
    switch = env.get("GOOGLE_GENAI_USE_ENTERPRISE", env.get("GOOGLE_GENAI_USE_VERTEXAI"))
    if switch is not None and switch.strip().lower() not in ("true", "1"):
        raise ConfigError(
            "droptune tunes Gemini on Vertex AI: unset GOOGLE_GENAI_USE_ENTERPRISE / "
            "GOOGLE_GENAI_USE_VERTEXAI or set it to true (the Gemini Developer API cannot "
            "tune from gs:// data)"
        )
    project = env.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        raise ConfigError("set GOOGLE_CLOUD_PROJECT to the project that runs Gemini tuning")
    return GeminiSettings(
        project=project,
        location=env.get("GOOGLE_CLOUD_LOCATION") or "us-central1",
        base_url=env.get("DROPTUNE_VERTEX_API") or None,
    )


def client(settings: GeminiSettings) -> Client:
    """A google-genai client in Vertex AI mode, retrying 429 and 503 with backoff and jitter."""
    retry = types.HttpRetryOptions(
        attempts=settings.attempts,
        initial_delay=settings.first_retry_s,
        max_delay=30.0,
        exp_base=2.0,
        jitter=min(1.0, settings.first_retry_s),
        http_status_codes=list(RETRY_STATUS_CODES),
    )
    options = types.HttpOptions(
        api_version=API_VERSION,
        base_url=settings.base_url,
        timeout=int(settings.timeout_s * 1000),
        retry_options=retry,
    )
    credentials = None
    if settings.base_url and not settings.base_url.endswith(".googleapis.com"):
        # A local server takes any bearer token; Google credentials may not exist here.
        from google.oauth2.credentials import Credentials

        credentials = Credentials(token="local")
    return Client(
        vertexai=True,
        project=settings.project,
        location=settings.location,
        credentials=credentials,
        http_options=options,
    )


# --- tuning -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TuningRequest:
    """One supervised tuning job, as droptune asks for it."""

    base_model: str
    training_uri: str
    validation_uri: str | None
    display_name: str
    epochs: int | None = None
    learning_rate_multiplier: float | None = None
    adapter_size: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_run(
        cls, run_uri: str, run_id: str, config: Mapping[str, Any], with_validation: bool = True
    ) -> TuningRequest:
        """The job for a run folder: `data/gemini/` files and the run's resolved config.

        >>> r = TuningRequest.for_run("gs://r/runs/a-1/", "a-1", {"base_model": "gemini-2.5-flash", "epochs": 3})
        >>> r.training_uri, r.labels
        ('gs://r/runs/a-1/data/gemini/train.jsonl', {'run_id': 'a-1', 'droptune': 'tuning-job'})
        """
        return cls(
            base_model=str(config["base_model"]),
            training_uri=join(run_uri, "data", "gemini", "train.jsonl"),
            validation_uri=join(run_uri, "data", "gemini", "validation.jsonl")
            if with_validation
            else None,
            display_name=run_id,
            epochs=config.get("epochs"),
            learning_rate_multiplier=config.get("learning_rate_multiplier"),
            adapter_size=config.get("adapter_size"),
            labels={"run_id": run_id, "droptune": "tuning-job"},
        )


@dataclass(frozen=True)
class TuningJob:
    """What droptune needs to know of a tuning job; `resource` is the whole of it as JSON."""

    name: str
    state: str
    tuned_model: str | None
    endpoint: str | None
    error: str | None
    data_stats: dict[str, Any]
    resource: dict[str, Any]

    @property
    def ended(self) -> bool:
        return self.state in ENDED_JOB_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "JOB_STATE_SUCCEEDED"

    @classmethod
    def of(cls, job: types.TuningJob) -> TuningJob:
        tuned = job.tuned_model
        return cls(
            name=job.name or "",
            state=job.state.name if job.state is not None else "JOB_STATE_UNSPECIFIED",
            tuned_model=tuned.model if tuned else None,
            endpoint=tuned.endpoint if tuned else None,
            error=job.error.message if job.error else None,
            data_stats=data_stats(job),
            resource=job.model_dump(mode="json", exclude_none=True, by_alias=True),
        )


def data_stats(job: types.TuningJob) -> dict[str, Any]:
    """The service's view of the data: examples, billable tokens, dropped and truncated ones."""
    stats = job.tuning_data_stats and job.tuning_data_stats.supervised_tuning_data_stats
    if not stats:
        return {}
    out = {
        "examples": stats.tuning_dataset_example_count,
        "billable_tokens": stats.total_billable_token_count,
        "truncated_examples": stats.total_truncated_example_count,
        "dropped_example_reasons": stats.dropped_example_reasons,
        "tuning_steps": stats.tuning_step_count,
    }
    return {k: v for k, v in out.items() if v is not None}


def start_tuning(genai: Client, request: TuningRequest) -> TuningJob:
    config = types.CreateTuningJobConfig(
        tuned_model_display_name=request.display_name,
        epoch_count=request.epochs,
        learning_rate_multiplier=request.learning_rate_multiplier,
        adapter_size=request.adapter_size,
        labels=request.labels or None,
        validation_dataset=types.TuningValidationDataset(gcs_uri=request.validation_uri)
        if request.validation_uri
        else None,
    )
    with warnings.catch_warnings():
        # The SDK flags its tuning module as experimental; the v1 REST API under it is not.
        warnings.simplefilter("ignore", category=ExperimentalWarning)
        job = genai.tunings.tune(
            base_model=request.base_model,
            training_dataset=types.TuningDataset(gcs_uri=request.training_uri),
            config=config,
        )
    return TuningJob.of(job)


def get_tuning(genai: Client, name: str) -> TuningJob:
    try:
        found = genai.tunings.get(name=name)
    except Exception as exc:  # the SDK's APIError and transport errors alike, after retries
        raise GeminiError(f"{name}: reading the tuning job failed: {exc}") from exc
    return TuningJob.of(found)


def cancel_tuning(genai: Client, name: str) -> TuningJob:
    """Ask for the tuning job to be cancelled unless it has already ended; the job as it was
    (`ended` says whether there was anything to cancel)."""
    job = get_tuning(genai, name)
    if not job.ended:
        try:
            genai.tunings.cancel(name=name)
        except Exception as exc:  # the SDK's APIError and transport errors alike, after retries
            raise GeminiError(f"{name}: cancelling failed: {exc}") from exc
    return job


# --- generation ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    text: str
    input_tokens: int | None
    output_tokens: int | None
    latency_s: float
    model_version: str | None = None


def to_contents(messages: Sequence[Mapping[str, Any]]) -> tuple[str | None, list[types.Content]]:
    """Canonical chat messages as Gemini's system instruction and contents.

    >>> system, contents = to_contents([{"role": "system", "content": "Be brief."},
    ...     {"role": "user", "content": "Hi"}])
    >>> system, [(c.role, c.parts[0].text) for c in contents]
    ('Be brief.', [('user', 'Hi')])
    """
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system") or None
    contents = [
        types.Content(
            role="model" if m["role"] == "assistant" else "user",
            parts=[types.Part(text=m.get("content") or "")],
        )
        for m in messages
        if m["role"] in ("user", "assistant")
    ]
    return system, contents


def least_thinking(base_model: str) -> int | None:
    """The smallest thinking budget a Gemini family takes, or None for one that does not
    think. Thinking tokens count against `max_output_tokens`: left on, a 2.5 model can spend
    a short budget thinking and answer nothing. Google advises turning it off (or down, for
    Pro, which cannot) for tuned models; the evaluation asks both models the same way.

    >>> least_thinking("gemini-2.5-flash"), least_thinking("gemini-2.5-pro"), least_thinking("gemini-2.0-flash-001")
    (0, 128, None)
    """
    name = base_model.rsplit("/", 1)[-1]
    if not name.startswith("gemini-") or name.startswith(("gemini-1.", "gemini-2.0")):
        return None
    return 128 if "-pro" in name else 0


def generate(
    genai: Client,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    max_output_tokens: int | None = None,
    temperature: float = 0.0,
    thinking_budget: int | None = None,
) -> Answer:
    """One greedy answer from `model` (a base model id or a tuned model's endpoint); with
    `thinking_budget`, thinking is held to it (see `least_thinking`). Output tokens include
    the thinking, which is billed as output."""
    system, contents = to_contents(messages)
    config = types.GenerateContentConfig(
        system_instruction=system,
        temperature=temperature,
        max_output_tokens=max_output_tokens,
        thinking_config=None
        if thinking_budget is None
        else types.ThinkingConfig(thinking_budget=thinking_budget),
    )
    started = time.perf_counter()
    try:
        response = genai.models.generate_content(model=model, contents=contents, config=config)
    except Exception as exc:  # the SDK's APIError and transport errors alike, after retries
        raise GeminiError(f"{model}: generateContent failed: {exc}") from exc
    latency = time.perf_counter() - started
    usage = response.usage_metadata
    # Answer and thinking: both billed as output; an answer may be all thinking, and a blocked
    # prompt has no candidate at all. proto3 JSON leaves zero counts out, so with usage
    # reported, a count that is missing is 0.
    output = None
    if usage:
        output = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
    return Answer(
        text=response.text or "",
        input_tokens=usage.prompt_token_count if usage else None,
        output_tokens=output,
        latency_s=latency,
        model_version=response.model_version,
    )
