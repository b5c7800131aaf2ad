"""The serving container's contract, on the real SmolLM2-135M checkpoint: health, predict for
chats and raw prompts, 400s that say what is wrong, a size cap, and batched concurrency."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import urllib.request
import weakref
from collections import deque
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from droptune_trainer.generation import Generated
from droptune_trainer.serve import (
    MAX_BATCH,
    MAX_WAITING,
    DeviceLost,
    Model,
    Parameters,
    Pending,
    PredictRequest,
    create_app,
)
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
        ({"instances": [{"messages": [{"role": "user"}]}]}, "chat template refuses"),
        ({"instances": [{"prompt": "x " * 9000}]}, "exceed the model's context of 8192"),
        ({"instances": [{"prompt": ""}]}, "instances.0.prompt"),
        ({"instances": [{"prompt": "x", "max_tokens": 5}]}, "max_tokens"),
        ({"instances": [{"prompt": "x", "tools": []}]}, '"tools" go with "messages"'),
        ({"instances": [{"prompt": "x"}], "parameters": {"temperature": 1e-300}}, "too small"),
        ({"instances": [{"prompt": "x"}], "parameters": {"max_new_tokens": True}}, "integer"),
    ],
)
def test_bad_bodies_are_400_with_a_reason(client, body, says):
    response = predict(client, body)
    assert response.status_code == 400
    assert says in response.json()["error"]


def test_parameters_null_are_the_defaults_and_greedy_ignores_top_p():
    assert PredictRequest(instances=[{"prompt": "x"}], parameters=None).parameters == Parameters()
    assert Parameters(max_new_tokens=8.0).max_new_tokens == 8  # a number through protobuf
    assert Parameters(top_p=0.5) == Parameters()  # greedy: such requests share a batch
    assert Parameters(temperature=0.7, top_p=0.5).top_p == 0.5


def test_an_unknown_route_says_so_as_every_error_does(client):
    response = client.get("/nowhere")
    assert response.status_code == 404 and response.json() == {"error": "Not Found"}
    assert client.get("/predict").json() == {"error": "Method Not Allowed"}


def test_not_json_is_400(client):
    response = client.post(
        "/predict", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400


def test_oversized_body_is_413(client):
    body = {"instances": [{"prompt": "x" * 1_600_000}]}
    assert predict(client, body).status_code == 413
    streamed = (b"x" * 100_000 for _ in range(20))  # chunked: no Content-Length to go by
    response = client.post(
        "/predict", content=streamed, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413 and "1,500,000" in response.json()["error"]


def test_health_says_when_nothing_would_answer(client):
    state = client.app.state
    worker, state.worker = state.worker, SimpleNamespace(done=lambda: True)
    try:
        assert client.get("/health").status_code == 503
    finally:
        state.worker = worker


def test_the_oldest_request_goes_first_with_all_that_can_join_it(client, monkeypatch):
    greedy, sampled = Parameters(max_new_tokens=4), Parameters(max_new_tokens=4, temperature=0.7)
    waiting = object.__new__(Model)  # the queue alone
    many = [f"{i}" for i in range(MAX_BATCH)]

    async def groups() -> list[list[str]]:
        waiting.queue, waiting.backlog = asyncio.Queue(), deque()
        gone = Pending(["gone"], greedy)
        gone.done.cancel()  # its caller went away before it was generated
        queued = ((["a"], greedy), (["b"], sampled), (many, greedy), (["c"], greedy))
        for texts, params in queued[:2]:
            waiting.queue.put_nowait(Pending(texts, params))
        waiting.queue.put_nowait(gone)
        for texts, params in queued[2:]:
            waiting.queue.put_nowait(Pending(texts, params))
        return [[t for p in await waiting.next_group() for t in p.texts] for _ in range(3)]

    # c joins a; b waits its turn; the request nobody waits for is dropped
    assert asyncio.run(groups()) == [["a", "c"], ["b"], many]
    model = client.app.state.model
    sizes = []

    def generate(model, tokenizer, texts, *args):
        sizes.append(len(texts))
        return [Generated(t, 1) for t in texts]

    monkeypatch.setattr("droptune_trainer.serve.generate", generate)
    texts = [f"{i}" for i in range(2 * MAX_BATCH + 3)]
    lengths = [1] * len(texts)
    assert [a.text for a in model.generate_all(texts, lengths, greedy)] == texts
    assert sizes == [MAX_BATCH, MAX_BATCH, 3]  # one large request: batches of MAX_BATCH
    sizes.clear()
    long = [f"{i}" for i in range(6)]  # prompts that fill the token budget two at a time
    answers = model.generate_all(long, [model.budget // 2 - 4] * 6, greedy)
    assert [a.text for a in answers] == long and sizes == [2, 2, 2]


def test_a_failed_generation_fails_only_the_request_that_caused_it(client, monkeypatch):
    def generate(model, tokenizer, texts, *args):
        if "boom" in texts:
            raise RuntimeError("CUDA out of memory")
        return [Generated(f"answer to {t}", 1) for t in texts]

    monkeypatch.setattr("droptune_trainer.serve.generate", generate)
    model = client.app.state.model

    async def together() -> list[Any]:
        pendings = [Pending([t], Parameters(), [1]) for t in ("fine", "boom", "also fine")]
        await model.answer(pendings)
        return [p.done.exception() or p.done.result() for p in pendings]

    fine, failed, also = asyncio.run(together())
    assert fine == [Generated("answer to fine", 1)] and also == [
        Generated("answer to also fine", 1)
    ]
    assert "CUDA out of memory" in str(failed)
    response = predict(client, {"instances": [{"prompt": "boom"}]})
    assert response.status_code == 500
    assert response.json() == {"error": "generation failed: RuntimeError: CUDA out of memory"}


def test_a_failed_batch_s_memory_is_freed_before_each_request_is_tried_alone(client, monkeypatch):
    """What the failed generation's frames held (activations, a KV cache) must not sit
    beside the retries: out of memory once, they would run out too."""
    held: list[weakref.ref] = []
    alive_at_retry = []

    def generate(model, tokenizer, texts, *args):
        if len(texts) > 1:
            activations = torch.zeros(4)
            held.append(weakref.ref(activations))
            raise RuntimeError("CUDA out of memory")
        alive_at_retry.append(held[0]() is not None)
        return [Generated(f"answer to {t}", 1) for t in texts]

    monkeypatch.setattr("droptune_trainer.serve.generate", generate)
    model = client.app.state.model

    async def together() -> list[Any]:
        pendings = [Pending([t], Parameters(), [1]) for t in ("a", "b")]
        await model.answer(pendings)
        return [p.done.result() for p in pendings]

    assert asyncio.run(together()) == [[Generated("answer to a", 1)], [Generated("answer to b", 1)]]
    assert alive_at_retry == [False, False]


def test_a_device_that_fails_for_good_stops_the_replica_with_503s(tiny_model, monkeypatch):
    """A CUDA error sticks to the process: the requests waiting and every later one get a
    503, and the health route fails, for Vertex to replace the replica."""

    def boom(*args: Any) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    def lost() -> None:
        raise DeviceLost("the GPU failed (AcceleratorError: CUDA error)")

    with TestClient(create_app(str(tiny_model))) as tiny:
        monkeypatch.setattr(tiny.app.state.model, "generate_all", boom)
        monkeypatch.setattr(tiny.app.state.model, "recover", lost)
        first = predict(tiny, {"instances": [{"prompt": "Hi"}]})
        assert first.status_code == 503 and "the GPU failed" in first.json()["error"]
        health = tiny.get("/health")
        assert health.status_code == 503 and "no longer answers" in health.json()["status"]
        assert predict(tiny, {"instances": [{"prompt": "Hi"}]}).status_code == 503


def test_a_chat_answer_is_stripped_and_a_continuation_kept_as_generated(client, monkeypatch):
    def generate(model, tokenizer, texts, *args):
        return [Generated(" Paris", 2, "the capital") for _ in texts]

    monkeypatch.setattr("droptune_trainer.serve.generate", generate)
    body = {
        "instances": [
            {"prompt": "The capital of France is"},
            {"messages": [{"role": "user", "content": "The capital of France?"}]},
        ]
    }
    response = predict(client, body).json()
    assert response["predictions"] == [" Paris", "Paris"]
    assert response["metadata"]["reasoning"] == ["the capital", "the capital"]


def test_a_full_queue_turns_requests_away_with_a_503(client, monkeypatch):
    monkeypatch.setattr(client.app.state.model, "waiting", MAX_WAITING)
    response = predict(client, {"instances": [{"prompt": "Hi"}]})
    assert response.status_code == 503 and "retry later" in response.json()["error"]


def test_tools_reach_the_chat_template(client, monkeypatch):
    seen = []
    monkeypatch.setattr(
        "droptune_trainer.serve.render", lambda tok, prompt, tools=None: seen.append(tools) or "x"
    )
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    body = {"instances": [{"messages": [{"role": "user", "content": "hi"}], "tools": tools}]}
    client.app.state.model.prompts(PredictRequest(**body))
    assert seen == [tools]


def test_concurrent_requests_share_generations(client):
    model = client.app.state.model
    before = model.batches
    results = []
    start = threading.Barrier(6)

    def call(i: int) -> None:
        start.wait()
        body = {"instances": [{"prompt": f"Count to {i}:"}], "parameters": {"max_new_tokens": 4}}
        results.append(predict(client, body))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200] * 6
    assert model.batches - before < 6  # some requests were generated together


class Interleaved:
    """The worker's Rust tokenizer, with a request measured on the event loop between the
    batch's padding set-up and its encoding: the worst moment for a shared tokenizer."""

    def __init__(self, rust: Any, measure: Any) -> None:
        self.rust, self.measure, self.measured = rust, measure, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rust, name)

    def encode_batch(self, *args: Any, **kwargs: Any) -> Any:
        if not self.measured:
            self.measured = True
            self.measure()
        return self.rust.encode_batch(*args, **kwargs)


def test_a_request_measured_while_a_batch_is_padded_leaves_the_batch_alone(client, monkeypatch):
    model = client.app.state.model
    request = PredictRequest(instances=[{"prompt": "Hi"}])
    tokenizer = Interleaved(model.tokenizer._tokenizer, lambda: model.prompts(request))
    monkeypatch.setattr(model.tokenizer, "_tokenizer", tokenizer)
    answers = model.generate_all(
        ["Hi", "Count from one to ten:"], [1, 5], Parameters(max_new_tokens=1)
    )
    assert tokenizer.measured and len(answers) == 2


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
