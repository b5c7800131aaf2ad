"""Vertex AI from Python: a run's custom training job and the endpoint it was deployed on.

google-cloud-aiplatform's generated v1 clients (`aiplatform_v1`), over their REST transport:
the same JSON the workflow's connectors send, so droptune's local Vertex AI server answers
these calls as Vertex AI does, and nothing here knows which of the two it talks to. The API
root is the resource's regional endpoint (`https://<location>-aiplatform.googleapis.com`),
or `DROPTUNE_VERTEX_API` when that is set (the local stack, tests).

    api = VertexApi.for_resource("projects/p/locations/us-central1/endpoints/123")
    texts = predict(api, "projects/p/locations/us-central1/endpoints/123",
                    [{"messages": [{"role": "user", "content": "Hi"}]}])
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from droptune.errors import DroptuneError

# projects/<project>/locations/<location>/<collection>/<id>
RESOURCE = re.compile(r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/(?P<rest>.+)$")


class VertexError(DroptuneError):
    """A Vertex AI call failed (after the client's retries) or named no such resource."""


@dataclass(frozen=True)
class VertexApi:
    root: str  # https://us-central1-aiplatform.googleapis.com, or http://127.0.0.1:<port>

    @classmethod
    def for_resource(cls, name: str, env: Mapping[str, str] = os.environ) -> VertexApi:
        """The API root that serves `name` (a projects/…/locations/…/… resource).

        >>> VertexApi.for_resource("projects/p/locations/europe-west4/customJobs/1", {}).root
        'https://europe-west4-aiplatform.googleapis.com'
        >>> VertexApi.for_resource("projects/p/locations/local/customJobs/1",
        ...                        {"DROPTUNE_VERTEX_API": "http://127.0.0.1:8500/"}).root
        'http://127.0.0.1:8500'
        """
        if env.get("DROPTUNE_VERTEX_API"):
            return cls(env["DROPTUNE_VERTEX_API"].rstrip("/"))
        return cls(f"https://{location_of(name)}-aiplatform.googleapis.com")

    @property
    def local(self) -> bool:
        return self.root.startswith("http://")


def location_of(name: str) -> str:
    match = RESOURCE.match(name)
    if match is None:
        raise VertexError(f"{name!r} is not a Vertex AI resource name (projects/…/locations/…)")
    return match["location"]


# Where a job (custom or tuning: one JobState enum) stops; EXPIRED and PARTIALLY_SUCCEEDED too.
ENDED_JOB_STATES = frozenset(
    f"JOB_STATE_{s}" for s in ("SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED", "PARTIALLY_SUCCEEDED")
)


@dataclass(frozen=True)
class Job:
    name: str
    state: str  # JOB_STATE_RUNNING, JOB_STATE_SUCCEEDED, ...
    error: str | None = None

    @property
    def ended(self) -> bool:
        return self.state in ENDED_JOB_STATES


def _options(api: VertexApi) -> dict[str, Any]:
    from google.auth.credentials import AnonymousCredentials

    options: dict[str, Any] = {"transport": "rest", "client_options": {"api_endpoint": api.root}}
    if api.local:  # no Google credentials on a machine that runs droptune locally
        options["credentials"] = AnonymousCredentials()
    return options


@cache
def jobs(api: VertexApi) -> Any:
    """The JobServiceClient for one API root, made once per process."""
    from google.cloud import aiplatform_v1

    return aiplatform_v1.JobServiceClient(**_options(api))


@cache
def predictions(api: VertexApi) -> Any:
    """The PredictionServiceClient for one API root, made once per process."""
    from google.cloud import aiplatform_v1

    return aiplatform_v1.PredictionServiceClient(**_options(api))


@cache
def endpoints(api: VertexApi) -> Any:
    """The EndpointServiceClient for one API root, made once per process."""
    from google.cloud import aiplatform_v1

    return aiplatform_v1.EndpointServiceClient(**_options(api))


def deployed_model_ids(api: VertexApi, endpoint: str) -> set[str]:
    """Ids of the models deployed on `endpoint` now."""
    found = _call(lambda: endpoints(api).get_endpoint(name=endpoint), endpoint)
    return {model.id for model in found.deployed_models}


def get_custom_job(api: VertexApi, name: str) -> Job:
    job = _call(lambda: jobs(api).get_custom_job(name=name), name)
    return Job(job.name, job.state.name, job.error.message or None)


def cancel_custom_job(api: VertexApi, name: str) -> Job:
    """Ask Vertex AI to cancel the job; it ends JOB_STATE_CANCELLED shortly after (the
    workflow that waits on it then ends the run CANCELLED). Returns the job as it was."""
    job = get_custom_job(api, name)
    if not job.ended:
        _call(lambda: jobs(api).cancel_custom_job(name=name), name)
    return job


def predict(
    api: VertexApi,
    endpoint: str,
    instances: Sequence[Mapping[str, Any]],
    parameters: Mapping[str, Any] | None = None,
) -> list[Any]:
    """The endpoint's predictions for `instances` (droptune's serving container answers one
    text per instance)."""
    from google.protobuf import json_format, struct_pb2

    def value(obj: Any) -> struct_pb2.Value:
        return json_format.ParseDict(obj, struct_pb2.Value())

    response = _call(
        lambda: predictions(api).predict(
            endpoint=endpoint,
            instances=[value(dict(i)) for i in instances],
            parameters=value(dict(parameters or {})),
        ),
        endpoint,
    )
    return [json_format.MessageToDict(p) for p in response._pb.predictions]


def _call(request: Any, name: str) -> Any:
    from google.api_core import exceptions

    try:
        return request()
    except exceptions.NotFound:
        raise VertexError(f"{name}: not found") from None
    except exceptions.GoogleAPICallError as exc:
        raise VertexError(f"{name}: {exc.message or exc}") from None
    except OSError as exc:  # requests' connection errors: nothing answers at the API root
        raise VertexError(f"{name}: Vertex AI did not answer ({exc})") from None
