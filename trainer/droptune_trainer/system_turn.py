"""The system turn a model was tuned with travels with the model, and the server applies it.

Every training conversation of a run may open with the same system turn: the examples' own,
the run's `system_instruction`, or the one droptune writes for `text,label` data. The
validation report records it as `system_prompt`; where the examples' own turns differ, those
that had none were given the run's `system_instruction`, which is then what a conversation
without one was tuned with (`tuned_system_prompt`, the rule `droptune runs ask` follows
too). A tuned model expects that turn. Asked
without it, it answers a prompt it never saw: the tickets demo's model answered a bare
"Hello" with the text `user\\nbuggy`, and with its system turn `account`. (SmolLM2's template
writes its own default system turn when a chat has none, so the model saw "You are a helpful
AI assistant named SmolLM".)

So the turn is saved beside the checkpoint (`droptune.json` in `model/merged/`, written with
the model) and the server opens with it every chat that has no system turn of its own
(`opened`), by the rule the intake used to put it into the data (`with_system`). Any caller
then gets the answer the evaluation measured, without knowing the run: the workflow's smoke
request, the `curl` in endpoint.json and the summary, `droptune runs ask`, a user's own SDK
call. The server, not each client, because Vertex AI serves a copy of the model folder and
not the run folder, and because one client that forgot the turn was enough to get
`user\\nbuggy`. A chat that brings its own system turn keeps it.

>>> opened([{"role": "user", "content": "Hello"}], "Answer with a label.")[0]
{'role': 'system', 'content': 'Answer with a label.'}
>>> opened([{"role": "user", "content": "Hello"}], None)
[{'role': 'user', 'content': 'Hello'}]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from droptune.instruction import tuned_system_prompt as _rule
from droptune.instruction import with_system
from droptune_trainer.errors import RunFolderError

SETTINGS = "droptune.json"  # beside config.json: what serving needs besides the checkpoint
REPORT = "validation/report.json"


def tuned_system_prompt(run_dir: Path) -> str | None:
    """The system turn the run's examples without one of their own were tuned with: the one
    every example opened with (the validation report's `system_prompt`), else the run's
    `system_instruction` (the intake gave it to each example without a system turn); None
    when neither is there."""
    return _rule(_json_map(run_dir / REPORT), _json_map(run_dir / "run.json").get("config"))


def _json_map(path: Path) -> dict[str, Any]:
    """A run file's JSON object; {} when the file is not there."""
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
    except ValueError as exc:
        raise RunFolderError(f"{path}: not JSON ({exc})") from None
    return value if isinstance(value, dict) else {}


def save(folder: Path, run_dir: Path) -> None:
    """Write `droptune.json` into the checkpoint `folder`: the run's tuned system turn
    (null when it has none, so that the file says so rather than being missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"system_prompt": tuned_system_prompt(run_dir)}
    (folder / SETTINGS).write_text(json.dumps(settings, ensure_ascii=False, indent=2) + "\n")


def load(folder: Path) -> str | None:
    """The tuned system turn saved in the checkpoint `folder`; None without one (a plain
    checkpoint, or a run whose examples had none in common)."""
    path = folder / SETTINGS
    if not path.is_file():
        return None
    try:
        settings = json.loads(path.read_text())
    except ValueError as exc:
        raise RunFolderError(f"{path}: not JSON ({exc}); it is written with the model") from None
    prompt = settings.get("system_prompt") if isinstance(settings, dict) else None
    return prompt if isinstance(prompt, str) and prompt else None


def opened(messages: list[dict[str, Any]], system: str | None) -> list[dict[str, Any]]:
    """`messages` opened with the tuned `system` turn, unless they bring their own."""
    if not system:
        return messages
    return with_system({"messages": messages}, system)["messages"]
