"""The limits Cloud Workflows sets on a workflow and its executions, as this engine applies them.

The numbers come from Google's "Quotas and limits" page (https://cloud.google.com/workflows/quotas);
the size of a value is measured by the rule of the "Variables" syntax page
(https://cloud.google.com/workflows/docs/reference/syntax/variables, memory usage), and the
error tags are those of the "Workflow errors" page
(https://cloud.google.com/workflows/docs/reference/syntax/error-types).

Some limits refuse the workflow before it runs, as a deployment would be refused (the source
size, the length of an expression, the assignments of a step, the conditions of a switch, the
branches of a parallel step); the others fail an execution as it runs. A `ResourceLimitError`
the service raises itself cannot be caught by `try`/`except` nor retried: the execution fails
at once. `exceeded` builds such an error.
"""

from __future__ import annotations

from typing import Any

from droptune.local.workflows.errors import WorkflowRaise, error

KB = 1024

# Before the run: the service refuses such a workflow when it is deployed.
MAX_SOURCE_BYTES = 128 * KB  # the YAML or JSON file
MAX_EXPRESSION_LENGTH = 400  # characters between `${` and `}`
MAX_ASSIGNMENTS = 50  # per assign step
MAX_CONDITIONS = 50  # per switch step
MAX_BRANCHES = 10  # per parallel step

# While it runs.
MAX_STEPS = 100_000  # steps one execution runs
MAX_CALL_DEPTH = 20  # subworkflow calls in progress: a RecursionError beyond
MAX_PARALLEL_NESTING = 2  # parallel steps inside parallel steps: a ParallelNestingError beyond
MAX_CONCURRENCY = 20  # branches or iterations running at once; the rest wait their turn
MAX_BRANCH_ERRORS = 100  # branch errors kept in an UnhandledBranchError (`truncated` beyond)
MAX_MEMORY_BYTES = 512 * KB  # variables, arguments and events of one execution together
MAX_RESPONSE_BYTES = 2 * 1024 * KB  # the body of one HTTP response (http.* and connectors)

# Not a workflow error: the Executions API refuses to start an execution with a larger
# argument (its `argument` field, https://cloud.google.com/workflows/docs/reference/
# executions/rest/v1/projects.locations.workflows.executions); an event is not bound by it.
MAX_ARGUMENT_BYTES = 32 * KB  # the argument as JSON text

MEMORY_EXCEEDED = "Memory usage limit exceeded"

SCALAR_BYTES = 8  # an integer, a double, a boolean; and here null too, which the page omits


def size_of(value: Any) -> int:
    """Bytes `value` takes against the memory limit: 8 for a number or boolean, 8 plus one a
    byte for a string (UTF-8) or bytes, 8 plus its items for a list, 8 plus its keys and values
    for a map.

    >>> size_of("This is a string of 28 bytes")
    36
    >>> size_of({"a": [1, 2.5, True], "b": None})
    66
    """
    if value is None or isinstance(value, int | float):  # booleans are ints
        return SCALAR_BYTES
    if isinstance(value, str):
        return SCALAR_BYTES + (len(value) if value.isascii() else len(value.encode("utf-8")))
    if isinstance(value, bytes):
        return SCALAR_BYTES + len(value)
    if isinstance(value, list):
        return SCALAR_BYTES + sum(map(size_of, value))
    if isinstance(value, dict):
        return SCALAR_BYTES + sum(size_of(k) + size_of(v) for k, v in value.items())
    return SCALAR_BYTES


def exceeded(message: str, detail: str | None = None) -> WorkflowRaise:
    """The `ResourceLimitError` the service raises when an execution runs out of a resource:
    `message` is what the error map says, `detail` goes into the error's context (the numbers
    behind it), and no `except` can catch it.

    >>> failure = exceeded(MEMORY_EXCEEDED, "600 KB")
    >>> failure.value, failure.catchable, failure.context
    ({'message': 'Memory usage limit exceeded', 'tags': ['ResourceLimitError']}, False, '600 KB')
    """
    failure = error("ResourceLimitError", message)
    failure.catchable = False
    failure.detail = detail
    return failure


def kilobytes(size: int) -> str:
    """
    >>> kilobytes(614_400)
    '600.0 KB'
    """
    return f"{size / KB:.1f} KB"
