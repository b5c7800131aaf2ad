"""A scripted Vertex AI for the workflow tests: customJobs, models and endpoints as plain data,
put in through the local engine's call hooks. A training job lasts as long as the test says on
the engine's virtual clock, so a 2-hour job is counted in steps in milliseconds; calls are
recorded by method, and errors come as the connectors raise them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from droptune.evaluation import gate_record
from droptune.local.workflows.errors import WorkflowRaise
from droptune.local.workflows.stdlib import VirtualClock

AIPLATFORM = "googleapis.aiplatform.v1.projects.locations."


def http_error(code: int) -> WorkflowRaise:
    return WorkflowRaise({"message": f"HTTP {code}", "code": code, "tags": ["HttpError"]})


@dataclass
class ScriptedVertex:
    """customJobs, models and endpoints as plain data; the job's fate is set by the test."""

    clock: VirtualClock
    bucket: Any
    job_seconds: float = 600
    job_end: str = "JOB_STATE_SUCCEEDED"
    gate_passed: bool = True
    labels: int = 0  # labelled data: metrics.json's per-label tables, as the trainer's
    serving_fails: bool = False  # a deployed model answers predictions with an HTTP 500
    create_failures: list[int] = field(default_factory=list)  # HTTP codes before success
    jobs: dict[str, dict] = field(default_factory=dict)
    endpoints: dict[str, dict] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def hooks(self) -> dict[str, Any]:
        methods = {
            "customJobs.create": self.create_job,
            "customJobs.get": self.get_job,
            "customJobs.cancel": self.cancel_job,
            "models.upload": self.upload_model,
            "endpoints.get": self.get_endpoint,
            "endpoints.create": self.create_endpoint,
            "endpoints.deployModel": self.deploy,
            "endpoints.undeployModel": self.undeploy,
            "endpoints.predict": self.predict,
        }

        def recorded(name: str, fn: Any) -> Any:
            def call(**kwargs: Any) -> Any:
                self.calls.append(name)
                return fn(**kwargs)

            return call

        return {AIPLATFORM + name: recorded(name, fn) for name, fn in methods.items()}

    def create_job(
        self, parent: str, body: dict, region: str, connector_params: dict | None = None
    ) -> dict:
        """As the connector: it waits for the job (30 minutes by default) unless told to
        skip polling, and a longer job is a TimeoutError, the job left running."""
        if self.create_failures:
            raise http_error(self.create_failures.pop(0))
        name = f"{parent}/customJobs/{len(self.jobs) + 1}"
        created = datetime.fromtimestamp(self.clock.now(), UTC).isoformat().replace("+00:00", "Z")
        self.jobs[name] = {**body, "name": name, "state": "JOB_STATE_PENDING"}
        self.jobs[name] |= {"createTime": created, "started": self.clock.now()}
        connector = connector_params or {}
        if connector.get("skip_polling"):
            return dict(self.jobs[name])
        timeout = connector.get("timeout", 1800)
        self.clock.sleep(min(timeout, self.job_seconds))
        if self.job_seconds > timeout:
            raise WorkflowRaise({"message": f"{name} not done in time", "tags": ["TimeoutError"]})
        return self.get_job(name, region)

    def get_job(self, name: str, region: str) -> dict:
        job = self.jobs[name]
        if job["state"] in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING"):
            done = self.clock.now() - job["started"] >= self.job_seconds
            job["state"] = self.job_end if done else "JOB_STATE_RUNNING"
            if job["state"] == "JOB_STATE_FAILED":
                job["error"] = {"code": 3, "message": "The replica workerpool0-0 exited with 1"}
            if job["state"] == "JOB_STATE_SUCCEEDED":
                self.write_evaluation(job)
        return dict(job)

    def cancel_job(self, name: str, region: str) -> dict:
        if self.jobs[name]["state"] not in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING"):
            raise http_error(400)  # FAILED_PRECONDITION: the job has ended
        self.jobs[name]["state"] = "JOB_STATE_CANCELLED"
        return {}

    def write_evaluation(self, job: dict) -> None:
        prefix = job["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"].split("/", 3)[3]
        gate = {"metric": "rouge_l", "min_delta": 0.0, "passed": self.gate_passed}
        gate["reason"] = "tuned - baseline rouge_l = +0.1000 exceeds the required +0.0000"
        if not self.gate_passed:
            gate["reason"] = (
                "tuned - baseline rouge_l = -0.1000 does not exceed the required +0.0000"
            )
        metrics = {"split": "test", "n": 2, "gate": gate} | label_tables(self.labels)
        for name, body in (("metrics", metrics), ("gate", gate_record(metrics))):
            self.bucket.blob(f"{prefix}evaluation/{name}.json").upload_from_string(
                json.dumps(body), content_type="application/json"
            )

    def upload_model(self, parent: str, body: dict, region: str) -> dict:
        return {"model": f"{parent}/models/7"}

    def get_endpoint(self, name: str, region: str) -> dict:
        if name not in self.endpoints:
            raise http_error(404)
        return self.endpoints[name]

    def create_endpoint(self, parent: str, endpointId: str, body: dict, region: str) -> dict:  # noqa: N803
        name = f"{parent}/endpoints/{endpointId}"
        if name in self.endpoints:
            raise http_error(409)  # ALREADY_EXISTS
        self.endpoints[name] = {**body, "name": name}
        return self.endpoints[name]

    def deploy(self, endpoint: str, body: dict, region: str, connector_params: dict) -> dict:
        """As Vertex AI: the request's trafficSplit replaces the endpoint's ("0": the new one)."""
        deployed = {"id": str(100 + len(self.calls)), "model": body["deployedModel"]["model"]}
        models = self.endpoints[endpoint].setdefault("deployedModels", [])
        models.append(deployed)
        split = body.get("trafficSplit") or {}
        if split:
            self.set_split(
                endpoint, {deployed["id"] if k == "0" else k: v for k, v in split.items()}
            )
        return {"deployedModel": deployed}

    def undeploy(self, endpoint: str, body: dict, region: str) -> dict:
        """As Vertex AI: a model that still has traffic leaves only when the request's
        trafficSplit takes it away, or when it is the last one."""
        resource = self.endpoints[endpoint]
        models = resource["deployedModels"]
        gone = body["deployedModelId"]
        if not any(m["id"] == gone for m in models):
            raise http_error(404)
        models[:] = [m for m in models if m["id"] != gone]
        split = body.get("trafficSplit") or {}
        if not models:
            split = {}
        elif not split:
            if resource.get("trafficSplit", {}).get(gone, 0):
                raise http_error(400)  # FAILED_PRECONDITION: it still has traffic
            split = {k: v for k, v in resource.get("trafficSplit", {}).items() if k != gone}
        self.set_split(endpoint, split)
        return {}

    def set_split(self, endpoint: str, split: dict[str, int]) -> None:
        ids = {m["id"] for m in self.endpoints[endpoint].get("deployedModels", [])}
        if split and (sum(split.values()) != 100 or not split.keys() <= ids):
            raise http_error(400)  # INVALID_ARGUMENT: a split over the deployed models, of 100
        self.endpoints[endpoint]["trafficSplit"] = split

    def predict(self, endpoint: str, body: dict, region: str) -> dict:
        if self.serving_fails:
            raise http_error(500)
        return {"predictions": ["Hi!"]}


def label_tables(count: int) -> dict[str, Any]:
    """metrics.json's `labels` for `count` labels, shaped as droptune.evaluation writes them:
    per-label scores and a confusion matrix per model, its size growing as count squared."""
    if not count:
        return {}
    names = [f"category {i:04d}" for i in range(count)]
    scores = {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 3}
    table = {
        "per_label": {name: scores for name in names},
        "macro_f1": 0.5,
        "confusion": [[0] * (count + 1) for _ in names],
        "no_label": 0,
    }
    return {"labels": {"names": names, "baseline": table, "tuned": table}}
