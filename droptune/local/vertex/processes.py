"""Containers as local processes: the command Vertex AI would run, its environment, its log.

No container is run. Whatever `imageUri` says, the image is taken to be droptune's trainer
image (trainer/Dockerfile: `ENTRYPOINT ["python", "-m", "droptune_trainer"]`, `CMD ["serve"]`)
and its entry point runs with this interpreter. `command` and `args` combine with the image
the way Kubernetes combines them with ENTRYPOINT and CMD, and `$(VAR)` references in them are
expanded from the container's environment, as Vertex AI does.

The processes themselves are `droptune.local.processes.Process`es.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence

ENTRYPOINT = ("python", "-m", "droptune_trainer")  # trainer/Dockerfile ENTRYPOINT
CMD = ("serve",)  # trainer/Dockerfile CMD
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
