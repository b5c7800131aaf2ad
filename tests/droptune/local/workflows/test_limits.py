"""The service's limits (https://cloud.google.com/workflows/quotas) that need more than a case
file: how a value is measured, what a deployment refuses, the argument, nested parallel steps.
Memory limits that a workflow reaches by itself are cases in cases/limits.yaml; the HTTP
response size is in test_http.py, the argument of `droptune workflows run` in test_cli.py."""

from __future__ import annotations

import json

import pytest

from droptune.local.workflows.engine import Engine, Frame, parse_workflow
from droptune.local.workflows.errors import WorkflowSyntaxError
from droptune.local.workflows.limits import (
    MAX_EXPRESSION_LENGTH,
    MAX_MEMORY_BYTES,
    MAX_SOURCE_BYTES,
    size_of,
)
from droptune.local.workflows.stdlib import Runtime, VirtualClock


def run(text: str, argument=None):
    return Engine(parse_workflow(text), Runtime(clock=VirtualClock())).run(argument)


# --- measuring ----------------------------------------------------------------------------
def test_sizes_follow_the_variables_page():
    # Its example: a 28-byte string takes 36 bytes, and a copy of it as much again.
    assert size_of("This is a string of 28 bytes") == 36
    assert size_of(b"\x00\x01") == 10
    assert size_of("é") == 8 + 2  # bytes in UTF-8, not characters
    assert size_of([1, 2.5, True, None]) == 8 + 4 * 8
    assert size_of({"ab": [1]}) == 8 + (8 + 2) + (8 + 8)
    workflow = parse_workflow(
        '- a:\n    assign:\n      - a: "This is a string of 28 bytes"\n      - b: ${a}\n'
    )
    engine = Engine(workflow)
    frame = Frame(engine)
    engine.run_block(workflow.main.block, frame)
    assert engine.memory == 72


def test_every_frame_gives_its_memory_back():
    text = """
main:
  params: [args]
  steps:
    - init: {assign: [{last: ""}, {seen: ""}]}
    - loop:
        for:
          value: v
          in: ${args.items}
          steps:
            - add: {assign: [{last: "${v}"}]}
    - call: {call: twice, args: {x: "${last}"}, result: doubled}
    - guarded:
        try:
          raise: {message: boom}
        except:
          as: e
          steps:
            - note: {assign: [{seen: "${e.message}"}]}
    - fan:
        parallel:
          shared: [doubled]
          for:
            value: i
            in: [1, 2, 3]
            steps:
              - mine: {assign: [{local: "${i}"}]}
    - r: {return: "${doubled + seen}"}
twice:
  params: [x]
  steps:
    - r: {return: "${x + x}"}
"""
    engine = Engine(parse_workflow(text), Runtime(clock=VirtualClock()))
    execution = engine.run({"items": ["a", "b"]})
    assert execution.result == "bbboom"
    assert engine.memory == 0


def test_the_argument_counts_against_the_memory_limit():
    text = "main:\n  params: [args]\n  steps:\n    - r:\n        return: ${len(args.text)}\n"
    fits = run(text, {"text": "x" * 400 * 1024})
    assert fits.result == 400 * 1024
    too_big = run(text, {"text": "x" * 600 * 1024})
    assert too_big.error == {
        "message": "Memory usage limit exceeded",
        "tags": ["ResourceLimitError"],
    }
    assert f"more than the {MAX_MEMORY_BYTES // 1024}.0 KB" in too_big.context


# --- what a deployment refuses ------------------------------------------------------------
def test_source_size():
    step = "- r:\n    return: 1\n"
    padding = MAX_SOURCE_BYTES - len(step) - 1
    assert run(step + "#" * padding + "\n").result == 1
    with pytest.raises(WorkflowSyntaxError, match=r"131,073 bytes.*at most 131,072 \(128 KB\)"):
        parse_workflow(step + "#" * (padding + 1) + "\n", "big.yaml")


def test_source_size_of_a_file(tmp_path):
    from droptune.local.workflows.engine import load_workflow

    path = tmp_path / "big.workflows.yaml"
    path.write_text("- r:\n    return: 1\n# " + "é" * (MAX_SOURCE_BYTES // 2) + "\n")
    with pytest.raises(WorkflowSyntaxError, match=r"big\.workflows\.yaml: .* bytes"):
        load_workflow(str(path))


def test_expression_length():
    longest = '"' + "a" * (MAX_EXPRESSION_LENGTH - 2) + '"'
    assert run(f"- r:\n    return: ${{{longest}}}\n").result == "a" * (MAX_EXPRESSION_LENGTH - 2)
    too_long = '"' + "a" * (MAX_EXPRESSION_LENGTH - 1) + '"'
    with pytest.raises(WorkflowSyntaxError, match=r"w.yaml:2 step 'r': .*at most 400 characters"):
        parse_workflow(f"- r:\n    return: ${{{too_long}}}\n", "w.yaml")


def test_conditions_per_switch():
    def switch(n: int) -> str:
        conditions = "".join(
            f"      - condition: ${{{i} < 0}}\n        next: end\n" for i in range(n)
        )
        return f"- s:\n    switch:\n{conditions}- r:\n    return: 1\n"

    assert run(switch(50)).result == 1
    with pytest.raises(WorkflowSyntaxError, match="at most 50 conditions"):
        parse_workflow(switch(51))


# --- while it runs --------------------------------------------------------------------------
def test_parallel_steps_nest_at_most_two_deep():
    def nest(depth: int) -> str:
        body = "- s:\n    assign:\n      - n: 1\n"
        for _ in range(depth):
            inner = "".join("            " + line + "\n" for line in body.splitlines())
            body = (
                "- p:\n    parallel:\n      branches:\n"
                f"        - a:\n            steps:\n{inner}"
                "        - b:\n            steps:\n            - s: {assign: [{m: 1}]}\n"
            )
        return body + "- r:\n    return: done\n"

    assert run(nest(2)).result == "done"
    execution = run(nest(3))
    assert execution.error["tags"] == ["UnhandledBranchError"]  # raised in the innermost branch
    assert "ParallelNestingError" in json.dumps(execution.error)
