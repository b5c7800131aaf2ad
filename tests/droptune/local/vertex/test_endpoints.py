"""Models, endpoints and predictions through the real aiplatform clients (REST transport)."""

from __future__ import annotations

import sys

import pytest
import requests
from google.api_core import exceptions as gexc

from tests.droptune.local.vertex.conftest import ECHO_MODEL, PARENT
from tests.droptune.local.vertex.test_jobs import assert_error, gone

DEDICATED = {"machine_spec": {"machine_type": "n1-standard-4"}, "min_replica_count": 1}


def upload(models, command: list[str], **spec) -> str:
    model = {
        "display_name": "echo",
        "artifact_uri": "gs://runs/r1/model",
        "labels": {"run_id": "r1"},
        "container_spec": {"image_uri": "trainer:latest", "command": command, **spec},
    }
    operation = models.upload_model(parent=PARENT, model=model)
    return operation.result(timeout=10).model


def create_endpoint(endpoints, **fields) -> str:
    operation = endpoints.create_endpoint(
        parent=PARENT, endpoint={"display_name": "ep", "labels": {"run_id": "r1"}, **fields}
    )
    return operation.result(timeout=10).name


def deploy_echo(models, endpoints) -> tuple[str, str]:
    """(model, endpoint): the echo model deployed with all the traffic on a new endpoint."""
    model = upload(models, [sys.executable, str(ECHO_MODEL)])
    endpoint = create_endpoint(endpoints)
    endpoints.deploy_model(
        endpoint=endpoint,
        deployed_model={"model": model, "dedicated_resources": DEDICATED},
        traffic_split={"0": 100},
    ).result(timeout=30)
    return model, endpoint


def deployed_pid(vertex, endpoint: str, deployed_id: str) -> int:
    state = vertex.endpoints._endpoints[endpoint]
    return state.serving[deployed_id].process.pid


def test_deploy_predict_undeploy(vertex, models, endpoints, predictions):
    model = upload(models, ["python", str(ECHO_MODEL)])
    assert models.get_model(name=model).display_name == "echo"
    endpoint = create_endpoint(endpoints)
    deploy = endpoints.deploy_model(
        endpoint=endpoint,
        deployed_model={"model": model, "display_name": "echo-1", "dedicated_resources": DEDICATED},
        traffic_split={"0": 100},
    )
    deployed = deploy.result(timeout=30).deployed_model
    assert deployed.id.isdigit() and deployed.model == model and deployed.create_time
    resource = endpoints.get_endpoint(name=endpoint)
    assert [d.id for d in resource.deployed_models] == [deployed.id]
    assert dict(resource.traffic_split) == {deployed.id: 100}

    answer = predictions.predict(endpoint=endpoint, instances=["hi", 2], parameters={"t": 0})
    assert answer.deployed_model_id == deployed.id and answer.model == model
    assert answer.predictions[0]["echo"] == "hi" and answer.predictions[0]["parameters"] == {"t": 0}
    assert answer.predictions[0]["AIP_STORAGE_URI"] == "gs://runs/r1/model"
    assert answer.predictions[0]["AIP_MODE"] == "PREDICTION"

    raw = requests.post(f"{vertex.url}/v1/{endpoint}:predict", json={"instances": [1]}, timeout=10)
    assert raw.status_code == 200
    body = raw.json()
    assert body["predictions"][0]["echo"] == 1  # an int stays an int on the way through
    assert body["deployedModelId"] == deployed.id and body["modelVersionId"] == "1"

    refused = requests.post(
        f"{vertex.url}/v1/{endpoint}:predict", json={"instances": ["fail"]}, timeout=10
    )
    assert_error(refused, 400, "INVALID_ARGUMENT", "instance 'fail' refused")

    pid = deployed_pid(vertex, endpoint, deployed.id)
    endpoints.undeploy_model(endpoint=endpoint, deployed_model_id=deployed.id).result(timeout=20)
    assert gone(pid)
    assert not endpoints.get_endpoint(name=endpoint).deployed_models
    # FAILED_PRECONDITION travels as HTTP 400, which the REST transport raises as BadRequest.
    with pytest.raises(gexc.BadRequest, match="no deployed model"):
        predictions.predict(endpoint=endpoint, instances=["hi"])


def test_a_model_with_traffic_leaves_only_with_a_split_that_takes_it_away(
    vertex, models, endpoints
):
    """As on Vertex AI, which the workflow's rollback after a failed smoke test relies on."""
    model, endpoint = deploy_echo(models, endpoints)
    (old,) = endpoints.get_endpoint(name=endpoint).deployed_models
    new = (
        endpoints.deploy_model(
            endpoint=endpoint,
            deployed_model={"model": model, "dedicated_resources": DEDICATED},
            traffic_split={"0": 100},
        )
        .result(timeout=30)
        .deployed_model
    )
    url = f"{vertex.url}/v1/{endpoint}:undeployModel"
    refused = requests.post(url, json={"deployedModelId": new.id}, timeout=10)
    assert_error(refused, 400, "FAILED_PRECONDITION", "still has traffic")
    wrong = requests.post(
        url, json={"deployedModelId": new.id, "trafficSplit": {new.id: 100}}, timeout=10
    )
    assert_error(wrong, 400, "INVALID_ARGUMENT", "which it undeploys")
    unknown = requests.post(
        url, json={"deployedModelId": new.id, "trafficSplit": {"42": 100}}, timeout=10
    )
    assert_error(unknown, 400, "INVALID_ARGUMENT", "not deployed: 42")
    endpoints.undeploy_model(
        endpoint=endpoint, deployed_model_id=new.id, traffic_split={old.id: 100}
    ).result(timeout=20)
    resource = endpoints.get_endpoint(name=endpoint)
    assert [d.id for d in resource.deployed_models] == [old.id]
    assert dict(resource.traffic_split) == {old.id: 100}


def test_a_model_that_never_gets_healthy_fails_its_deployment(models, endpoints):
    script = "import sys; print('cannot load the model'); sys.exit(2)"
    model = upload(models, [sys.executable, "-c", script])
    endpoint = create_endpoint(endpoints)
    deploy = endpoints.deploy_model(
        endpoint=endpoint, deployed_model={"model": model, "dedicated_resources": DEDICATED}
    )
    with pytest.raises(gexc.GoogleAPICallError) as failure:
        deploy.result(timeout=30)
    assert "exited with status 2" in str(failure.value)
    assert "cannot load the model" in str(failure.value)
    assert not endpoints.get_endpoint(name=endpoint).deployed_models


def test_the_deploy_operation_is_pending_until_healthy(vertex, models, endpoints):
    script = "import time; time.sleep(60)"  # never answers its health route
    model = upload(models, ["python", "-c", script])
    endpoint = create_endpoint(endpoints)
    body = {"deployedModel": {"model": model, "automaticResources": {}}}
    answer = requests.post(f"{vertex.url}/v1/{endpoint}:deployModel", json=body, timeout=10).json()
    assert answer["name"].startswith(f"{endpoint}/operations/") and not answer.get("done")
    assert answer["metadata"]["@type"].endswith("aiplatform.v1.DeployModelOperationMetadata")
    polled = requests.get(f"{vertex.url}/v1/{answer['name']}", timeout=10).json()
    assert not polled.get("done")


def test_endpoints_list_with_filters_and_ids(endpoints, vertex):
    first = create_endpoint(endpoints, display_name="first")
    second = create_endpoint(endpoints, labels={"run_id": "r2"})
    by_label = endpoints.list_endpoints(request={"parent": PARENT, "filter": "labels.run_id=r2"})
    assert [e.name for e in by_label] == [second]
    by_name = endpoints.list_endpoints(request={"parent": PARENT, "filter": 'display_name="first"'})
    assert [e.name for e in by_name] == [first]
    url = f"{vertex.url}/v1/{PARENT}/endpoints?endpointId=droptune-r1"
    operation = requests.post(url, json={"displayName": "named"}, timeout=10).json()
    assert operation["done"] and operation["response"]["name"] == f"{PARENT}/endpoints/droptune-r1"
    assert (
        operation["response"]["@type"] == "type.googleapis.com/google.cloud.aiplatform.v1.Endpoint"
    )
    bad = requests.get(f"{vertex.url}/v1/{PARENT}/endpoints?filter=foo>1", timeout=10)
    assert_error(bad, 400, "INVALID_ARGUMENT", "foo>1")


def test_model_upload_answers_an_operation_with_its_response_type(vertex):
    body = {"model": {"displayName": "m", "containerSpec": {"imageUri": "trainer"}}}
    operation = requests.post(
        f"{vertex.url}/v1/{PARENT}/models:upload", json=body, timeout=10
    ).json()
    assert operation["done"] is True
    assert operation["response"]["@type"].endswith("google.cloud.aiplatform.v1.UploadModelResponse")
    assert operation["response"]["modelVersionId"] == "1"
    model = requests.get(f"{vertex.url}/v1/{operation['response']['model']}@1", timeout=10).json()
    assert model["displayName"] == "m" and model["createTime"].endswith("Z")
    missing = {"model": {"displayName": "m", "artifactUri": "gs://b/m"}}
    response = requests.post(f"{vertex.url}/v1/{PARENT}/models:upload", json=missing, timeout=10)
    assert_error(response, 400, "INVALID_ARGUMENT", "containerSpec.imageUri")


def test_endpoint_errors(vertex, endpoints):
    unknown = f"{vertex.url}/v1/{PARENT}/endpoints/404:deployModel"
    body = {"deployedModel": {"model": f"{PARENT}/models/1", "automaticResources": {}}}
    assert_error(requests.post(unknown, json=body, timeout=10), 404, "NOT_FOUND", "models/1")
    endpoint = create_endpoint(endpoints)
    predict = requests.post(
        f"{vertex.url}/v1/{endpoint}:predict", json={"instances": [1]}, timeout=10
    )
    assert_error(predict, 400, "FAILED_PRECONDITION", "no deployed model")
    typo = requests.post(f"{vertex.url}/v1/{endpoint}:predict", json={"instance": [1]}, timeout=10)
    assert_error(typo, 400, "INVALID_ARGUMENT", "instance")
    operation = requests.get(f"{vertex.url}/v1/{endpoint}/operations/1", timeout=10)
    assert_error(operation, 404, "NOT_FOUND", "operations/1")
