"""What a user does to a run besides reading it: cancel its training, ask its tuned model.

Both start from the run folder, the only place a run is known by: `status.json` names the
training or tuning job, `endpoint.json` the endpoint the run deployed. Custom runs go through
droptune's Vertex AI adapter (`droptune.cloud.vertex`), Gemini runs through google-genai
(`droptune.cloud.genai`); `DROPTUNE_VERTEX_API` points both at the local Vertex AI server.

    cancel("gs://my-runs/runs/tickets-1700000000123456-2cae3432")
    ask("gs://my-runs/runs/tickets-1700000000123456-2cae3432", "My invoice is wrong")
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from droptune.errors import DroptuneError
from droptune.instruction import tuned_system_prompt
from droptune.reporting.files import RunFiles, load_run
from droptune.runs import ENDED, RunFolder, RunState

MAX_NEW_TOKENS = 256


class RunActionError(DroptuneError):
    """The run cannot take the action now (ended, not started, nothing deployed); says why."""


@dataclass(frozen=True)
class Cancelled:
    run_id: str
    job: str  # the training or tuning job asked to stop
    state: str  # the run's state when asked


def cancel(uri: str, env: Mapping[str, str] = os.environ) -> Cancelled:
    """Ask Vertex AI to cancel the run's training (custom) or tuning (Gemini) job. The
    workflow that waits on the job sees it end and ends the run CANCELLED; nothing after
    training (evaluation, deployment) happens."""
    run_id = RunFolder.at(uri).run_id
    status = _run_files(uri, "status").status
    if status is None:
        raise RunActionError(f"run {run_id} has no status.json: no workflow has taken it up")
    state = str(status.get("state"))
    if state in ENDED:
        raise RunActionError(f"run {run_id} already ended {state}: there is nothing to cancel")
    if state in (RunState.EVALUATING, RunState.DEPLOYING):
        raise RunActionError(
            f"run {run_id} is {state}: its training is over, and cancel stops only training"
        )
    job = status.get("training_job")
    if not job:
        raise RunActionError(
            f"run {run_id} is {state} and its job has not been created yet; "
            "run this again in a few seconds"
        )
    if "/tuningJobs/" in job:
        from droptune.cloud import genai

        was = genai.cancel_tuning(genai.client(_gemini_settings(job, env)), job)
    else:
        from droptune.cloud import vertex

        was = vertex.cancel_custom_job(vertex.VertexApi.for_resource(job, env), job)
    if was.ended:
        raise RunActionError(
            f"run {run_id}'s job {job} already ended {was.state}; "
            "the run records it at the workflow's next poll"
        )
    return Cancelled(run_id, job, state)


def ask(
    uri: str,
    prompt: str,
    system: str | None = None,
    max_new_tokens: int = MAX_NEW_TOKENS,
    env: Mapping[str, str] = os.environ,
) -> str:
    """The answer of the run's deployed model to `prompt` (greedy), through the endpoint
    named in the run's endpoint.json. `system` defaults to the system turn the model was
    tuned with: the one every training example had (validation/report.json, which counts a
    `system_instruction` the examples took), else the run's `system_instruction`; "" sends
    none. A custom run's model must still be on its endpoint: a later run's deployment
    retires it, and the endpoint would answer with the later model."""
    files = _run_files(uri, "run", "status", "endpoint", "validation")
    card = _endpoint_card(files)
    config = (files.run or {}).get("config") or {}
    if system is None:
        system = tuned_system_prompt(files.validation, config)
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    endpoint = card["endpoint"]
    if card.get("backend") == "gemini":
        from droptune.cloud import genai

        client = genai.client(_gemini_settings(endpoint, env))
        thinking = genai.least_thinking(str(config.get("base_model") or ""))  # as evaluated
        return genai.generate(
            client, endpoint, messages, max_output_tokens=max_new_tokens, thinking_budget=thinking
        ).text
    from droptune.cloud import vertex

    api = vertex.VertexApi.for_resource(endpoint, env)
    mine = card.get("deployed_model_id")
    if mine and mine not in (deployed := vertex.deployed_model_ids(api, endpoint)):
        raise RunActionError(
            f"run {RunFolder.at(uri).run_id}'s model ({mine}) is no longer on {endpoint}: a "
            f"later run's deployment retired it (deployed now: {', '.join(sorted(deployed)) or 'none'})"
        )
    (answer,) = vertex.predict(
        api, endpoint, [{"messages": messages}], {"max_new_tokens": max_new_tokens}
    )
    return answer if isinstance(answer, str) else orjson.dumps(answer).decode()


def _run_files(uri: str, *names: str) -> RunFiles:
    """The run folder's `names` (keys of `droptune.reporting.files.JSON_FILES`); a file that
    is there but unreadable stops the action with its name and why."""
    files = load_run(uri, names)
    if files.problems:
        raise RunActionError(
            f"run {RunFolder.at(uri).run_id}: {'; '.join(files.problems)}; "
            "the run folder's files are written by droptune: restore them or start a new run"
        )
    return files


def _endpoint_card(files: RunFiles) -> dict[str, Any]:
    if files.endpoint is not None:
        return files.endpoint
    state = (files.status or {}).get("state")
    why = f"it is {state}" if state else "it has no status.json"
    raise RunActionError(
        f"run {RunFolder.at(files.uri).run_id} has no endpoint.json ({why}): "
        "only a SUCCEEDED run has a model to ask"
    )


def _gemini_settings(resource: str, env: Mapping[str, str]) -> Any:
    from droptune.cloud import genai
    from droptune.cloud.vertex import RESOURCE

    match = RESOURCE.match(resource)
    if match is None:
        raise RunActionError(f"{resource!r} is not a Vertex AI resource name")
    return genai.GeminiSettings(
        project=match["project"],
        location=match["location"],
        base_url=env.get("DROPTUNE_VERTEX_API") or None,
    )
