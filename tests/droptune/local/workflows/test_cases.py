"""Case files under cases/: each case is a workflow with its expected result or error.

Keys: `name`, `workflow` (a list of steps or a map of subworkflows), `data` (the argument),
then `result`, or `error` (a string, or a map whose keys must all match the error's),
optionally `slept` (seconds on the virtual clock), `logs` (entries that must be recorded) and
`max_steps`. Expected values come from the Workflows syntax and library reference.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from droptune.local.workflows.engine import Engine, compile_workflow
from droptune.local.workflows.loader import load_file, plain
from droptune.local.workflows.stdlib import Runtime, VirtualClock

CASES = Path(__file__).parent / "cases"
ENV = {"GOOGLE_CLOUD_PROJECT_ID": "droptune-local"}


def cases() -> list:
    params = []
    for path in sorted(CASES.glob("*.yaml")):
        for case in load_file(path):
            params.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return params


@pytest.mark.parametrize("case", cases())
def test_case(case: dict) -> None:
    clock = VirtualClock()
    runtime = Runtime(env=dict(ENV), clock=clock)
    workflow = compile_workflow(case["workflow"], case["name"])
    engine = Engine(workflow, runtime, max_steps=case.get("max_steps", 100_000))
    execution = engine.run(plain(case.get("data")))
    if "error" in case:
        assert execution.state == "FAILED", f"expected an error, got {execution.result!r}"
        expected = plain(case["error"])
        if isinstance(expected, dict):
            assert {k: execution.error.get(k) for k in expected} == expected, execution.error
        else:
            assert execution.error == expected
    else:
        assert execution.state == "SUCCEEDED", execution.error
        assert execution.result == plain(case["result"])
        assert type(execution.result) is type(plain(case["result"]))
    if "slept" in case:
        assert clock.now() - 1_700_000_000.0 == pytest.approx(case["slept"])
    for entry in case.get("logs", []):
        assert any(plain(entry).items() <= log.items() for log in execution.logs), execution.logs
