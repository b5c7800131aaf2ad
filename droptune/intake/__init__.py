"""The intake: what the upload function does with one uploaded object.

`handle_upload(UploadedObject.from_resource(event.data), IntakeSettings.from_env())` claims
the run, validates and splits the data into the run folder, and publishes the run's message,
or rejects the run with a report. `functions/main.py` is a thin wrapper around it.
"""

from droptune.intake.event import EventError, UploadedObject, ignore_reason
from droptune.intake.flow import Outcome, handle_upload, preload
from droptune.intake.settings import IntakeSettings

__all__ = [
    "EventError",
    "IntakeSettings",
    "Outcome",
    "UploadedObject",
    "handle_upload",
    "ignore_reason",
    "preload",
]
