"""The upload function: Cloud Storage finalize event in, a QUEUED or REJECTED run out.

Deployed as a Cloud Run function (functions-framework, CloudEvent signature, target
`on_upload`) triggered by `google.cloud.storage.object.v1.finalized` on the uploads bucket;
settings come from the environment (`DROPTUNE_RUNS_BUCKET`, `DROPTUNE_TOPIC`, ...). Locally:

    functions-framework --source functions/main.py --target on_upload --signature-type cloudevent
"""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from droptune.errors import ConfigError
from droptune.intake import EventError, IntakeSettings, UploadedObject, handle_upload
from droptune.log import get_logger

FINALIZED = "google.cloud.storage.object.v1.finalized"
log = get_logger("droptune.functions.upload")


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
    handle_upload(obj, settings)
