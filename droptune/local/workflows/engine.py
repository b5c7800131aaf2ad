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
  `except` catch them, and retries wait (on the engine's clock) by the backoff policy;
- the service's limits hold (limits.py): steps, call depth, parallel nesting, and the memory
  of all variables alive at once, which each assignment updates (scope.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from droptune.local.workflows import http, stdlib
from droptune.local.workflows.compiler import compile_workflow, load_workflow, parse_workflow
from droptune.local.workflows.connectors import Connectors
from droptune.local.workflows.errors import WorkflowRaise, error, from_python
from droptune.local.workflows.expressions import Namespace, type_name
from droptune.local.workflows.limits import (
    MAX_CALL_DEPTH,
    MAX_MEMORY_BYTES,
    MAX_PARALLEL_NESTING,
    MAX_STEPS,
    MEMORY_EXCEEDED,
    exceeded,
    kilobytes,
)
from droptune.local.workflows.loader import plain
from droptune.local.workflows.scope import Frame
from droptune.local.workflows.steps import (
    Block,
    Next,
    RetryPolicy,
    Return,
    Step,
    Subworkflow,
    Workflow,
)

__all__ = ["Engine", "Execution", "Frame", "compile_workflow", "load_workflow", "parse_workflow"]


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


# http.default_retry and its predicates decide; only the requests wait.
BLOCKING = frozenset(
    {"sys.sleep", "sys.log", "http.request", *(f"http.{m.lower()}" for m in http.METHODS)}
)
BLOCKING_PREFIXES = ("googleapis.", "events.", "experimental.executions.")


def is_blocking(name: str) -> bool:
    """Whether a call waits on the world (a request, a callback, the clock, the log)."""
    return name in BLOCKING or name.startswith(BLOCKING_PREFIXES)


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
        session = requests.Session()
        self.connectors = Connectors(self.runtime, session)
        self.functions = {
            **stdlib.functions(self.runtime),
            **http.functions(session),
            **(call_hooks or {}),
        }
        self.max_steps = max_steps
        self.records: list[StepRecord] = []
        self.lock: threading.RLock | None = None
        self.memory = 0  # bytes of the variables of all live frames (limits.size_of)
        self._depth = threading.local()
        self._nesting = threading.local()  # parallel steps around this thread's branch
        self._expressions = threading.local()  # expression calls under way on this thread

    # --- entry --------------------------------------------------------------------------
    def run(self, argument: Any = None) -> Execution:
        self.records, self.memory = [], 0
        try:
            result = self.call_subworkflow(
                self.workflow.main, [argument] if self.workflow.main.params else [], {}
            )
        except Exception as exc:  # outside any step: the arguments, a subworkflow's defaults
            failure = from_python(exc)
            return Execution(
                "FAILED",
                error=failure.value,
                steps=self.records,
                logs=self.runtime.logs,
                context=failure.context,
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
            raise exceeded(f"more than {self.max_steps} steps in one execution")
        record = StepRecord(step.name, step.line, time.perf_counter(), 0.0)
        self.records.append(record)
        try:
            return step.execute(frame)
        except Exception as exc:  # a workflow error here, never a crash of the engine
            failure = from_python(exc)
            record.error = failure.value
            if failure.step is None:
                failure.step = step.where()
            if failure is exc:
                raise
            raise failure from exc
        finally:
            record.ended = time.perf_counter()

    # --- calls ----------------------------------------------------------------------------
    def call(
        self,
        name: str,
        args: list[Any],
        kwargs: dict[str, Any],
        frame: Frame,
        in_expression: bool = False,
    ) -> Any:
        """Call a subworkflow, a library function or a connector. Cloud Workflows refuses
        blocking calls (HTTP, connectors, sys.sleep, sys.log) inside expressions; so does
        this engine, also in a subworkflow that an expression calls, so that a workflow that
        runs here cannot fail on that in the cloud."""
        depth = getattr(self._expressions, "value", 0)
        if (depth or in_expression) and is_blocking(name):
            raise error(
                "TypeError",
                f"{name} is a blocking call, which cannot run inside an expression (nor in a "
                "subworkflow an expression calls): make it a call step",
            )
        self._expressions.value = depth + in_expression
        try:
            return self._call(name, args, kwargs)
        finally:
            self._expressions.value = depth

    def _call(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        sub = self.workflow.subworkflows.get(name)
        if sub is not None and name != "main":
            return self.call_subworkflow(sub, args, kwargs)
        function = self.functions.get(name)
        if function is None and name.startswith("googleapis."):
            if args:
                raise error(
                    "TypeError", f"{name}: connectors take named arguments (call with args:)"
                )
            return self.connectors.call(name, kwargs)
        if function is None:
            raise error("KeyError", f"no function or subworkflow named {name}")
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
        frame = self.arguments_frame(sub, args, kwargs)
        self._depth.value = depth + 1
        try:
            signal = self.run_block(sub.block, frame)
        except WorkflowRaise as exc:
            if exc.routine is None:
                exc.routine = sub.name
            raise
        finally:
            self._depth.value = depth
            frame.release()
        if isinstance(signal, Return):
            return signal.value
        if isinstance(signal, Next) and signal.target in ("break", "continue"):
            raise error("SystemError", f"next: {signal.target} outside a for loop")
        return None

    def arguments_frame(self, sub: Subworkflow, args: list[Any], kwargs: dict[str, Any]) -> Frame:
        """The frame a call of `sub` starts in: its params, from the arguments or defaults."""
        names = [p[0] for p in sub.params]
        if len(args) > len(names):
            raise error("TypeError", f"{sub.name} takes {len(names)} argument(s), got {len(args)}")
        unknown = set(kwargs) - set(names)
        if unknown:
            raise error("TypeError", f"{sub.name}: unexpected argument(s) {sorted(unknown)}")
        frame = Frame(self)
        values = dict(zip(names, args, strict=False)) | kwargs
        try:
            for pname, required, default_value in sub.params:
                if pname in values:
                    frame.assign(pname, plain(values[pname]))
                elif required and sub.name != "main":
                    raise error("TypeError", f"{sub.name}: missing argument {pname!r}")
                else:
                    frame.assign(pname, default_value(frame) if default_value else None)
        except Exception:
            frame.release()
            raise
        return frame

    def use_memory(self, change: int) -> None:
        """Add `change` bytes to the variables alive; more than the limit ends the execution."""
        if self.lock is not None:
            with self.lock:
                self.memory += change
        else:
            self.memory += change
        if change > 0 and self.memory > MAX_MEMORY_BYTES:
            raise exceeded(
                MEMORY_EXCEEDED,
                f"variables take {kilobytes(self.memory)}, more than the "
                f"{kilobytes(MAX_MEMORY_BYTES)} an execution has",
            )

    def library_value(self, name: str) -> Any:
        if name in stdlib.CONSTANTS:
            return plain(stdlib.CONSTANTS[name])
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
        """Run branch jobs; return (branch id, error) of those that raised, in branch order.
        An error no except may catch (a resource limit) is raised once all have ended."""
        nesting = getattr(self._nesting, "value", 0)
        if nesting >= MAX_PARALLEL_NESTING:
            raise error(
                "ParallelNestingError",
                f"parallel steps nest at most {MAX_PARALLEL_NESTING} deep",
            )
        outer_lock = self.lock
        self.lock = outer_lock or threading.RLock()
        depth = getattr(self._depth, "value", 0)
        failures: dict[int, tuple[str, Any]] = {}
        fatal: list[WorkflowRaise] = []

        def run(i: int, branch_id: str, job: Callable[[], Any]) -> None:
            self._depth.value, self._nesting.value = depth, nesting + 1
            try:
                signal = job()
                if isinstance(signal, Return):
                    raise error("SystemError", "return is not allowed inside a parallel branch")
            except WorkflowRaise as exc:
                if not exc.catchable:
                    fatal.append(exc)
                failures[i] = (branch_id, exc.value)

        try:
            with ThreadPoolExecutor(max_workers=limit) as pool:
                for future in [pool.submit(run, i, bid, job) for i, (bid, job) in enumerate(jobs)]:
                    future.result()
        finally:
            self.lock = outer_lock
        if fatal:
            raise fatal[0]
        return [failures[i] for i in sorted(failures)]
