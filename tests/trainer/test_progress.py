"""Training tells where it is at least every 15 seconds, whatever a step takes: checked on a
fake clock, never by waiting."""

from __future__ import annotations

import io
import json
import threading
import time

import pytest
from droptune_trainer import report
from droptune_trainer.report import Progress, beats, heartbeat

from droptune.log import get_logger, labelled


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lines(monkeypatch) -> io.StringIO:
    stream = io.StringIO()
    monkeypatch.setattr(report, "log", get_logger("droptune.test.progress", stream=stream))
    return stream


def logged(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_comes_every_15_seconds_even_inside_one_long_step(lines):
    clock = FakeClock()
    progress = Progress(steps=10, tokens=10_000, clock=clock)
    waits = []

    def wait(seconds: float) -> bool:  # what the heartbeat thread sleeps: the clock moves on
        waits.append(seconds)
        clock.now += seconds
        if clock.now < 40:  # a micro-batch of 500 tokens ends every 10 s or so
            progress.advance(step=0, tokens=500)
        return clock.now > 100  # the block ends

    beats(progress, wait)
    entries = logged(lines)
    times = [entry["elapsed_s"] for entry in entries]
    assert times == [15, 30, 45, 60, 75, 90]  # not one gap over 15 s, and no more lines
    assert all(w <= report.PROGRESS_EVERY for w in waits)
    first = entries[0]
    assert first["event"] == "progress" and first["severity"] == "INFO"
    assert {"step", "steps", "tokens_per_second", "loss", "elapsed_s", "eta_s", "phase"} <= set(
        first
    )
    assert first["message"].startswith("training: step 0/10")


def test_the_fields_say_rate_loss_and_time_left():
    clock = FakeClock()
    progress = Progress(steps=4, tokens=4000, clock=clock)
    clock.now = 10.0
    progress.advance(step=1, tokens=1000, loss=1.23456)
    facts = progress.fields()
    assert facts["tokens_per_second"] == 100.0 and facts["loss"] == 1.2346
    assert (facts["elapsed_s"], facts["eta_s"]) == (10.0, 30.0)
    assert not progress.due()
    clock.now = 15.0
    assert progress.due()


def test_a_resumed_run_counts_its_rate_from_what_this_process_trained():
    clock = FakeClock()
    progress = Progress(steps=10, tokens=10_000, clock=clock)
    progress.resume(step=5, tokens=5000)
    clock.now = 10.0
    progress.advance(step=6, tokens=1000)
    facts = progress.fields()
    assert facts["tokens_per_second"] == 100.0 and facts["eta_s"] == 40.0


def test_evaluation_lines_say_so_and_promise_no_eta():
    clock = FakeClock()
    progress = Progress(steps=4, tokens=400, clock=clock)
    progress.advance(step=4, tokens=400, loss=0.5)
    progress.enter("evaluating")
    clock.now = 75.0
    facts = progress.fields()
    assert facts["eta_s"] is None
    assert report.progress_message(facts) == (
        "evaluating base and tuned models on the test split, 1m15s elapsed"
    )


def test_the_heartbeat_thread_starts_and_stops_with_the_block_and_keeps_the_labels(lines):
    progress = Progress(steps=1, tokens=1, every=0.0)  # due at once, on the real clock
    with labelled(run_id="r1"), heartbeat(progress):
        for _ in range(1000):  # until the thread has written a line (it does at once)
            if lines.getvalue():
                break
            time.sleep(0.01)
    assert logged(lines)[0]["logging.googleapis.com/labels"] == {"run_id": "r1"}
    assert not any(t.name == "droptune-progress" for t in threading.enumerate())


def test_no_progress_no_thread():
    with heartbeat(None):
        pass
