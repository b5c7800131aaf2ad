"""Containers as local processes: the command Vertex AI would run, its environment, its log.

No container is run. Whatever `imageUri` says, the image is taken to be droptune's trainer
image (trainer/Dockerfile: `ENTRYPOINT ["python", "-m", "droptune_trainer"]`, `CMD ["serve"]`)
and its entry point runs with this interpreter. `command` and `args` combine with the image
the way Kubernetes combines them with ENTRYPOINT and CMD, and `$(VAR)` references in them are
expanded from the container's environment, as Vertex AI does.

Each process leads its own session (process group), so stopping it also stops whatever it
started (data loaders, tokenizer workers): SIGTERM to the group, SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ENTRYPOINT = ("python", "-m", "droptune_trainer")  # trainer/Dockerfile ENTRYPOINT
CMD = ("serve",)  # trainer/Dockerfile CMD
GRACE_SECONDS = 10.0  # SIGTERM -> SIGKILL on cancel; Kubernetes gives 30 s, a local run needs less
_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes-style `$(VAR)` expansion; unknown references stay as written.

    >>> expand("--out=$(AIP_MODEL_DIR) $(NOPE)", {"AIP_MODEL_DIR": "gs://b/m/"})
    '--out=gs://b/m/ $(NOPE)'
    """
    return _REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def container_argv(
    command: Sequence[str], args: Sequence[str], env: Mapping[str, str]
) -> list[str]:
    """The argv a container with this `command`/`args` runs, on this machine.

    `command` replaces the ENTRYPOINT (and drops CMD); `args` replaces CMD. A leading
    `python`/`python3` becomes this interpreter, so the process sees droptune's environment.

    >>> container_argv([], ["train"], {})[1:]
    ['-m', 'droptune_trainer', 'train']
    >>> container_argv(["python3", "-c", "pass"], [], {})[1:]
    ['-c', 'pass']
    """
    argv = [*command, *args] if command else [*ENTRYPOINT, *(args or CMD)]
    argv = [expand(part, env) for part in argv]
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def process_env(*layers: Mapping[str, str]) -> dict[str, str]:
    """os.environ overlaid with each layer in turn (later layers win)."""
    env = dict(os.environ)
    for layer in layers:
        env.update(layer)
    return env


@dataclass
class Process:
    """A started container process whose stdout and stderr go to `log_path`."""

    argv: list[str]
    log_path: Path
    popen: subprocess.Popen = field(repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def start(cls, argv: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> Process:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        cwd.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as a whole
            )
        return cls(argv, log_path, popen)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def stop(self, grace: float = GRACE_SECONDS) -> int:
        """SIGTERM the process group, SIGKILL it after `grace` seconds; the exit status."""
        with self._lock:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait()
            # Children that ignored SIGTERM outlive their leader: make sure they go too.
            self._signal_group(signal.SIGKILL)
            return self.popen.returncode

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def tail(self, lines: int = 20) -> str:
        """The last `lines` lines of the process's output."""
        try:
            with self.log_path.open(errors="replace") as log:
                return "".join(deque(log, maxlen=lines)).rstrip("\n")
        except OSError:
            return ""
