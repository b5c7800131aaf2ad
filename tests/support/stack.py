"""A process that passes for a running local stack: its command line names the stack's module
(droptune.local.home.StackState.alive checks it), and it does nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from droptune.local.home import STACK_MODULE


@contextmanager
def stand_in_stack() -> Iterator[int]:
    """The pid of a stand-in stack process, alive until the block ends."""
    argv = [sys.executable, "-c", "import time; time.sleep(600)", STACK_MODULE]
    process = subprocess.Popen(argv)
    try:
        command = Path(f"/proc/{process.pid}/cmdline")
        while STACK_MODULE.encode() not in command.read_bytes():  # until it has exec'd
            time.sleep(0.01)
        yield process.pid
    finally:
        process.kill()
        process.wait()
