"""Shared fixtures: a fast token counter, a one-call `validate` over data written to tmp_path,
and the real local services (fake-gcs-server, Google's Pub/Sub emulator).

Every test counts tokens with `EstimateCounter` (no tokenizer to load) except the few marked
`slow` that ask for `real_counter`, which loads the default base model's tokenizer once.
"""

from __future__ import annotations

import io
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from droptune import pipeline
from droptune.config import RunConfig
from droptune.intake import IntakeSettings
from droptune.log import get_logger
from droptune.report import Report
from droptune.tokens import EstimateCounter, TokenCounter
from tests.support.dropzone import DropZone
from tests.support.emulators import PubSubEmulator, Topic, create_topic

Validate = Callable[..., Report]


def pytest_report_header() -> str:
    """Free space where tests write: the trainer and local-stack tests need a few GiB."""
    where = tempfile.gettempdir()
    return f"droptune: {shutil.disk_usage(where).free / 2**30:.1f} GiB free in {where}"


@pytest.fixture
def estimate() -> EstimateCounter:
    return EstimateCounter()


@pytest.fixture(scope="session")
def real_counter() -> TokenCounter:
    """The default custom-backend counter (tokenizer + chat template); ~4 s to load."""
    from droptune.tokens import counter_for

    config = RunConfig()
    return counter_for(config.backend, config.base_model)


@pytest.fixture(scope="session")
def pulled_model() -> Path:
    """SmolLM2-135M-Instruct as a plain HF checkpoint in droptune's cache (~35 s the first time)."""
    from droptune.models import pull

    return pull("HuggingFaceTB/SmolLM2-135M-Instruct")


@pytest.fixture
def validate_data(tmp_path: Path, estimate: EstimateCounter) -> Validate:
    """`validate_data(data, name="data.jsonl", **config)` -> the Report of that file.

    `data` is str (written as UTF-8) or bytes (written exactly). The run config defaults to
    `min_examples=1` so that one-record files are judged on their content alone.
    """

    def run(data: str | bytes, name: str = "data.jsonl", **config: object) -> Report:
        path = tmp_path / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        config.setdefault("min_examples", 1)
        return pipeline.validate(str(path), RunConfig(**config), counter=estimate)

    return run


# --- Cloud Storage: fake-gcs-server -------------------------------------------------------
@pytest.fixture(scope="session")
def gcs_server():
    from droptune.local.storage_emulator import StorageEmulator

    with StorageEmulator() as server:
        yield server


@pytest.fixture
def storage_client(gcs_server, monkeypatch) -> storage.Client:
    """A client on the emulator, with droptune's own client pointed at it too."""
    from droptune.cloud import gcs

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.url)
    gcs.client.cache_clear()
    yield storage.Client(project="droptune-test", credentials=AnonymousCredentials())
    gcs.client.cache_clear()


def new_bucket(client: storage.Client, prefix: str) -> storage.Bucket:
    return client.create_bucket(f"{prefix}-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def gcs_bucket(storage_client) -> storage.Bucket:
    """A fresh bucket on the emulator."""
    return new_bucket(storage_client, "b")


# --- Pub/Sub: Google's emulator ----------------------------------------------------------
@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory) -> str:
    """host:port of Google's Pub/Sub emulator (gcloud + Java), started once per session."""
    if shutil.which("gcloud") is None:
        pytest.skip("Google's Pub/Sub emulator needs gcloud (with Java); not on this machine")
    emulator = PubSubEmulator(tmp_path_factory.mktemp("pubsub"))
    emulator.start()
    yield emulator.host
    emulator.stop()


@pytest.fixture
def pubsub_topic(pubsub_emulator, monkeypatch) -> Topic:
    """A fresh topic with a pull subscription, clients pointed at the emulator."""
    from droptune.cloud import pubsub

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    pubsub._client.cache_clear()
    yield create_topic("droptune-test", f"runs-{uuid.uuid4().hex[:12]}")
    pubsub._client.cache_clear()


@pytest.fixture
def dropzone(storage_client, pubsub_topic, monkeypatch) -> DropZone:
    """Uploads and runs buckets plus the run topic; the function's environment points at them.

    A short lease (0.5 s) lets tests of crashed attempts finish quickly.
    """
    uploads, runs = new_bucket(storage_client, "uploads"), new_bucket(storage_client, "runs")
    settings = IntakeSettings(
        runs_bucket=runs.name,
        topic=pubsub_topic.path,
        uploads_bucket=uploads.name,
        lease_seconds=0.5,
        max_wait_seconds=30,
        publish_timeout=10,
    )
    zone = DropZone(uploads, runs, pubsub_topic, settings)
    for key, value in zone.env().items():
        monkeypatch.setenv(key, value)
    yield zone
    zone.assert_uploads_untouched()


Logs = Callable[[], list[dict]]


@pytest.fixture
def capture_logs() -> Iterator[Callable[[str], Logs]]:
    """`read = capture_logs("droptune.intake")` sends that logger's structured lines to a
    buffer; `read()` gives the lines so far, parsed. The loggers write to stderr again after
    the test."""
    captured: list[str] = []

    def capture(name: str) -> Logs:
        stream = io.StringIO()
        get_logger(name, stream=stream)
        captured.append(name)
        return lambda: [orjson.loads(line) for line in stream.getvalue().splitlines()]

    yield capture
    for name in captured:
        get_logger(name, stream=sys.stderr)


@pytest.fixture
def intake_log(capture_logs: Callable[[str], Logs]) -> Logs:
    """The upload function's structured log lines so far, parsed."""
    return capture_logs("droptune.intake")
