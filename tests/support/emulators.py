"""The real local services tests run against: fake-gcs-server and Google's Pub/Sub emulator."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from droptune.local.storage_emulator import free_port

__all__ = ["PubSubEmulator", "Topic", "create_topic", "free_port", "wait_for_port"]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class PubSubEmulator:
    """`gcloud beta emulators pubsub start` on a free port, in its own process group."""

    def __init__(self, data_dir: Path) -> None:
        self.gcloud = shutil.which("gcloud")
        self.data_dir = data_dir
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        assert self.gcloud
        log = (self.data_dir / "emulator.log").open("wb")
        self.proc = subprocess.Popen(
            [self.gcloud, "beta", "emulators", "pubsub", "start",
             f"--host-port={self.host}", f"--data-dir={self.data_dir}", "--quiet"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_for_port(self.port, timeout=90, proc=self.proc)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class Topic:
    """A topic with one pull subscription, to see what was published."""

    path: str
    subscription: str

    def pull(self, settle: float = 0.5) -> list[pubsub_v1.types.PubsubMessage]:
        """Every message published so far (waits `settle` seconds for stragglers)."""
        subscriber = pubsub_v1.SubscriberClient()
        messages = []
        with subscriber:
            while True:
                try:
                    response = subscriber.pull(
                        subscription=self.subscription, max_messages=100, timeout=settle
                    )
                except gexc.DeadlineExceeded:
                    break
                if not response.received_messages:
                    break
                ack_ids = [m.ack_id for m in response.received_messages]
                subscriber.acknowledge(subscription=self.subscription, ack_ids=ack_ids)
                messages += [m.message for m in response.received_messages]
        return messages


def create_topic(project: str, name: str) -> Topic:
    topic = f"projects/{project}/topics/{name}"
    subscription = f"projects/{project}/subscriptions/{name}-all"
    with pubsub_v1.SubscriberClient() as subscriber:
        pubsub_v1.PublisherClient().create_topic(name=topic)
        subscriber.create_subscription(name=subscription, topic=topic)
    return Topic(topic, subscription)
