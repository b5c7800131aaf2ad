"""Running a workflow: steps, scopes, jumps, errors, retries, loops and parallel branches.

A workflow file is compiled once (`compile_workflow`): every step becomes a small object that
knows its kind, its line and its compiled expressions, and every `next` target is checked.
`Engine.run(argument)` then executes `main` and returns an `Execution` with the result or the
unhandled error and a record of each step (Workflows bills per step; tests count them).

Semantics follow the Workflows syntax reference:
- variables live in the (sub)workflow that assigns them; a `for` body sees them and updates
  them, and what it creates itself (the loop variables included) is gone after the loop;
- a `parallel` branch reads its parent's variables, writes only those listed in `shared`,
  and keeps what else it creates to itself; with the only policy the service has,
  `continueAll`, every branch runs to its end and unhandled branch errors are raised
  together afterwards as an `UnhandledBranchError`;
- `next` jumps within the block or to an enclosing block; `break`/`continue` act on the
  innermost `for`; `end` stops the current (sub)workflow, which then returns null;
- errors are maps with `message` and `tags` (or whatever `raise` raised); `try`/`retry`/
  `except` catch them, and retries wait (on the engine's clock) by the backoff policy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from droptune.local.workflows import stdlib
from droptune.local.workflows.errors import WorkflowRaise, WorkflowSyntaxError, error
from droptune.local.workflows.expressions import (
    Compiled,
    Namespace,
    compile_expression,
    compile_target,
    get_key,
    type_name,
)
from droptune.local.workflows.loader import line_of, load_file, load_text

# Limits as droptune applies them; the service publishes its own on its quotas page.
MAX_STEPS = 100_000
MAX_CALL_DEPTH = 20
MAX_ASSIGNMENTS = 50
MAX_BRANCHES = 10
MAX_CONCURRENCY = 20
MAX_BRANCH_ERRORS = 100  # branch errors kept in an UnhandledBranchError (`truncated` beyond)
MODULES = frozenset(
    {
        "sys",
        "http",
        "text",
        "json",
        "base64",
        "map",
        "list",
        "time",
        "math",
        "retry",
        "uuid",
        "googleapis",
        "events",
    }
)
STEP_KINDS = ("assign", "call", "switch", "for", "parallel", "try", "raise", "return", "steps")
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


END, BREAK, CONTINUE = Next("end"), Next("break"), Next("continue")


# --- scopes ---------------------------------------------------------------------------------
class Frame:
    """Variables of one (sub)workflow call, `for` body or parallel branch.

    Implements the `Scope` protocol of the expression compiler (`get`, `call`).
    """

    __slots__ = ("engine", "parent", "shared", "variables", "writes_up")

    def __init__(
        self,
        engine: Engine,
        variables: dict[str, Any] | None = None,
        parent: Frame | None = None,
        writes_up: bool = True,
        shared: frozenset[str] = frozenset(),
    ) -> None:
        self.engine, self.parent = engine, parent
        self.variables = variables if variables is not None else {}
        self.writes_up, self.shared = writes_up, shared

    def get(self, name: str) -> Any:
        frame: Frame | None = self
        while frame is not None:
            if name in frame.variables:
                return frame.variables[name]
            frame = frame.parent
        if name in MODULES:
            return Namespace(name, self.engine.library_value)
        if name in self.engine.workflow.subworkflows:  # predicate: ${my_subworkflow}
            return stdlib.FunctionRef(name)
        raise error("KeyError", f"variable not defined: {name}")

    def call(self, name: str, args: list[Any]) -> Any:
        return self.engine.call(name, args, {}, self)

    def owner(self, name: str) -> Frame | None:
        """The frame an assignment to `name` writes to (None: a new variable here)."""
        frame: Frame | None = self
        while frame is not None:
            if name in frame.variables:
                return frame
            if frame.parent is not None and not frame.writes_up and name not in frame.shared:
                if frame.parent.has(name):
                    raise error(
                        "TypeError",
                        f"{name} belongs to the parallel step's parent: list it in `shared` to assign it in a branch",
                    )
                return None
            frame = frame.parent
        return None

    def has(self, name: str) -> bool:
        frame: Frame | None = self
        while frame is not None:
            if name in frame.variables:
                return True
            frame = frame.parent
        return False

    def assign(self, name: str, value: Any) -> None:
        owner = self.owner(name) or self
        if owner is not self and self.engine.lock is not None:
            with self.engine.lock:
                owner.variables[name] = value
        else:
            owner.variables[name] = value


def copy_value(value: Any) -> Any:
    """Values are copied on assignment: a later change to one variable never shows in another."""
    if isinstance(value, dict):
        return {k: copy_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_value(v) for v in value]
    return value


# --- compiling values ---------------------------------------------------------------------------
def is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("${") and value.endswith("}")


def compile_value(value: Any, where: str) -> Compiled:
    """A YAML value with `${...}` anywhere inside (values and map keys) as one function."""
    if is_expression(value):
        try:
            compiled = compile_expression(value[2:-1])
        except WorkflowSyntaxError as exc:
            raise WorkflowSyntaxError(f"{where}: {exc}") from None

        def evaluate(scope: Any) -> Any:
            try:
                return compiled(scope)
            except WorkflowRaise as exc:
                if exc.expression is None:
                    exc.expression = value
                raise

        return evaluate
    if isinstance(value, dict):
        items = [(compile_value(k, where), compile_value(v, where)) for k, v in value.items()]

        def build_map(scope: Any) -> dict[str, Any]:
            out = {}
            for key, item in items:
                k = key(scope)
                if not isinstance(k, str):
                    raise error("TypeError", f"map keys are strings, got {type_name(k)}")
                out[k] = item(scope)
            return out

        return build_map
    if isinstance(value, list):
        items_ = [compile_value(v, where) for v in value]
        return lambda scope: [item(scope) for item in items_]
    return lambda scope: value


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
                assign(frame, target, copy_value(value(frame)))
            return
        with lock:  # in parallel branches an assign step is atomic, reads and writes alike
            for target, value in self.assignments:
                assign(frame, target, copy_value(value(frame)))


@dataclass
class CallStep(Step):
    function: str = ""
    args: dict[str, Compiled] = field(default_factory=dict)
    result: str | None = None

    def execute(self, frame: Frame) -> None:
        kwargs = {name: value(frame) for name, value in self.args.items()}
        value = frame.engine.call(self.function, [], kwargs, frame)
        if self.result:
            frame.assign(self.result, copy_value(value))


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

    def execute(self, frame: Frame) -> Next | Return | None:
        for i, item in enumerate(self.sequence(frame)):
            body = Frame(frame.engine, {}, parent=frame)
            if self.value_var:
                body.variables[self.value_var] = item
            if self.index_var:
                body.variables[self.index_var] = i
            signal = frame.engine.run_block(self.block, body)
            if signal is BREAK or (isinstance(signal, Next) and signal.target == "break"):
                break
            if signal is CONTINUE or (isinstance(signal, Next) and signal.target == "continue"):
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
        shared = frozenset(self.shared)
        if self.loop is not None:
            loop = self.loop
            for i, item in enumerate(loop.sequence(frame)):
                variables = {}
                if loop.value_var:
                    variables[loop.value_var] = item
                if loop.index_var:
                    variables[loop.index_var] = i
                branch = Frame(engine, variables, parent=frame, writes_up=False, shared=shared)
                jobs.append((str(i), lambda b=branch: engine.run_block(loop.block, b)))
        else:
            for branch_def in self.branches:
                branch = Frame(engine, {}, parent=frame, writes_up=False, shared=shared)
                jobs.append(
                    (branch_def.name, lambda b=branch, d=branch_def: engine.run_block(d.block, b))
                )
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
                if self.retry is not None and engine.should_retry(
                    self.retry, exc.value, attempt, frame
                ):
                    attempt += 1
                    continue
                if self.except_block is None:
                    raise
                if self.except_as:
                    frame.assign(self.except_as, exc.value)
                return engine.run_block(self.except_block, frame)


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


# --- compiling a workflow -------------------------------------------------------------------
class _Compiler:
    def __init__(self, source: str) -> None:
        self.source = source
        self._anonymous = 0

    def fail(self, node: Any, message: str) -> WorkflowSyntaxError:
        line = line_of(node)
        where = f"{self.source}:{line}" if line else self.source
        return WorkflowSyntaxError(f"{where}: {message}")

    def workflow(self, document: Any) -> Workflow:
        if isinstance(document, list):
            document = {"main": {"steps": document}}
        if not isinstance(document, dict) or not document:
            raise self.fail(
                document, "a workflow is a list of steps, or a map with `main` and subworkflows"
            )
        if "main" not in document:
            raise self.fail(
                document,
                "no `main` workflow: add `main:` with `steps:` (or make the file a list of steps)",
            )
        subs = {name: self.subworkflow(name, body) for name, body in document.items()}
        return Workflow(subs, self.source)

    def subworkflow(self, name: str, body: Any) -> Subworkflow:
        if not isinstance(body, dict) or "steps" not in body:
            raise self.fail(body, f"subworkflow {name!r} needs `steps:` (and optionally `params:`)")
        unknown = set(body) - {"params", "steps"}
        if unknown:
            raise self.fail(
                body,
                f"subworkflow {name!r}: unknown key(s) {sorted(unknown)}; expected params, steps",
            )
        params = []
        for param in body.get("params") or []:
            if isinstance(param, str):
                params.append((param, True, None))
            elif isinstance(param, dict) and len(param) == 1:
                ((pname, default),) = param.items()
                params.append((pname, False, compile_value(default, f"params of {name}")))
            else:
                raise self.fail(
                    body,
                    f"subworkflow {name!r}: a param is a name or `name: default`, got {param!r}",
                )
        if name == "main" and len(params) > 1:
            raise self.fail(body, "`main` takes at most one param: the execution's argument")
        block = self.block(body["steps"], f"subworkflow {name!r}")
        self.check_jumps(block, [])
        return Subworkflow(name, params, block)

    def block(self, steps: Any, where: str) -> Block:
        if not isinstance(steps, list) or not steps:
            raise self.fail(
                steps, f"{where}: `steps` must be a non-empty list of `- name: {{...}}` entries"
            )
        compiled, seen = [], set()
        for entry in steps:
            if not isinstance(entry, dict) or len(entry) != 1:
                raise self.fail(
                    entry if isinstance(entry, dict) else steps,
                    f"{where}: each step is a map with exactly one key, the step name",
                )
            ((name, body),) = entry.items()
            if name in seen:
                raise self.fail(entry, f"{where}: two steps are named {name!r}")
            seen.add(name)
            compiled.append(self.step(name, body))
        return Block(compiled)

    def step(self, name: str, body: Any) -> Step:
        if not isinstance(body, dict):
            raise self.fail(
                body,
                f"step {name!r}: expected a map such as `assign:` or `call:`, got {type_name(body)}",
            )
        line = line_of(body)
        kinds = [k for k in STEP_KINDS if k in body]
        allowed = (
            {"next"}
            | set(kinds)
            | ({"args", "result"} if "call" in body else set())
            | ({"retry", "except"} if "try" in body else set())
        )
        unknown = set(body) - allowed
        if unknown:
            raise self.fail(body, f"step {name!r}: unknown key(s) {sorted(unknown)}")
        if len(kinds) > 1:
            raise self.fail(
                body, f"step {name!r}: one step does one thing; found {', '.join(kinds)}"
            )
        jump = body.get("next")
        if jump is not None and not isinstance(jump, str):
            raise self.fail(
                body, f"step {name!r}: next must be a step name, end, break or continue"
            )
        where = f"{self.source}:{line} step {name!r}"
        kind = kinds[0] if kinds else None
        if kind is None:
            if jump is None:
                raise self.fail(
                    body,
                    f"step {name!r} does nothing: give it assign, call, switch, for, parallel, try, raise, return, steps or next",
                )
            return Step(name, line, jump)
        build = getattr(self, f"_{kind}")
        step = build(name, line, body, where)
        step.next = jump
        return step

    def _assign(self, name: str, line: int | None, body: dict, where: str) -> AssignStep:
        items = body["assign"]
        if not isinstance(items, list) or not items:
            raise self.fail(body, f"step {name!r}: assign takes a list of `- variable: value`")
        if len(items) > MAX_ASSIGNMENTS:
            raise self.fail(body, f"step {name!r}: at most {MAX_ASSIGNMENTS} assignments per step")
        assignments = []
        for item in items:
            if not isinstance(item, dict) or len(item) != 1:
                raise self.fail(items, f"step {name!r}: each assignment is `- variable: value`")
            ((target, value),) = item.items()
            assignments.append((self.target(target, where), compile_value(value, where)))
        return AssignStep(name, line, assignments=assignments)

    def target(self, text: Any, where: str) -> Target:
        try:
            root, path = compile_target(str(text))
        except WorkflowSyntaxError as exc:
            raise WorkflowSyntaxError(f"{where}: {exc}") from None
        return Target(root, path)

    def _call(self, name: str, line: int | None, body: dict, where: str) -> CallStep:
        function = body["call"]
        if not isinstance(function, str) or not function:
            raise self.fail(body, f"step {name!r}: call takes a function or subworkflow name")
        args = body.get("args") or {}
        if not isinstance(args, dict):
            raise self.fail(body, f"step {name!r}: args must be a map of argument names to values")
        result = body.get("result")
        if result is not None and not isinstance(result, str):
            raise self.fail(body, f"step {name!r}: result must be a variable name")
        compiled = {str(k): compile_value(v, where) for k, v in args.items()}
        return CallStep(name, line, function=function, args=compiled, result=result)

    def _return(self, name: str, line: int | None, body: dict, where: str) -> ReturnStep:
        return ReturnStep(name, line, value=compile_value(body["return"], where))

    def _raise(self, name: str, line: int | None, body: dict, where: str) -> RaiseStep:
        return RaiseStep(name, line, value=compile_value(body["raise"], where))

    def _steps(self, name: str, line: int | None, body: dict, where: str) -> StepsStep:
        return StepsStep(name, line, block=self.block(body["steps"], f"step {name!r}"))

    def _switch(self, name: str, line: int | None, body: dict, where: str) -> SwitchStep:
        items = body["switch"]
        if not isinstance(items, list) or not items:
            raise self.fail(
                body, f"step {name!r}: switch takes a list of `- condition: ...` entries"
            )
        conditions = []
        for item in items:
            if not isinstance(item, dict) or "condition" not in item:
                raise self.fail(items, f"step {name!r}: each switch entry needs `condition:`")
            rest = {k: v for k, v in item.items() if k not in ("condition", "next")}
            inner = None
            if rest:
                self._anonymous += 1
                inner = self.step(f"{name}.condition{self._anonymous}", _with_line(rest, item))
            jump = item.get("next")
            conditions.append(
                Condition(compile_value(item["condition"], where), line_of(item), jump, inner)
            )
        return SwitchStep(name, line, conditions=conditions)

    def _for(self, name: str, line: int | None, body: dict, where: str) -> ForStep:
        spec = body["for"]
        if not isinstance(spec, dict) or "steps" not in spec:
            raise self.fail(
                body, f"step {name!r}: for needs `value:` and `in:` (or `range:`) and `steps:`"
            )
        unknown = set(spec) - {"value", "index", "in", "range", "steps"}
        if unknown:
            raise self.fail(spec, f"step {name!r}: unknown key(s) in for: {sorted(unknown)}")
        if ("in" in spec) == ("range" in spec):
            raise self.fail(spec, f"step {name!r}: for takes exactly one of `in:` and `range:`")
        if "range" in spec and "value" not in spec:
            raise self.fail(spec, f"step {name!r}: a range loop needs `value:`")
        return ForStep(
            name,
            line,
            value_var=spec.get("value"),
            index_var=spec.get("index"),
            items=compile_value(spec["in"], where) if "in" in spec else None,
            range_=compile_value(spec["range"], where) if "range" in spec else None,
            block=self.block(spec["steps"], f"step {name!r}"),
        )

    def _parallel(self, name: str, line: int | None, body: dict, where: str) -> ParallelStep:
        spec = body["parallel"]
        if not isinstance(spec, dict) or ("branches" in spec) == ("for" in spec):
            raise self.fail(
                body, f"step {name!r}: parallel takes exactly one of `branches:` and `for:`"
            )
        unknown = set(spec) - {"branches", "for", "shared", "exception_policy", "concurrency_limit"}
        if unknown:
            raise self.fail(spec, f"step {name!r}: unknown key(s) in parallel: {sorted(unknown)}")
        policy = spec.get("exception_policy", "continueAll")
        if policy != "continueAll":
            raise self.fail(
                spec, f"step {name!r}: exception_policy {policy!r}: the only policy is continueAll"
            )
        shared = spec.get("shared") or []
        if not isinstance(shared, list) or not all(isinstance(s, str) for s in shared):
            raise self.fail(spec, f"step {name!r}: shared is a list of variable names")
        step = ParallelStep(name, line, shared=tuple(shared))
        if "concurrency_limit" in spec:
            step.concurrency = compile_value(spec["concurrency_limit"], where)
        if "for" in spec:
            step.loop = self._for(name, line, {"for": spec["for"]}, where)
            return step
        branches = spec["branches"]
        if not isinstance(branches, list) or not 2 <= len(branches) <= MAX_BRANCHES:
            raise self.fail(spec, f"step {name!r}: parallel takes 2 to {MAX_BRANCHES} branches")
        for entry in branches:
            if not isinstance(entry, dict) or len(entry) != 1:
                raise self.fail(
                    branches, f"step {name!r}: each branch is `- name: {{steps: [...]}}`"
                )
            ((branch_name, branch_body),) = entry.items()
            if not isinstance(branch_body, dict) or "steps" not in branch_body:
                raise self.fail(entry, f"branch {branch_name!r} needs `steps:`")
            step.branches.append(
                Branch(branch_name, self.block(branch_body["steps"], f"branch {branch_name!r}"))
            )
        return step

    def _try(self, name: str, line: int | None, body: dict, where: str) -> TryStep:
        spec = body["try"]
        if not isinstance(spec, dict):
            raise self.fail(
                body,
                f"step {name!r}: try takes `steps:` or a single step's keys (e.g. call, args, result)",
            )
        self._anonymous += 1
        inner = self.step(f"{name}.try", _with_line(spec, spec))
        step = TryStep(name, line, body=inner)
        if "retry" in body:
            step.retry = self.retry(body["retry"], name, where)
        if "except" in body:
            spec_except = body["except"]
            if not isinstance(spec_except, dict) or "steps" not in spec_except:
                raise self.fail(
                    body, f"step {name!r}: except needs `steps:` (and optionally `as:`)"
                )
            step.except_as = spec_except.get("as")
            step.except_block = self.block(spec_except["steps"], f"except of {name!r}")
        if step.retry is None and step.except_block is None:
            raise self.fail(body, f"step {name!r}: try needs `retry:` or `except:`")
        return step

    def retry(self, spec: Any, name: str, where: str) -> RetryPolicy:
        if is_expression(spec):
            policy = compile_value(spec, where)
            return RetryPolicy(None, lambda s: None, lambda s: None, policy=policy)
        if not isinstance(spec, dict) or "predicate" not in spec or "max_retries" not in spec:
            raise self.fail(
                spec,
                f"step {name!r}: retry needs predicate and max_retries (and backoff), or a policy such as ${{http.default_retry}}",
            )
        backoff = spec.get("backoff", stdlib.DEFAULT_BACKOFF)
        predicate = spec["predicate"]
        compiled_predicate = (
            compile_value(predicate, where)
            if is_expression(predicate)
            else (lambda s, p=predicate: stdlib.FunctionRef(p))
        )
        return RetryPolicy(
            compiled_predicate,
            compile_value(spec["max_retries"], where),
            compile_value(backoff, where),
        )

    def check_jumps(self, block: Block, enclosing: list[set[str]], in_loop: bool = False) -> None:
        names = set(block.index)
        scopes = [names, *enclosing]
        for step in block.steps:
            targets = [step.next] if step.next else []
            if isinstance(step, SwitchStep):
                targets += [c.jump for c in step.conditions if c.jump]
            for target in targets:
                if target in ("end",):
                    continue
                if target in ("break", "continue"):
                    if not in_loop:
                        raise WorkflowSyntaxError(
                            f"{self.source}:{step.line}: step {step.name!r}: next: {target} outside a for loop"
                        )
                    continue
                if not any(target in scope for scope in scopes):
                    raise WorkflowSyntaxError(
                        f"{self.source}:{step.line}: step {step.name!r}: next: {target!r} names no step in this block or an enclosing one"
                    )
            for child, loop in _children(step):
                self.check_jumps(child, [] if loop else scopes, in_loop=loop or in_loop)


def _children(step: Step) -> list[tuple[Block, bool]]:
    """Nested blocks and whether each is a loop body (jumps cannot leave a loop body)."""
    if isinstance(step, StepsStep):
        return [(step.block, False)]
    if isinstance(step, ForStep):
        return [(step.block, True)]
    if isinstance(step, ParallelStep):
        return [(step.loop.block, True)] if step.loop else [(b.block, True) for b in step.branches]
    if isinstance(step, TryStep):
        out = [(block, False) for block, _ in _children(step.body)] if step.body else []
        return out + ([(step.except_block, False)] if step.except_block else [])
    if isinstance(step, SwitchStep):
        return [pair for c in step.conditions if c.body for pair in _children(c.body)]
    return []


def _with_line(mapping: dict, source: Any) -> dict:
    from droptune.local.workflows.loader import LineMap

    out = LineMap(mapping)
    out.line = line_of(source) or 0
    return out


def compile_workflow(document: Any, source: str = "<workflow>") -> Workflow:
    return _Compiler(source).workflow(document)


def load_workflow(path: str) -> Workflow:
    return compile_workflow(load_file(path), path)


def parse_workflow(text: str, source: str = "<workflow>") -> Workflow:
    return compile_workflow(load_text(text, source), source)


# --- assignment -----------------------------------------------------------------------------
def assign(frame: Frame, target: Target, value: Any) -> None:
    if not target.path:
        frame.assign(target.root, value)
        return
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


# --- the engine -----------------------------------------------------------------------------
@dataclass
class StepRecord:
    step: str
    line: int | None
    started: float
    ended: float
    error: Any = None


@dataclass
class Execution:
    state: str  # SUCCEEDED | FAILED
    result: Any = None
    error: Any = None
    steps: list[StepRecord] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    context: str = ""  # where an unhandled error happened: step, line, routine, expression

    @property
    def step_count(self) -> int:
        return len(self.steps)


class Engine:
    """Runs one compiled workflow. `call_hooks` adds functions by name (connectors, http)."""

    def __init__(
        self,
        workflow: Workflow,
        runtime: stdlib.Runtime | None = None,
        call_hooks: dict[str, Callable[..., Any]] | None = None,
        max_steps: int = MAX_STEPS,
    ) -> None:
        self.workflow = workflow
        self.runtime = runtime or stdlib.Runtime()
        self.functions = {**stdlib.functions(self.runtime), **(call_hooks or {})}
        self.max_steps = max_steps
        self.records: list[StepRecord] = []
        self.lock: threading.RLock | None = None
        self._depth = threading.local()

    # --- entry --------------------------------------------------------------------------
    def run(self, argument: Any = None) -> Execution:
        self.records = []
        try:
            result = self.call_subworkflow(
                self.workflow.main, [argument] if self.workflow.main.params else [], {}
            )
        except WorkflowRaise as exc:
            return Execution(
                "FAILED",
                error=exc.value,
                steps=self.records,
                logs=self.runtime.logs,
                context=exc.context,
            )
        return Execution("SUCCEEDED", result=result, steps=self.records, logs=self.runtime.logs)

    # --- blocks and steps -----------------------------------------------------------------
    def run_block(self, block: Block, frame: Frame) -> Next | Return | None:
        steps, index, i = block.steps, block.index, 0
        while i < len(steps):
            step = steps[i]
            signal = self.execute(step, frame)
            if signal is None:
                if step.next is None:
                    i += 1
                    continue
                signal = Next(step.next)
            if isinstance(signal, Next):
                j = index.get(signal.target)
                if j is not None:
                    i = j
                    continue
            return signal
        return None

    def execute(self, step: Step, frame: Frame) -> Next | Return | None:
        if len(self.records) >= self.max_steps:
            raise error("ResourceLimitError", f"more than {self.max_steps} steps in one execution")
        record = StepRecord(step.name, step.line, time.perf_counter(), 0.0)
        self.records.append(record)
        try:
            return step.execute(frame)
        except WorkflowRaise as exc:
            record.error = exc.value
            if exc.step is None:
                exc.step = step.where()
            raise
        finally:
            record.ended = time.perf_counter()

    # --- calls ----------------------------------------------------------------------------
    def call(self, name: str, args: list[Any], kwargs: dict[str, Any], frame: Frame) -> Any:
        sub = self.workflow.subworkflows.get(name)
        if sub is not None and name != "main":
            return self.call_subworkflow(sub, args, kwargs)
        function = self.functions.get(name)
        if function is None:
            hint = (
                " (connectors need a local server: see droptune local)"
                if name.startswith("googleapis.")
                else ""
            )
            raise error("KeyError", f"no function or subworkflow named {name}{hint}")
        try:
            return function(*args, **kwargs)
        except TypeError as exc:  # wrong argument names or count: a user error, said plainly
            raise error("TypeError", f"{name}: {exc}") from None

    def call_subworkflow(self, sub: Subworkflow, args: list[Any], kwargs: dict[str, Any]) -> Any:
        depth = getattr(self._depth, "value", 0)
        if depth >= MAX_CALL_DEPTH:
            raise error(
                "RecursionError",
                f"maximum call depth ({MAX_CALL_DEPTH}) exceeded calling {sub.name}",
            )
        names = [p[0] for p in sub.params]
        if len(args) > len(names):
            raise error("TypeError", f"{sub.name} takes {len(names)} argument(s), got {len(args)}")
        unknown = set(kwargs) - set(names)
        if unknown:
            raise error("TypeError", f"{sub.name}: unexpected argument(s) {sorted(unknown)}")
        frame = Frame(self)
        values = dict(zip(names, args, strict=False)) | kwargs
        for pname, required, default_value in sub.params:
            if pname in values:
                frame.variables[pname] = copy_value(values[pname])
            elif required and sub.name != "main":
                raise error("TypeError", f"{sub.name}: missing argument {pname!r}")
            else:
                frame.variables[pname] = default_value(frame) if default_value else None
        self._depth.value = depth + 1
        try:
            signal = self.run_block(sub.block, frame)
        except WorkflowRaise as exc:
            if exc.routine is None:
                exc.routine = sub.name
            raise
        finally:
            self._depth.value = depth
        if isinstance(signal, Return):
            return signal.value
        if isinstance(signal, Next) and signal.target in ("break", "continue"):
            raise error("SystemError", f"next: {signal.target} outside a for loop")
        return None

    def library_value(self, name: str) -> Any:
        if name in stdlib.CONSTANTS:
            return copy_value(stdlib.CONSTANTS[name])
        if name in self.functions or name in self.workflow.subworkflows:
            return stdlib.FunctionRef(name)
        return Namespace(name, self.library_value)

    # --- retries and branches -------------------------------------------------------------
    def should_retry(self, policy: RetryPolicy, value: Any, attempt: int, frame: Frame) -> bool:
        if policy.policy is not None:
            spec = policy.policy(frame)
            if not isinstance(spec, dict):
                raise error("TypeError", f"retry policy must be a map, got {type_name(spec)}")
            predicate, max_retries, backoff = (
                spec.get("predicate"),
                spec.get("max_retries", 0),
                spec.get("backoff", stdlib.DEFAULT_BACKOFF),
            )
        else:
            predicate = policy.predicate(frame) if policy.predicate else None
            max_retries, backoff = policy.max_retries(frame), policy.backoff(frame)
        if attempt >= max_retries:
            return False
        if not isinstance(predicate, stdlib.FunctionRef):
            raise error(
                "TypeError",
                f"retry predicate must be a function or subworkflow, got {type_name(predicate)}",
            )
        verdict = self.call(predicate.name, [value], {}, frame)
        if not isinstance(verdict, bool):
            raise error(
                "TypeError",
                f"retry predicate {predicate.name} must return a boolean, got {type_name(verdict)}",
            )
        if not verdict:
            return False
        delay = backoff["initial_delay"] * backoff["multiplier"] ** attempt
        self.runtime.clock.sleep(min(delay, backoff["max_delay"]))
        return True

    def run_concurrently(
        self, jobs: list[tuple[str, Callable[[], Any]]], limit: int
    ) -> list[tuple[str, Any]]:
        """Run branch jobs; return (branch id, error) of those that raised, in branch order."""
        outer_lock = self.lock
        self.lock = outer_lock or threading.RLock()
        depth = getattr(self._depth, "value", 0)
        failures: dict[int, tuple[str, Any]] = {}

        def run(i: int, branch_id: str, job: Callable[[], Any]) -> None:
            self._depth.value = depth
            try:
                signal = job()
                if isinstance(signal, Return):
                    raise error("SystemError", "return is not allowed inside a parallel branch")
            except WorkflowRaise as exc:
                failures[i] = (branch_id, exc.value)

        try:
            with ThreadPoolExecutor(max_workers=limit) as pool:
                for future in [pool.submit(run, i, bid, job) for i, (bid, job) in enumerate(jobs)]:
                    future.result()
        finally:
            self.lock = outer_lock
        return [failures[i] for i in sorted(failures)]
