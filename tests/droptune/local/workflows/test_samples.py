"""The official workflows-samples (../shared/datasets/workflows) run to the results their
comments and the Workflows documentation give; the official JSON Schema accepts every workflow
the engine accepts and the engine rejects, with a line, what the schema rejects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from droptune.local.workflows.engine import Engine, compile_workflow, load_workflow
from droptune.local.workflows.errors import WorkflowSyntaxError
from droptune.local.workflows.loader import load_file, load_text, plain
from droptune.local.workflows.stdlib import Runtime, VirtualClock

SAMPLES = (
    Path(__file__).parents[4] / ".." / "shared" / "datasets" / "workflows" / "workflows-samples"
).resolve()
CASES = Path(__file__).parent / "cases"

pytestmark = pytest.mark.skipif(
    not SAMPLES.is_dir(), reason=f"workflows-samples not checked out at {SAMPLES}"
)

UNHANDLED = "UnhandledBranchError: One or more branches or iterations encountered an unhandled runtime error"
EXPECTED = {
    "args": ({"firstName": "Ada", "lastName": "Lovelace"}, "Hello Ada Lovelace"),
    "array": (None, {"concat_result": "foobar"}),
    "dictionary": (None, None),
    "expression": (None, "Current temperature is 80.6 F"),
    "iterate_for_range": (None, 45),
    "iterate_list": (None, 15),
    "iterate_map": (None, 60),
    "list": (None, None),
    "list_reverse": (None, [3, 2, 1]),
    "loop_scope": (None, [8]),
    "parallel_error_handling": (
        None,
        {
            "message": UNHANDLED,
            "tags": ["UnhandledBranchError"],
            "branches": [{"id": str(i), "error": "how odd!"} for i in (1, 3, 5)],
            "truncated": False,
            "totalUnhandledErrors": 3,
        },
    ),
    "step_iterate": (None, {"concat_result": "foobar"}),
    "step_switch_embedded": (None, "increase a to:8"),
    "subworkflow": (None, "Hello Kristof"),
    "vars": (None, None),
}


def sample(name: str) -> Path:
    return SAMPLES / f"{name}.workflows.yaml"


def test_every_sample_has_an_expected_result() -> None:
    names = {p.name.removesuffix(".workflows.yaml") for p in SAMPLES.glob("*.workflows.yaml")}
    assert names == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_result(name: str) -> None:
    argument, expected = EXPECTED[name]
    execution = Engine(load_workflow(str(sample(name))), Runtime(clock=VirtualClock())).run(
        argument
    )
    assert execution.state == "SUCCEEDED", execution.error
    assert execution.result == expected


def test_dictionary_sample_builds_its_map_with_a_dynamic_key() -> None:
    workflow = load_workflow(str(sample("dictionary")))
    engine = Engine(workflow)
    from droptune.local.workflows.engine import Frame

    frame = Frame(engine)
    engine.run_block(workflow.main.block, frame)
    assert frame.variables["myMap"]["MiddleName"] == "Apple"
    assert frame.variables["myMap"]["Address"]["City"] == "Superville"


# --- the official JSON Schema agrees --------------------------------------------------------
@pytest.fixture(scope="module")
def schema_validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((SAMPLES / "jsonschema" / "workflows.json").read_text())
    return jsonschema.Draft7Validator(schema)


def all_case_workflows() -> list:
    return [
        plain(case["workflow"]) for path in sorted(CASES.glob("*.yaml")) for case in load_file(path)
    ]


def test_schema_accepts_the_samples_and_our_cases(schema_validator) -> None:
    documents = [plain(load_file(p)) for p in sorted(SAMPLES.glob("*.workflows.yaml"))]
    documents += all_case_workflows()
    for document in documents:
        errors = [e.message for e in schema_validator.iter_errors(document)]
        assert errors == [], (document, errors[:3])


# (text, line, message, whether the official schema rejects it too)
MALFORMED = [
    ("- a:\n    asign:\n      - x: 1\n", 2, "unknown key", True),
    ("- a:\n    assign: {x: 1}\n", 2, "assign takes a list", True),
    (
        "- a:\n    for:\n      value: v\n      steps:\n        - s: {return: 1}\n",
        3,
        "exactly one of",
        True,
    ),
    ("main:\n  stepz: []\n", 2, "needs `steps:`", True),
    ("- a:\n    switch: yes\n", 2, "switch takes a list", True),
    # Beyond the schema: mistakes the service reports at deploy time.
    ("- a:\n    try:\n      call: sys.log\n", 2, "try needs `retry:` or `except:`", False),
    ("- a:\n    next: nowhere\n", 2, "names no step", False),
    (
        "- a:\n    try:\n      call: sys.log\n      next: b\n    retry: ${http.default_retry}\n- b:\n    return: 1\n",
        3,
        "next goes beside try",
        False,
    ),
    ("- a:\n    assign:\n      - x: ${1 +}\n", 2, "cannot parse expression", False),
    ("- a:\n    next: break\n", 2, "outside a for loop", False),
    (
        "- p:\n    parallel:\n      branches:\n        - b:\n            steps:\n"
        "              - s:\n                  next: break\n"
        "        - c:\n            steps:\n              - s: {return: 1}\n",
        7,
        "outside a for loop",  # a branch is no loop, even inside one
        False,
    ),
    ("- a:\n    return: 1\n- a:\n    return: 2\n", 3, "two steps are named", False),
]


@pytest.mark.parametrize(("text", "line", "message", "schema_rejects"), MALFORMED)
def test_malformed_workflows_fail_with_a_line(
    text, line, message, schema_rejects, schema_validator
):
    with pytest.raises(WorkflowSyntaxError, match=message) as caught:
        compile_workflow(load_text(text, "bad.yaml"), "bad.yaml")
    assert f"bad.yaml:{line}" in str(caught.value)
    if schema_rejects:
        assert list(schema_validator.iter_errors(plain(load_text(text)))), "the schema accepts it"
