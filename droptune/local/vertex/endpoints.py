"""Endpoints: create, get, list, deployModel, undeployModel and predict.

`deployModel` answers with an operation that stays `done: false` until the model's serving
process answers its health route; then the endpoint lists the deployed model and its share
of traffic, and the operation's response is the `DeployedModel`. A process that exits, or
is not healthy within `containerSpec.deploymentTimeout` (else the server's default), ends
the operation with error code 13 and the last lines of its log. `undeployModel` stops the
process before its operation is done; as on Vertex AI, a model with traffic leaves only when
the request's `trafficSplit` takes that traffic away, or when it is the endpoint's last. Serving logs go to `root/endpoints/ENDPOINT/ID.log`.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from google.cloud.aiplatform_v1.types import (
    CreateEndpointOperationMetadata,
    DeployModelOperationMetadata,
    DeployModelRequest,
    DeployModelResponse,
    Endpoint,
    PredictRequest,
    UndeployModelOperationMetadata,
    UndeployModelRequest,
    UndeployModelResponse,
)

from droptune.local.vertex import ids, schema
from droptune.local.vertex.errors import ApiError, invalid, not_found, precondition
from droptune.local.vertex.filters import matches
from droptune.local.vertex.models import Models, generic_metadata
from droptune.local.vertex.routing import ID, PARENT, Request, Route, Runtime, page
from droptune.local.vertex.serving import Serving, StartFailed
from droptune.log import get_logger

log = get_logger("droptune.local.vertex")
CODE_INTERNAL = 13
_ENDPOINT_ID = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


@dataclass
class EndpointState:
    resource: Any  # aiplatform.v1.Endpoint (raw protobuf)
    serving: dict[str, Serving] = field(default_factory=dict)  # by deployed model id


class Endpoints:
    """The `endpoints` collection of every project and location."""

    def __init__(self, runtime: Runtime, models: Models, deploy_timeout: float) -> None:
        self.runtime = runtime
        self.models = models
        self.deploy_timeout = deploy_timeout
        self._lock = threading.Lock()
        self._endpoints: dict[str, EndpointState] = {}

    def routes(self) -> list[Route]:
        endpoints = PARENT + "/endpoints"
        one = endpoints + "/" + ID
        return [
            Route.of("POST", endpoints, self.create),
            Route.of("GET", endpoints, self.list),
            Route.of("GET", one, self.get),
            Route.of("POST", one + ":deployModel", self.deploy),
            Route.of("POST", one + ":undeployModel", self.undeploy),
            Route.of("POST", one + ":predict", self.predict),
        ]

    # --- resources -----------------------------------------------------------------------
    def create(self, request: Request) -> dict[str, Any]:
        resource = schema.parse(request.body, Endpoint, "Endpoint")
        if not resource.display_name:
            raise invalid("endpoint.displayName is required.")
        endpoint_id = request.query.get("endpointId") or ids.new_id()
        if not _ENDPOINT_ID.fullmatch(endpoint_id):
            raise invalid(f"endpointId {endpoint_id!r} must be digits, lower-case letters or '-'.")
        resource.name = f"{request.params['parent']}/endpoints/{endpoint_id}"
        resource.create_time.CopyFrom(schema.now())
        resource.update_time.CopyFrom(resource.create_time)
        with self._lock:
            if resource.name in self._endpoints:
                raise ApiError("ALREADY_EXISTS", f"Endpoint {resource.name} already exists.")
            self._endpoints[resource.name] = EndpointState(resource)
        log.info("endpoint created", endpoint=resource.name, display_name=resource.display_name)
        metadata = CreateEndpointOperationMetadata(generic_metadata=generic_metadata())
        return self._done(resource.name, CreateEndpointOperationMetadata.pb(metadata), resource)

    def get(self, request: Request) -> dict[str, Any]:
        with self._lock:
            return schema.to_json(self._find(request).resource)

    def list(self, request: Request) -> dict[str, Any]:
        prefix = request.params["parent"] + "/endpoints/"
        with self._lock:
            found = [
                schema.to_json(e.resource)
                for n, e in self._endpoints.items()
                if n.startswith(prefix)
            ]
        found = [endpoint for endpoint in found if matches(request.query.get("filter"), endpoint)]
        return page(found, request.query, "endpoints")

    # --- deploy / undeploy ---------------------------------------------------------------
    def deploy(self, request: Request) -> dict[str, Any]:
        deploy = schema.parse(request.body, DeployModelRequest, "DeployModelRequest")
        deployed = deploy.deployed_model
        check_deployed_model(deployed)
        model = self.models.find(deployed.model)
        split = dict(deploy.traffic_split)
        if split and sum(split.values()) != 100:
            raise invalid(f"trafficSplit must add up to 100, not {sum(split.values())}.")
        with self._lock:
            endpoint = self._find(request)
            deployed.id = deployed.id or ids.new_id()
            deployed.model = model.name
            deployed.model_version_id = model.version_id
            deployed.display_name = deployed.display_name or model.display_name
        metadata = DeployModelOperationMetadata(generic_metadata=generic_metadata())
        operation = self.runtime.operations.start(
            endpoint.resource.name, DeployModelOperationMetadata.pb(metadata)
        )
        threading.Thread(
            target=self._serve, args=(endpoint, model, deployed, split, operation.name), daemon=True
        ).start()
        return self.runtime.operations.get(operation.name)

    def _serve(
        self, endpoint: EndpointState, model: Any, deployed: Any, split: dict, operation: str
    ) -> None:
        name = endpoint.resource.name
        log_path = self.runtime.root / "endpoints" / name.rsplit("/", 1)[1] / f"{deployed.id}.log"
        machine = deployed.dedicated_resources.machine_spec.machine_type
        timeout = (
            model.container_spec.deployment_timeout.ToTimedelta().total_seconds()
            or self.deploy_timeout
        )
        serving = None
        try:
            serving = Serving.start(model, name, deployed.id, self.runtime.env, log_path, machine)
            with self._lock:  # registered at once, so that stopping the server stops it too
                endpoint.serving[deployed.id] = serving
            serving.wait_healthy(timeout, self.runtime.stopping)
        except StartFailed as exc:
            with self._lock:
                endpoint.serving.pop(deployed.id, None)
            if serving is not None:
                serving.process.stop()
            log.warning(
                "model not deployed", endpoint=name, deployed_model=deployed.id, error=str(exc)
            )
            self.runtime.operations.fail(
                operation, CODE_INTERNAL, f"Model server never became ready. {exc}"
            )
            return
        with self._lock:
            deployed.create_time.CopyFrom(schema.now())
            endpoint.resource.deployed_models.append(deployed)
            shares = split or {"0": 0 if endpoint.resource.traffic_split else 100}
            if split:
                endpoint.resource.traffic_split.clear()
            for key, share in shares.items():
                endpoint.resource.traffic_split[deployed.id if key == "0" else key] = share
            endpoint.resource.update_time.CopyFrom(schema.now())
        log.info(
            "model deployed",
            endpoint=name,
            deployed_model=deployed.id,
            model=model.name,
            port=serving.port,
        )
        response = DeployModelResponse.pb(DeployModelResponse())
        response.deployed_model.CopyFrom(deployed)
        self.runtime.operations.finish(operation, response)

    def undeploy(self, request: Request) -> dict[str, Any]:
        undeploy = schema.parse(request.body, UndeployModelRequest, "UndeployModelRequest")
        deployed_id = undeploy.deployed_model_id
        if not deployed_id:
            raise invalid("deployedModelId is required.")
        with self._lock:
            endpoint = self._find(request)
            kept = [d for d in endpoint.resource.deployed_models if d.id != deployed_id]
            if len(kept) == len(endpoint.resource.deployed_models):
                raise not_found(f"DeployedModel {deployed_id} of Endpoint {endpoint.resource.name}")
            split = dict(undeploy.traffic_split)
            if split.get(deployed_id, 0):
                raise invalid(f"trafficSplit gives traffic to {deployed_id}, which it undeploys.")
            if kept and not split and endpoint.resource.traffic_split.get(deployed_id, 0):
                raise precondition(
                    f"DeployedModel {deployed_id} still has traffic; give trafficSplit "
                    "without it to undeploy it."
                )
            remaining = {} if not kept else split or dict(endpoint.resource.traffic_split)
            remaining.pop(deployed_id, None)
            _check_split(remaining, {d.id for d in kept})
            del endpoint.resource.deployed_models[:]
            endpoint.resource.deployed_models.extend(kept)
            endpoint.resource.traffic_split.clear()
            endpoint.resource.traffic_split.update(remaining)
            endpoint.resource.update_time.CopyFrom(schema.now())
            serving = endpoint.serving.pop(deployed_id, None)
        metadata = UndeployModelOperationMetadata(generic_metadata=generic_metadata())
        operation = self.runtime.operations.start(
            endpoint.resource.name, UndeployModelOperationMetadata.pb(metadata)
        )

        def stop() -> None:
            if serving is not None:
                serving.process.stop()
            log.info(
                "model undeployed", endpoint=endpoint.resource.name, deployed_model=deployed_id
            )
            self.runtime.operations.finish(
                operation.name, UndeployModelResponse.pb(UndeployModelResponse())
            )

        threading.Thread(target=stop, daemon=True).start()
        return self.runtime.operations.get(operation.name)

    # --- predictions ---------------------------------------------------------------------
    def predict(self, request: Request) -> dict[str, Any]:
        schema.parse(request.body, PredictRequest, "PredictRequest")
        if "instances" not in request.body:
            raise invalid("instances is required.")
        with self._lock:
            endpoint = self._find(request)
            deployed = _pick(endpoint)
            serving = endpoint.serving[deployed.id]
        # The raw JSON goes on, not the parsed protobuf: Value would turn every int into a float.
        predictions = serving.predict(request.body["instances"], request.body.get("parameters"))
        return {
            "predictions": predictions,
            "deployedModelId": deployed.id,
            "model": deployed.model,
            "modelDisplayName": deployed.display_name,
            "modelVersionId": deployed.model_version_id,
        }

    # --- helpers -------------------------------------------------------------------------
    def stop_all(self, grace: float) -> None:
        """Stop every serving process (the server is stopping); waits for them."""
        with self._lock:
            running = [s.process for e in self._endpoints.values() for s in e.serving.values()]
        stoppers = [threading.Thread(target=p.stop, args=(grace,)) for p in running]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()

    def _done(self, parent: str, metadata: Any, resource: Any) -> dict[str, Any]:
        operation = self.runtime.operations.start(parent, metadata)
        self.runtime.operations.finish(operation.name, resource)
        return self.runtime.operations.get(operation.name)

    def _find(self, request: Request) -> EndpointState:
        name = f"{request.params['parent']}/endpoints/{request.params['id']}"
        endpoint = self._endpoints.get(name)
        if endpoint is None:
            raise not_found(f"Endpoint {name}")
        return endpoint


def check_deployed_model(deployed: Any) -> None:
    if not deployed.model:
        raise invalid("deployedModel.model is required.")
    if deployed.HasField("dedicated_resources"):
        if not deployed.dedicated_resources.machine_spec.machine_type:
            raise invalid("deployedModel.dedicatedResources.machineSpec.machineType is required.")
        if deployed.dedicated_resources.min_replica_count < 1:
            raise invalid("deployedModel.dedicatedResources.minReplicaCount must be at least 1.")
    elif not deployed.HasField("automatic_resources"):
        raise invalid("deployedModel needs dedicatedResources or automaticResources.")


def _check_split(split: dict[str, int], deployed: set[str]) -> None:
    """A traffic split over deployed models that adds up to 100 (or an empty one)."""
    if split and sum(split.values()) != 100:
        raise invalid(f"trafficSplit must add up to 100, not {sum(split.values())}.")
    if unknown := split.keys() - deployed:
        raise invalid(f"trafficSplit names models not deployed: {', '.join(sorted(unknown))}.")


def _pick(endpoint: EndpointState) -> Any:
    """A deployed model ready to serve, chosen by the endpoint's traffic split."""
    ready = [d for d in endpoint.resource.deployed_models if d.id in endpoint.serving]
    if not ready:
        raise precondition(
            f"Endpoint {endpoint.resource.name} has no deployed model to serve predictions."
        )
    weights = [endpoint.resource.traffic_split.get(d.id, 0) for d in ready]
    if not any(weights):
        return ready[0]
    return random.choices(ready, weights=weights)[0]
