"""droptune's Cloud Run functions: the upload function and the Gemini evaluation.

`on_upload` (CloudEvent signature): a Cloud Storage finalize event on the uploads bucket in, a
QUEUED or REJECTED run out. Settings come from the environment (`DROPTUNE_RUNS_BUCKET`,
`DROPTUNE_TOPIC`, ...).

`evaluate` (HTTP, called by the workflow with an OIDC token): one slice of a Gemini run's
baseline-vs-tuned evaluation (`droptune.gemini`). It is a function rather than a Vertex AI
job because the work is waiting on API calls, not computing: a request starts in seconds
where a CPU job spends minutes provisioning, bills only while it answers, and the slices keep
each call well inside the workflow's 30-minute HTTP timeout. Locally:

    functions-framework --source functions/main.py --target on_upload --signature-type cloudevent
    functions-framework --source functions/main.py --target evaluate
"""

from __future__ import annotations

from typing import Any

import flask
import functions_framework
from cloudevents.http import CloudEvent

from droptune.errors import ConfigError
from droptune.intake import EventError, IntakeSettings, UploadedObject, handle_upload, preload
from droptune.log import get_logger, labelled
from droptune.runs import RunFolder

FINALIZED = "google.cloud.storage.object.v1.finalized"
log = get_logger("droptune.functions.upload")


def _preload() -> None:
    """Global scope runs once per instance, before it takes requests (and with Cloud Run's
    startup CPU boost): with DROPTUNE_PRELOAD_TOKENIZER set, which Terraform and droptune
    local set for the upload function only, the tokenizer is loaded here, not in the first
    upload. A settings error is left to the first request to report."""
    try:
        settings = IntakeSettings.from_env()
    except ConfigError:
        return
    preload(settings)


_preload()


@functions_framework.cloud_event
def on_upload(event: CloudEvent) -> None:
    if event["type"] != FINALIZED:
        log.info(f"ignored a {event['type']} event: only {FINALIZED} starts a run")
        return
    try:
        obj = UploadedObject.from_resource(event.data)
    except EventError as exc:  # redelivering cannot fix it: acknowledge and say why
        log.error(f"ignored event {event['id']}: {exc}")
        return
    try:
        settings = IntakeSettings.from_env()
    except ConfigError as exc:  # a deployment mistake: fail, so the event waits for the fix
        log.error(f"the function is misconfigured: {exc}", object=obj.uri)
        raise
    with labelled(object=obj.uri):
        handle_upload(obj, settings)  # logs its own failures, then raises: the event comes again


@functions_framework.http
def evaluate(request: flask.Request) -> tuple[dict[str, Any], int]:
    # Imported here: the upload function shares this module and need not load google-genai.
    from droptune.cloud import genai
    from droptune.gemini import EvaluationError, EvaluationRequest, evaluate_slice

    try:
        work = EvaluationRequest.from_json(request.get_json(silent=True))
    except EvaluationError as exc:
        return error(400, "INVALID_ARGUMENT", str(exc))
    with labelled(run_id=RunFolder.at(work.run_uri).run_id):
        try:
            answer = evaluate_slice(work, genai.client(genai.settings_from_env()))
        except (EvaluationError, ConfigError) as exc:  # the run or the deployment: no retry helps
            log.error(f"evaluation of {work.run_uri} failed: {exc}")
            return error(422, "FAILED_PRECONDITION", str(exc))
        except genai.GeminiError as exc:  # the model API, after its own retries
            log.error(f"evaluation of {work.run_uri} failed: {exc}")
            if exc.retryable:  # throttled or unavailable: the workflow tries the slice again
                return error(503, "UNAVAILABLE", str(exc))
            return error(422, "FAILED_PRECONDITION", str(exc))  # refused: it would be again
    return answer, 200


def error(code: int, status: str, message: str) -> tuple[dict[str, Any], int]:
    """Google's error shape, which the workflow reads into the run's status.json."""
    return {"error": {"code": code, "status": status, "message": message}}, code
