"""The serving container's contract, on the real SmolLM2-135M checkpoint: health, predict for
chats and raw prompts, 400s that say what is wrong, a size cap, and batched concurrency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request

import pytest
from droptune_trainer.serve import create_app
from fastapi.testclient import TestClient

from tests.support.emulators import free_port, wait_for_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(pulled_model):
    with TestClient(create_app(str(pulled_model))) as test_client:
        yield test_client


def predict(client, body):
    return client.post("/predict", json=body)


def test_health(client):
    assert client.get("/health").json() == {"status": "ok"}


def test_predict_chats_and_prompts(client):
    response = predict(
        client,
        {
            "instances": [
                {"messages": [{"role": "user", "content": "What is 2+2?"}]},
                {"prompt": "The capital of France is"},
            ],
            "parameters": {"max_new_tokens": 8},
        },
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 2 and all(isinstance(p, str) and p for p in predictions)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({}, "instances"),
        ({"instances": []}, "instances"),
        (
            {"instances": [{"messages": [{"role": "user", "content": "hi"}], "prompt": "x"}]},
            "exactly one",
        ),
        ({"instances": [{"messages": [{"role": "robot", "content": "hi"}]}]}, "role"),
        ({"instances": [{"prompt": "x"}], "parameters": {"max_new_tokens": 0}}, "max_new_tokens"),
        ({"instances": [{"prompt": "x"}], "parameters": {"beams": 4}}, "beams"),
    ],
)
def test_bad_bodies_are_400_with_a_reason(client, body, says):
    response = predict(client, body)
    assert response.status_code == 400
    assert says in response.json()["error"]


def test_not_json_is_400(client):
    response = client.post(
        "/predict", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400


def test_oversized_body_is_413(client):
    body = {"instances": [{"prompt": "x" * 1_600_000}]}
    assert predict(client, body).status_code == 413


def test_concurrent_requests_share_generations(client):
    model = client.app.state.model
    before = model.batches
    results = []
    start = threading.Barrier(6)

    def call(i: int) -> None:
        start.wait()
        results.append(
            predict(
                client,
                {"instances": [{"prompt": f"Count to {i}:"}], "parameters": {"max_new_tokens": 4}},
            )
        )

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200] * 6
    assert model.batches - before < 6  # some requests were generated together


def test_the_server_process_follows_the_aip_environment(pulled_model):
    port = free_port()
    env = {**os.environ, "AIP_HTTP_PORT": str(port), "AIP_STORAGE_URI": str(pulled_model),
           "AIP_HEALTH_ROUTE": "/v1/ok", "AIP_PREDICT_ROUTE": "/v1/models/m:predict"}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "droptune_trainer", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, timeout=120, proc=server)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/ok", timeout=30) as r:
            assert r.status == 200
        body = json.dumps(
            {"instances": [{"prompt": "Hello"}], "parameters": {"max_new_tokens": 3}}
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models/m:predict",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as r:
            assert len(json.loads(r.read())["predictions"]) == 1
    finally:
        server.terminate()
        server.wait(10)


def test_a_folder_without_a_checkpoint_is_refused_with_the_fix(tmp_path):
    from droptune_trainer.errors import RunFolderError

    with pytest.raises(RunFolderError, match="AIP_STORAGE_URI"):
        create_app(str(tmp_path))
