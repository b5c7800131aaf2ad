"""The bus as a server: it owns its port while running and gives it, and its threads, back."""

from __future__ import annotations

import socket

import pytest

from droptune.local.bus import BusError, EventBus
from tests.droptune.local.bus.conftest import Collector

TOPIC = "projects/local/topics/runs"


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_stop_frees_the_port_and_ends_the_worker_threads():
    bus = EventBus().start()
    bus.create_topic(TOPIC)
    subscriptions = [bus.subscribe(TOPIC, Collector(), workers=3) for _ in range(2)]
    threads = [t for s in subscriptions for t in s.threads]
    assert all(t.is_alive() for t in threads) and len(threads) == 6
    assert not port_is_free(bus.port)
    bus.stop()
    assert port_is_free(bus.port)
    assert not any(t.is_alive() for t in threads)


def test_a_second_bus_on_a_taken_port_fails_to_start(bus: EventBus):
    with pytest.raises(BusError, match="cannot listen"):
        EventBus(port=bus.port).start()


def test_host_is_known_before_start_for_the_environment():
    bus = EventBus()
    assert bus.host == f"127.0.0.1:{bus.port}"
    with bus:
        assert bus.wait_idle(0)
