"""The steps of a compiled workflow, each a small object that runs itself in a frame.

`execute(frame)` returns None to go on with the next step, a `Next` to jump (or `end`,
`break`, `continue`), or a `Return`; errors are raised as `WorkflowRaise`. What steps need from
the engine (calling functions, running blocks, retry waits, running branches) they reach
through `frame.engine`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from droptune.local.workflows.errors import WorkflowRaise, error
from droptune.local.workflows.expressions import Compiled, get_key, type_name
from droptune.local.workflows.limits import MAX_BRANCH_ERRORS, MAX_CONCURRENCY
from droptune.local.workflows.loader import plain
from droptune.local.workflows.scope import Frame

UNHANDLED_BRANCH = "UnhandledBranchError: One or more branches or iterations encountered an unhandled runtime error"


# --- control signals ------------------------------------------------------------------------
class Next:
    __slots__ = ("target",)

    def __init__(self, target: str) -> None:
        self.target = target


class Return:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


# --- steps ----------------------------------------------------------------------------------
@dataclass
class Step:
    name: str
    line: int | None
    next: str | None = None

    def where(self) -> str:
        return f"step {self.name!r}" + (f" (line {self.line})" if self.line else "")

    def execute(self, frame: Frame) -> Next | Return | None:
        raise NotImplementedError


@dataclass
class JumpStep(Step):
    """A step with only `next:`."""

    def execute(self, frame: Frame) -> None:
        return None


@dataclass
class Block:
    steps: list[Step]
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {step.name: i for i, step in enumerate(self.steps)}


@dataclass
class Target:
    """An assignment target: `a`, `a.b`, `a[0]`, `a["k"][i]`."""

    root: str
    path: list[Compiled]


@dataclass
class AssignStep(Step):
    assignments: list[tuple[Target, Compiled]] = field(default_factory=list)

    def execute(self, frame: Frame) -> None:
        lock = frame.engine.lock
        if lock is None:
            for target, value in self.assignments:
                assign(frame, target, plain(value(frame)))
            return
        with lock:  # in parallel branches an assign step is atomic, reads and writes alike
            for target, value in self.assignments:
                assign(frame, target, plain(value(frame)))


@dataclass
class CallStep(Step):
    function: str = ""
    args: dict[str, Compiled] = field(default_factory=dict)
    result: str | None = None

    def execute(self, frame: Frame) -> None:
        kwargs = {name: value(frame) for name, value in self.args.items()}
        value = frame.engine.call(self.function, [], kwargs, frame)
        if self.result:
            frame.assign(self.result, plain(value))


@dataclass
class ReturnStep(Step):
    value: Compiled = field(default=lambda scope: None)

    def execute(self, frame: Frame) -> Return:
        return Return(self.value(frame))


@dataclass
class RaiseStep(Step):
    value: Compiled = field(default=lambda scope: None)

    def execute(self, frame: Frame) -> None:
        raise WorkflowRaise(self.value(frame))


@dataclass
class StepsStep(Step):
    block: Block = field(default_factory=lambda: Block([]))

    def execute(self, frame: Frame) -> Next | Return | None:
        return frame.engine.run_block(self.block, frame)


@dataclass
class Condition:
    test: Compiled
    line: int | None
    jump: str | None
    body: Step | None


@dataclass
class SwitchStep(Step):
    conditions: list[Condition] = field(default_factory=list)

    def execute(self, frame: Frame) -> Next | Return | None:
        for condition in self.conditions:
            value = condition.test(frame)
            if not isinstance(value, bool):
                raise error(
                    "TypeError",
                    f"switch condition (line {condition.line}) must be a boolean, got {type_name(value)}",
                )
            if value:
                if condition.body is not None:
                    signal = frame.engine.execute(condition.body, frame)
                    if signal is not None:
                        return signal
                return Next(condition.jump) if condition.jump else None
        return None


@dataclass
class ForStep(Step):
    value_var: str | None = None
    index_var: str | None = None
    items: Compiled | None = None
    range_: Compiled | None = None
    block: Block = field(default_factory=lambda: Block([]))

    def sequence(self, frame: Frame) -> list[Any]:
        if self.items is not None:
            items = self.items(frame)
            if isinstance(items, dict):
                raise error("TypeError", "for: `in` takes a list; iterate a map with ${keys(m)}")
            if not isinstance(items, list):
                raise error("TypeError", f"for: `in` needs a list, got {type_name(items)}")
            return items
        bounds = self.range_(frame) if self.range_ else None
        if not (
            isinstance(bounds, list)
            and len(bounds) == 2
            and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
        ):
            raise error("TypeError", f"for: range must be [start, end] numbers, got {bounds!r}")
        start, end = bounds
        out, value = [], start
        while value <= end:  # both ends included
            out.append(value)
            value += 1
        return out

    def loop_variables(self, i: int, item: Any) -> dict[str, Any]:
        """The variables one iteration starts with: `value` and `index`, as declared."""
        names = ((self.value_var, item), (self.index_var, i))
        return {name: value for name, value in names if name}

    def execute(self, frame: Frame) -> Next | Return | None:
        for i, item in enumerate(self.sequence(frame)):
            body = Frame(frame.engine, self.loop_variables(i, item), parent=frame)
            try:
                signal = frame.engine.run_block(self.block, body)
            finally:
                body.release()
            target = signal.target if isinstance(signal, Next) else None
            if target == "break":
                break
            if target == "continue":
                continue
            if signal is not None:
                return signal
        return None


@dataclass
class Branch:
    name: str
    block: Block


@dataclass
class ParallelStep(Step):
    shared: tuple[str, ...] = ()
    branches: list[Branch] = field(default_factory=list)
    loop: ForStep | None = None
    concurrency: Compiled | None = None

    def execute(self, frame: Frame) -> None:
        engine = frame.engine
        for name in self.shared:
            if not frame.has(name):
                raise error(
                    "KeyError", f"shared variable {name} must be assigned before the parallel step"
                )
        jobs: list[tuple[str, Callable[[], Any]]] = []
        if self.loop is not None:
            loop = self.loop
            for i, item in enumerate(loop.sequence(frame)):
                jobs.append((str(i), self.job(loop.block, frame, loop.loop_variables(i, item))))
        else:
            for branch in self.branches:
                jobs.append((branch.name, self.job(branch.block, frame, {})))
        limit = self.concurrency(frame) if self.concurrency else MAX_CONCURRENCY
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise error(
                "ValueError", f"concurrency_limit must be a positive integer, got {limit!r}"
            )
        failures = engine.run_concurrently(jobs, min(limit, MAX_CONCURRENCY))
        if failures:
            raise WorkflowRaise({
                "message": UNHANDLED_BRANCH,
                "tags": ["UnhandledBranchError"],
                "branches": [{"id": bid, "error": value} for bid, value in failures[:MAX_BRANCH_ERRORS]],
                "truncated": len(failures) > MAX_BRANCH_ERRORS,
                "totalUnhandledErrors": len(failures),
            })  # fmt: skip

    def job(self, block: Block, frame: Frame, variables: dict[str, Any]) -> Callable[[], Any]:
        """A branch or iteration to run: its frame exists (and takes memory) while it runs."""

        def run() -> Next | Return | None:
            branch = Frame(
                frame.engine,
                variables,
                parent=frame,
                writes_up=False,
                shared=frozenset(self.shared),
            )
            try:
                return frame.engine.run_block(block, branch)
            finally:
                branch.release()

        return run


@dataclass
class RetryPolicy:
    predicate: Compiled | None
    max_retries: Compiled
    backoff: Compiled
    policy: Compiled | None = None  # retry: ${http.default_retry}


@dataclass
class TryStep(Step):
    body: Step | None = None
    retry: RetryPolicy | None = None
    except_as: str | None = None
    except_block: Block | None = None

    def execute(self, frame: Frame) -> Next | Return | None:
        engine = frame.engine
        attempt = 0
        while True:
            try:
                return engine.execute(self.body, frame)
            except WorkflowRaise as exc:
                if not exc.catchable:  # a resource limit: the execution fails
                    raise
                if self.retry is not None and engine.should_retry(
                    self.retry, exc.value, attempt, frame
                ):
                    attempt += 1
                    continue
                if self.except_block is None:
                    raise
                # What the except block creates, its error map included, is its own (as a
                # `for` body's); it updates the variables it finds outside.
                names = {self.except_as: exc.value} if self.except_as else {}
                handler = Frame(engine, names, parent=frame)
                try:
                    return engine.run_block(self.except_block, handler)
                finally:
                    handler.release()


@dataclass
class Subworkflow:
    name: str
    params: list[tuple[str, bool, Compiled | None]]  # name, required, default
    block: Block


@dataclass
class Workflow:
    subworkflows: dict[str, Subworkflow]
    source: str

    @property
    def main(self) -> Subworkflow:
        return self.subworkflows["main"]


# --- assignment -----------------------------------------------------------------------------
def assign(frame: Frame, target: Target, value: Any) -> None:
    if not target.path:
        frame.assign(target.root, value)
        return
    owner = frame.owner(target.root) or frame  # a branch changes a parent's map only if shared
    container = frame.get(target.root)
    keys = [key(frame) for key in target.path]
    for key in keys[:-1]:
        if isinstance(container, dict) and isinstance(key, str) and key not in container:
            container[key] = {}  # nested keys are created on the way, as the service does
        container = get_key(container, key)
    last = keys[-1]
    if isinstance(container, dict):
        if not isinstance(last, str):
            raise error("TypeError", f"map keys are strings, got {type_name(last)}")
        container[last] = value
    elif isinstance(container, list):
        get_key(container, last)  # IndexError / TypeError as for reads
        container[last] = value
    else:
        raise error("TypeError", f"cannot assign into a {type_name(container)}")
    owner.measure(target.root)
