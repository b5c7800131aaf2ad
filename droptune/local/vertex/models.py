"""Models: `models:upload` (a long-running operation, done at once) and get/list.

A model is only a record here: its `containerSpec` says how to serve it and `artifactUri`
where its files are; endpoints read both when the model is deployed. Only custom-container
models are accepted, since no prebuilt Vertex AI serving image exists locally.
"""

from __future__ import annotations

import threading
from typing import Any

from google.cloud.aiplatform_v1.types import (
    GenericOperationMetadata,
    UploadModelOperationMetadata,
    UploadModelRequest,
    UploadModelResponse,
)

from droptune.local.vertex import ids, schema
from droptune.local.vertex.errors import ApiError, invalid, not_found
from droptune.local.vertex.filters import matches
from droptune.local.vertex.routing import ID, PARENT, Request, Route, Runtime, page
from droptune.log import get_logger

log = get_logger("droptune.local.vertex")
VERSION = "1"  # every upload makes a new model, so each model has one version


class Models:
    """The `models` collection of every project and location."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._lock = threading.Lock()
        self._models: dict[str, Any] = {}  # name -> aiplatform.v1.Model (raw protobuf)

    def routes(self) -> list[Route]:
        models = PARENT + "/models"
        return [
            Route.of("POST", models + ":upload", self.upload),
            Route.of("GET", models, self.list),
            Route.of("GET", models + "/" + ID + r"(?:@[^/:]+)?", self.get),
        ]

    def upload(self, request: Request) -> dict[str, Any]:
        upload = schema.parse(request.body, UploadModelRequest, "UploadModelRequest")
        model = upload.model
        check_model(model)
        model_id = upload.model_id or ids.new_id()
        name = f"{request.params['parent']}/models/{model_id}"
        with self._lock:
            if name in self._models:
                raise ApiError("ALREADY_EXISTS", f"Model {name} already exists.")
            stamp = schema.now()
            model.name = name
            model.version_id = VERSION
            model.version_aliases[:] = ["default"]
            for field in (
                "create_time",
                "update_time",
                "version_create_time",
                "version_update_time",
            ):
                getattr(model, field).CopyFrom(stamp)
            self._models[name] = model
        log.info("model uploaded", model=name, display_name=model.display_name)
        metadata = UploadModelOperationMetadata.pb(
            UploadModelOperationMetadata(generic_metadata=generic_metadata())
        )
        operation = self.runtime.operations.start(name, metadata)
        response = UploadModelResponse.pb(UploadModelResponse(model=name, model_version_id=VERSION))
        self.runtime.operations.finish(operation.name, response)
        return self.runtime.operations.get(operation.name)

    def get(self, request: Request) -> dict[str, Any]:
        return schema.to_json(
            self.find(f"{request.params['parent']}/models/{request.params['id']}")
        )

    def list(self, request: Request) -> dict[str, Any]:
        prefix = request.params["parent"] + "/models/"
        with self._lock:
            found = [schema.to_json(m) for n, m in self._models.items() if n.startswith(prefix)]
        found = [model for model in found if matches(request.query.get("filter"), model)]
        return page(found, request.query, "models")

    def find(self, name: str) -> Any:
        """The model called `name` (a version suffix `@1` is allowed), or a 404."""
        with self._lock:
            model = self._models.get(name.split("@", 1)[0])
            if model is None:
                raise not_found(f"Model {name}")
            copy = type(model)()
            copy.CopyFrom(model)
            return copy


def check_model(model: Any) -> None:
    if not model.display_name:
        raise invalid("model.displayName is required.")
    if not model.container_spec.image_uri:
        raise invalid(
            "model.containerSpec.imageUri is required: the local Vertex AI server serves "
            "custom-container models only."
        )


def generic_metadata() -> GenericOperationMetadata:
    stamp = schema.now()
    return GenericOperationMetadata(create_time=stamp, update_time=stamp)
