"""A scripted Gemini tuning service behind droptune's local Vertex AI server, for contract
tests: the server checks every request against the aiplatform v1 types, and this tuner plays
the service's part — a job's states poll by poll, its end, its data statistics, and answers to
`generateContent`, with throttling where a test asks for it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.cloud.aiplatform_v1.types import JobState

from droptune.local.vertex.errors import ApiError
from droptune.local.vertex.tuning import CODE_FAILED, Tuning, gemini_response, to_messages

RUNNING = ["JOB_STATE_PENDING", "JOB_STATE_QUEUED", "JOB_STATE_RUNNING", "JOB_STATE_RUNNING"]


@dataclass
class Script:
    """What one job does: the state each poll shows, then its end; or, with `seconds`,
    RUNNING until that long has passed on the tuner's clock, then its end."""

    states: list[str] = field(default_factory=lambda: list(RUNNING))
    seconds: float | None = None
    end: str = "JOB_STATE_SUCCEEDED"
    error: str | None = None
    data_stats: dict[str, Any] = field(
        default_factory=lambda: {
            "tuningDatasetExampleCount": "76",
            "totalBillableTokenCount": "9120",
            "totalTruncatedExampleCount": "2",
            "droppedExampleReasons": ["example 12: no model turn"],
            "tuningStepCount": "30",
        }
    )


Answerer = Callable[[str, list[dict[str, str]]], str]


@dataclass
class ScriptedTuner:
    """Jobs follow `scripts[display name]` (else `default`); `answer(target, messages)` says
    what a model replies; the first `throttle` calls of each kind are answered 429."""

    scripts: dict[str, Script] = field(default_factory=dict)
    default: Script = field(default_factory=Script)
    answer: Answerer = lambda target, messages: "ok"
    clock: Callable[[], float] = time.monotonic
    throttle_create: int = 0
    throttle_generate: int = 0
    thoughts: int = 0  # thinking tokens each answer reports (2.5 models think by default)
    blocked: Callable[[str, list[dict[str, str]]], bool] = lambda target, messages: False
    refuse_generate: bool = False  # every generateContent answered 400 INVALID_ARGUMENT
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    started: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, job: Tuning) -> None:
        if self.throttle_create > 0:
            self.throttle_create -= 1
            raise ApiError("RESOURCE_EXHAUSTED", "Quota exceeded for tuning job creation.")
        job.script = self.scripts.get(job.resource.tuned_model_display_name, self.default)
        self.started[job.resource.name] = self.clock()

    def run(self, job: Tuning, lock: threading.Lock) -> None:
        pass  # the job moves on when it is polled

    def polled(self, job: Tuning) -> None:
        if job.ended or job.cancel_requested:
            if job.cancel_requested and not job.ended:
                job.fail(JobState.JOB_STATE_CANCELLED, 1, "CANCELED")
            return
        script: Script = job.script
        if script.seconds is not None:
            if self.clock() - self.started[job.resource.name] < script.seconds:
                job.set_state(JobState.JOB_STATE_RUNNING)
                return
        elif job.polls <= len(script.states):
            job.set_state(JobState[script.states[job.polls - 1]])
            return
        if script.end == "JOB_STATE_SUCCEEDED":
            stats = job.resource.tuning_data_stats.supervised_tuning_data_stats
            from google.protobuf import json_format

            json_format.ParseDict(script.data_stats, stats)
            job.succeed()
        else:
            job.fail(JobState[script.end], CODE_FAILED, script.error or script.end)

    def cancel(self, job: Tuning) -> None:
        pass  # CANCELLED at the next poll

    def generate(self, target: str, request: Any, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.requests.append((target, body))
            if self.throttle_generate > 0:
                self.throttle_generate -= 1
                raise ApiError("RESOURCE_EXHAUSTED", "Resource exhausted, please try again.")
            if self.refuse_generate:
                raise ApiError("INVALID_ARGUMENT", "Request contains an invalid argument.")
        messages = to_messages(request)
        prompt = sum(len(m["content"].split()) for m in messages)
        if self.blocked(target, messages):  # no candidate; usage counts the prompt only
            usage = {"promptTokenCount": prompt, "totalTokenCount": prompt}
            return {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage}
        text = self.answer(target, messages)
        response = gemini_response(
            text, {"inputTokens": prompt, "outputTokens": len(text.split())}, "scripted-001"
        )
        usage = response["usageMetadata"]
        if self.thoughts:
            usage["thoughtsTokenCount"] = self.thoughts
            usage["totalTokenCount"] += self.thoughts
        for key in [k for k, count in usage.items() if count == 0]:
            del usage[key]  # proto3 JSON leaves zero counts out
        return response

    def stop_all(self, grace: float) -> None:
        pass
