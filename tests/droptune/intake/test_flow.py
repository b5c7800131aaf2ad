"""The intake end to end on the emulators: claim, validate, run folder, message, and every way
a delivery can repeat, race or fail. The `dropzone` fixture checks after each test that the
uploads bucket holds exactly what the test uploaded (same generations, same crc32c)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from google.api_core.retry import Retry

from droptune.cloud import gcs, pubsub
from droptune.intake import UploadedObject, handle_upload
from droptune.intake.flow import RunBusy
from droptune.intake.lease import StatusStore, lease_fields
from droptune.runs import RunFolder, RunState, RunStatus
from droptune.tokens import EstimateCounter
from tests.support.emulators import free_port
from tests.support.faults import FlakyHttpProxy, LateTcpForwarder

EXAMPLE = (Path(__file__).parents[3] / "droptune" / "examples" / "chat.jsonl").read_text()
RUN_FILES = {
    "run.json",
    "status.json",
    "data/train.jsonl",
    "data/validation.jsonl",
    "data/test.jsonl",
    "validation/report.json",
    "validation/report.md",
}


def deliver(zone, obj, **settings):
    if settings:
        from dataclasses import replace

        zone_settings = replace(zone.settings, **settings)
    else:
        zone_settings = zone.settings
    return handle_upload(obj, zone_settings, EstimateCounter())


def messages_for(zone, run_id: str) -> list:
    return [m for m in zone.topic.pull() if m.attributes["run_id"] == run_id]


def test_valid_upload_is_queued_with_its_run_folder_and_one_message(dropzone, intake_log):
    obj = dropzone.obj("team/chat.jsonl", EXAMPLE)
    outcome = deliver(dropzone, obj)
    run_id = dropzone.run_id(obj)
    assert (outcome.action, outcome.state, outcome.run_id) == ("queued", RunState.QUEUED, run_id)
    assert dropzone.files(run_id) == RUN_FILES

    status = dropzone.status(run_id)
    assert status["state"] == "QUEUED"
    assert [h["state"] for h in status["history"]] == ["VALIDATING", "QUEUED"]
    assert "lease" not in status

    run = dropzone.json(run_id, "run.json")
    assert run["source"]["generation"] == str(obj.generation)
    assert run["source"]["crc32c"] == obj.crc32c
    assert run["config"]["backend"] == "custom"

    (message,) = dropzone.topic.pull()
    run_uri = f"gs://{dropzone.runs.name}/runs/{run_id}/"
    assert orjson.loads(message.data) == {"run_id": run_id, "run_uri": run_uri, "backend": "custom"}
    assert dict(message.attributes) == {"run_id": run_id, "backend": "custom"}
    assert status["message_id"] == message.message_id

    train = dropzone.read(run_id, "data/train.jsonl").splitlines()
    assert len(train) == status_split(dropzone, run_id)["train"]

    states = [e for e in intake_log() if "state" in e.get("logging.googleapis.com/labels", {})]
    assert [e["logging.googleapis.com/labels"]["state"] for e in states] == ["VALIDATING", "QUEUED"]
    assert all(e["logging.googleapis.com/labels"]["run_id"] == run_id for e in states)


def status_split(zone, run_id: str) -> dict[str, int]:
    return zone.json(run_id, "validation/report.json")["counts"]["splits"]


def test_redelivery_of_a_finished_run_does_nothing(dropzone):
    obj = dropzone.obj("chat.jsonl", EXAMPLE)
    deliver(dropzone, obj)
    before = dropzone.read(dropzone.run_id(obj), "status.json")
    outcome = deliver(dropzone, obj)
    assert (outcome.action, outcome.state) == ("none", RunState.QUEUED)
    assert dropzone.read(dropzone.run_id(obj), "status.json") == before
    assert len(dropzone.topic.pull()) == 1


def test_gemini_backend_from_metadata_writes_gemini_files(dropzone):
    obj = dropzone.obj("g/chat.jsonl", EXAMPLE, metadata={"droptune-backend": "gemini"})
    deliver(dropzone, obj)
    run_id = dropzone.run_id(obj)
    assert {"data/gemini/train.jsonl", "data/gemini/validation.jsonl"} <= dropzone.files(run_id)
    (message,) = dropzone.topic.pull()
    assert message.attributes["backend"] == "gemini"
    first = orjson.loads(dropzone.read(run_id, "data/gemini/train.jsonl").splitlines()[0])
    assert first["contents"][0]["role"] == "user"


def test_invalid_data_is_rejected_with_code_and_line_and_no_message(dropzone, intake_log):
    lines = EXAMPLE.splitlines()
    lines[4] = lines[4][:-5]  # cut line 5 mid-JSON
    obj = dropzone.obj("bad.jsonl", "\n".join(lines) + "\n")
    outcome = deliver(dropzone, obj)
    run_id = dropzone.run_id(obj)
    assert outcome.state == RunState.REJECTED
    status = dropzone.status(run_id)
    assert status["state"] == "REJECTED"
    assert status["error"]["code"] == "json_syntax" and status["error"]["line"] == 5
    assert "json_syntax (1)" in status["detail"]
    report = dropzone.json(run_id, "validation/report.json")
    assert report["valid"] is False
    assert any(i["code"] == "json_syntax" and i["line"] == 5 for i in report["issues"])
    assert not any(name.startswith("data/") for name in dropzone.files(run_id))
    assert dropzone.topic.pull() == []
    rejected = [e for e in intake_log() if e["message"].startswith(f"run {run_id} REJECTED")]
    assert rejected and rejected[0]["severity"] == "WARNING"


def test_unknown_config_key_rejects_with_report(dropzone):
    dropzone.upload("cfg/droptune.yaml", "epoch: 2\n")
    obj = dropzone.obj("cfg/chat.jsonl", EXAMPLE)
    deliver(dropzone, obj)
    run_id = dropzone.run_id(obj)
    status = dropzone.status(run_id)
    assert status["state"] == "REJECTED" and status["error"]["code"] == "invalid_config"
    assert "did you mean 'epochs'" in status["error"]["message"]
    assert "cfg/droptune.yaml" in status["error"]["message"]
    assert dropzone.json(run_id, "run.json")["config_error"]
    assert "invalid_config" in dropzone.read(run_id, "validation/report.md").decode()
    assert dropzone.topic.pull() == []


def test_file_over_the_cap_is_rejected_before_reading(dropzone, monkeypatch):
    def must_not_read(*args, **kwargs):
        raise AssertionError("read a file over the size cap")

    monkeypatch.setattr("droptune.pipeline.prepare", must_not_read)
    obj = dropzone.obj("big.jsonl", EXAMPLE)
    deliver(dropzone, obj, max_upload_bytes=100)
    status = dropzone.status(dropzone.run_id(obj))
    assert status["state"] == "REJECTED" and status["error"]["code"] == "file_too_large"
    assert "DROPTUNE_MAX_UPLOAD_BYTES" in status["error"]["message"]


@pytest.mark.parametrize(
    ("setting", "code", "says"),
    [
        ("gs://", "source_unavailable", "validation_file: gs://: no bucket name"),
        ("_holdout/missing.jsonl", "source_unavailable", "no such object"),
        ("_holdout/val.jsonl", "file_too_large", "the validation file is"),
    ],
)
def test_a_validation_file_that_cannot_be_used_rejects_before_reading(
    dropzone, monkeypatch, setting, code, says
):
    def must_not_read(*args, **kwargs):
        raise AssertionError("read the data with an unusable validation file")

    monkeypatch.setattr("droptune.pipeline.prepare", must_not_read)
    dropzone.upload("v/_holdout/val.jsonl", EXAMPLE * 3)  # over the cap below, the data is not
    dropzone.upload("v/chat.droptune.yaml", f"validation_file: '{setting}'\n")
    obj = dropzone.obj("v/chat.jsonl", EXAMPLE)
    deliver(dropzone, obj, max_upload_bytes=2 * len(EXAMPLE))
    status = dropzone.status(dropzone.run_id(obj))
    assert status["state"] == "REJECTED" and status["error"]["code"] == code
    assert says in status["error"]["message"]
    assert dropzone.topic.pull() == []


def test_a_validation_file_becomes_the_validation_split(dropzone):
    dropzone.upload("own/_holdout/val.jsonl", EXAMPLE)
    dropzone.upload("own/chat.droptune.yaml", "validation_file: _holdout/val.jsonl\n")
    obj = dropzone.obj("own/chat.jsonl", EXAMPLE * 2)
    assert deliver(dropzone, obj).state == RunState.QUEUED
    run_id = dropzone.run_id(obj)
    validation = dropzone.read(run_id, "data/validation.jsonl").splitlines()
    assert (
        len(validation) == len(EXAMPLE.splitlines()) == status_split(dropzone, run_id)["validation"]
    )


def test_a_validation_file_replaced_after_its_check_is_not_read(dropzone, monkeypatch):
    """The check pins the generation it looked at: a file swapped for another before the data
    is read (here one over the size cap) is not used; the run cannot read what was checked."""
    from droptune import pipeline

    prepare = pipeline.prepare

    def swap_then_prepare(uri, config, *args, **kwargs):
        dropzone.upload("p/_holdout/val.jsonl", EXAMPLE * 3)
        return prepare(uri, config, *args, **kwargs)

    monkeypatch.setattr(pipeline, "prepare", swap_then_prepare)
    dropzone.upload("p/_holdout/val.jsonl", EXAMPLE)
    dropzone.upload("p/chat.droptune.yaml", "validation_file: _holdout/val.jsonl\n")
    obj = dropzone.obj("p/chat.jsonl", EXAMPLE)
    deliver(dropzone, obj, max_upload_bytes=2 * len(EXAMPLE))
    status = dropzone.status(dropzone.run_id(obj))
    assert status["state"] == "REJECTED", status
    assert status["error"]["code"] == "source_unavailable"
    assert "no such generation" in status["error"]["message"]


def test_object_replaced_before_reading_is_rejected(dropzone):
    old = dropzone.obj("replaced.jsonl", EXAMPLE)
    dropzone.upload("replaced.jsonl", EXAMPLE + EXAMPLE)  # a new generation replaces the old
    deliver(dropzone, old)
    status = dropzone.status(dropzone.run_id(old))
    assert status["state"] == "REJECTED"
    assert status["error"]["code"] == "source_unavailable"
    assert dropzone.topic.pull() == []


def test_what_is_not_data_is_ignored_with_one_info_line(dropzone, intake_log):
    objs = [dropzone.obj(n, "x") for n in ["notes.txt", "x.droptune.yaml", "_holdout/v.jsonl"]]
    # The console's "create folder" makes a zero-byte "folder/" object (the emulator can't).
    objs.append(UploadedObject(dropzone.uploads.name, "folder/", 1, size=0))
    for obj in objs:
        assert deliver(dropzone, obj).action == "ignored"
    assert dropzone.all_run_ids() == set()
    lines = intake_log()
    assert len(lines) == 4 and all(e["severity"] == "INFO" for e in lines)
    assert all("object" in e["logging.googleapis.com/labels"] for e in lines)


def test_twenty_concurrent_deliveries_make_one_run_and_one_message(dropzone, intake_log):
    obj = dropzone.obj("race.jsonl", EXAMPLE)
    start = threading.Barrier(20)

    def one(_):
        start.wait()
        return deliver(dropzone, obj)

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(one, range(20)))
    assert sorted(o.action for o in outcomes) == ["none"] * 19 + ["queued"]
    run_id = dropzone.run_id(obj)
    assert dropzone.all_run_ids() == {run_id}
    assert len(dropzone.topic.pull()) == 1
    claims = [e for e in intake_log() if e["message"].startswith("claimed run")]
    assert len(claims) == 1
    assert [h["state"] for h in dropzone.status(run_id)["history"]] == ["VALIDATING", "QUEUED"]


def test_a_run_another_attempt_is_validating_is_retried_with_one_warning(dropzone, intake_log):
    obj = dropzone.obj("busy.jsonl", EXAMPLE)
    run_id = dropzone.run_id(obj)
    status = RunStatus.start("validating")
    status.extra.update(lease=lease_fields("another-attempt", 60), attempts=1)
    folder = RunFolder.in_bucket(dropzone.settings.runs_bucket, run_id)
    assert StatusStore(folder.status_json).create(status)
    with pytest.raises(RunBusy, match="another attempt"):
        deliver(dropzone, obj, max_wait_seconds=0.2)
    (line,) = [e for e in intake_log() if e["severity"] != "INFO"]
    assert line["severity"] == "WARNING" and "redelivery" in line["message"]
    assert line["logging.googleapis.com/labels"]["run_id"] == run_id
    assert dropzone.status(run_id)["state"] == "VALIDATING"  # left to its owner


class SimulatedCrash(BaseException):
    """The instance dies here: no cleanup, no lease release (BaseException skips handlers)."""


class CrashAfter:
    """Counts the intake's side effects (object writes and publishes) and crashes after the
    n-th one. The lease heartbeat's renewals are not steps: they are timing, not progress."""

    def __init__(self, monkeypatch, n: int | None) -> None:
        self.n, self.steps = n, []
        real_write, real_writer, real_publish = (
            gcs.write_bytes,
            gcs.open_blob_writer,
            pubsub.publish,
        )
        step = self.step

        def write_bytes(uri, *args, **kwargs):
            generation = real_write(uri, *args, **kwargs)
            if threading.current_thread().name != "lease":
                step(f"write {uri.rsplit('/', 1)[-1]}")
            return generation

        def open_blob_writer(uri, *args, **kwargs):
            writer = real_writer(uri, *args, **kwargs)
            close = writer.close

            def close_then_step():
                close()
                step(f"write {uri.split('/runs/', 1)[-1].split('/', 1)[-1]}")

            writer.close = close_then_step
            return writer

        def publish(*args, **kwargs):
            message_id = real_publish(*args, **kwargs)
            step("publish")
            return message_id

        monkeypatch.setattr(gcs, "write_bytes", write_bytes)
        monkeypatch.setattr(gcs, "open_blob_writer", open_blob_writer)
        monkeypatch.setattr(pubsub, "publish", publish)

    def step(self, name: str) -> None:
        self.steps.append(name)
        if self.n is not None and len(self.steps) == self.n:
            self.n = None  # crash once; the redelivery runs clean
            raise SimulatedCrash(name)


@pytest.mark.slow
def test_a_crash_after_any_step_is_finished_by_the_redelivery(dropzone, monkeypatch):
    clean = CrashAfter(monkeypatch, None)
    deliver(dropzone, dropzone.obj("clean.jsonl", EXAMPLE))
    steps = list(clean.steps)
    assert steps[0] == "write run.json" and steps[-1] == "write status.json"
    assert "publish" in steps and len(steps) >= 8
    dropzone.topic.pull()

    for n, step in enumerate(steps, start=1):
        obj = dropzone.obj(f"crash-{n}.jsonl", EXAMPLE)
        crash = CrashAfter(monkeypatch, n)
        with pytest.raises(SimulatedCrash):
            deliver(dropzone, obj)
        outcome = deliver(dropzone, obj)  # waits out the dead attempt's lease, then resumes
        run_id = dropzone.run_id(obj)
        status = dropzone.status(run_id)
        assert status["state"] == "QUEUED", (step, status)
        assert [h["state"] for h in status["history"]] == ["VALIDATING", "QUEUED"], step
        assert dropzone.files(run_id) == RUN_FILES, step
        published = messages_for(dropzone, run_id)
        # Publishing and recording it cannot be one atomic act: a crash between the two
        # sends the message again (consumers dedupe on run_id; see docs/intake.md).
        assert len(published) == (2 if step == "publish" else 1), step
        assert outcome.action == ("none" if n == len(steps) else "queued"), step
        assert crash.n is None


@pytest.fixture
def flaky_storage(dropzone, gcs_server, monkeypatch):
    """droptune reaches Cloud Storage through a proxy that fails when told to; the test's own
    client keeps talking to the emulator directly. Retries are fast so failures come quickly."""
    proxy = FlakyHttpProxy(gcs_server.url)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    gcs.client.cache_clear()
    fast = Retry(initial=0.01, maximum=0.05, timeout=1, predicate=gcs.RETRY._predicate)
    monkeypatch.setattr(gcs, "RETRY", fast)
    yield proxy
    proxy.close()
    gcs.client.cache_clear()


def test_storage_errors_are_retried_inside_the_call(dropzone, flaky_storage):
    obj = dropzone.obj("flaky.jsonl", EXAMPLE)
    flaky_storage.fail_every, flaky_storage.status = 3, 503
    outcome = deliver(dropzone, obj)
    assert outcome.state == RunState.QUEUED
    assert flaky_storage.failed >= 3
    assert len(dropzone.topic.pull()) == 1


def test_storage_down_raises_and_the_redelivery_resumes(dropzone, flaky_storage, monkeypatch):
    obj = dropzone.obj("down.jsonl", EXAMPLE)
    flaky_storage.status = 429
    original = gcs.open_blob_writer

    def storage_goes_down(uri, *args, **kwargs):  # claim and status succeed, then every 429
        flaky_storage.down = True
        return original(uri, *args, **kwargs)

    monkeypatch.setattr(gcs, "open_blob_writer", storage_goes_down)
    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises after retrying
        deliver(dropzone, obj)
    monkeypatch.setattr(gcs, "open_blob_writer", original)
    flaky_storage.down = False
    # Storage was down, so the failed attempt could not release its lease: this delivery
    # waits for it to expire, then takes the run over.
    outcome = deliver(dropzone, obj)
    assert outcome.state == RunState.QUEUED
    assert dropzone.status(dropzone.run_id(obj))["attempts"] == 2


def test_pubsub_briefly_down_is_retried_inside_the_call(dropzone, pubsub_emulator, monkeypatch):
    obj = dropzone.obj("late-pubsub.jsonl", EXAMPLE)
    port = free_port()
    host, emulator_port = pubsub_emulator.split(":")
    forwarder = LateTcpForwarder(port, (host, int(emulator_port)), delay=1.5)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{port}")
    pubsub._client.cache_clear()
    started = time.monotonic()
    try:
        outcome = deliver(dropzone, obj)
    finally:
        forwarder.close()
        pubsub._client.cache_clear()
    assert outcome.state == RunState.QUEUED
    assert time.monotonic() - started >= 1.5
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    assert len(dropzone.topic.pull()) == 1


def test_pubsub_down_raises_and_the_redelivery_publishes_once(
    dropzone, pubsub_emulator, monkeypatch
):
    obj = dropzone.obj("no-pubsub.jsonl", EXAMPLE)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nothing listens
    pubsub._client.cache_clear()
    with pytest.raises(pubsub.PublishError):
        deliver(dropzone, obj, publish_timeout=1.0)
    status = dropzone.status(dropzone.run_id(obj))
    assert status["state"] == "VALIDATING" and "PublishError" in status["last_error"]
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    pubsub._client.cache_clear()
    assert deliver(dropzone, obj).state == RunState.QUEUED
    assert len(dropzone.topic.pull()) == 1


def test_a_run_that_keeps_failing_ends_failed(dropzone, monkeypatch):
    obj = dropzone.obj("doomed.jsonl", EXAMPLE)

    def broken(*args, **kwargs):
        raise RuntimeError("the splitter is broken")

    monkeypatch.setattr("droptune.pipeline.prepare", broken)
    with pytest.raises(RuntimeError):
        deliver(dropzone, obj, max_attempts=2)
    # The last attempt ends the run itself: a bus that stops redelivering (the local stack's
    # gives up after 5) cannot leave it VALIDATING.
    outcome = deliver(dropzone, obj, max_attempts=2)
    assert (outcome.action, outcome.state) == ("failed", RunState.FAILED)
    status = dropzone.status(dropzone.run_id(obj))
    assert status["state"] == "FAILED" and "lease" not in status
    assert status["detail"] == "validation did not finish in 2 attempts"
    assert "the splitter is broken" in status["error"]["message"]
    assert dropzone.topic.pull() == []
    later = deliver(dropzone, obj, max_attempts=2)  # a duplicate delivery finds it ended
    assert (later.action, later.state) == ("none", RunState.FAILED)
