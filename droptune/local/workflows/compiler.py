"""Compiling a workflow document into steps: structure checked, expressions parsed, every
`next` target resolved, the limits a deployment checks applied (limits.py), all before anything
runs, each error with its file and line."""

from __future__ import annotations

from typing import Any

from droptune.local.workflows import stdlib
from droptune.local.workflows.errors import WorkflowRaise, WorkflowSyntaxError
from droptune.local.workflows.expressions import (
    Compiled,
    compile_expression,
    compile_target,
    map_builder,
    type_name,
)
from droptune.local.workflows.limits import (
    MAX_ASSIGNMENTS,
    MAX_BRANCHES,
    MAX_CONDITIONS,
    MAX_EXPRESSION_LENGTH,
    MAX_SOURCE_BYTES,
)
from droptune.local.workflows.loader import LineMap, line_of, load_text, read_text
from droptune.local.workflows.steps import (
    AssignStep,
    Block,
    Branch,
    CallStep,
    Condition,
    ForStep,
    JumpStep,
    ParallelStep,
    RaiseStep,
    RetryPolicy,
    ReturnStep,
    Step,
    StepsStep,
    Subworkflow,
    SwitchStep,
    Target,
    TryStep,
    Workflow,
)

STEP_KINDS = ("assign", "call", "switch", "for", "parallel", "try", "raise", "return", "steps")


# --- compiling values ---------------------------------------------------------------------------
def is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("${") and value.endswith("}")


def compile_value(value: Any, where: str) -> Compiled:
    """A YAML value with `${...}` anywhere inside (values and map keys) as one function."""
    if is_expression(value):
        text = value[2:-1]
        if len(text) > MAX_EXPRESSION_LENGTH:
            raise WorkflowSyntaxError(
                f"{where}: an expression has at most {MAX_EXPRESSION_LENGTH} characters, this one "
                f"{len(text)}: compute it in steps, assigning its parts to variables first"
            )
        try:
            compiled = compile_expression(text)
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
        return map_builder(
            [(compile_value(k, where), compile_value(v, where)) for k, v in value.items()]
        )
    if isinstance(value, list):
        items_ = [compile_value(v, where) for v in value]
        return lambda scope: [item(scope) for item in items_]
    return lambda scope: value


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
            return JumpStep(name, line, jump)
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
        if len(items) > MAX_CONDITIONS:
            raise self.fail(body, f"step {name!r}: at most {MAX_CONDITIONS} conditions per switch")
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
        if "next" in spec:  # Cloud Workflows refuses it there ("unexpected entry")
            raise self.fail(spec, f"step {name!r}: next goes beside try:, not inside it")
        self._anonymous += 1
        inner = self.step(f"{name}.try", _with_line(spec, spec))
        step = TryStep(name, line, body=inner)
        if "retry" in body:
            step.retry = self.retry(body["retry"], name, where)
        if "except" in body:
            spec_except = body["except"]
            if not isinstance(spec_except, dict) or not {"as", "steps"} >= spec_except.keys():
                raise self.fail(
                    body, f"step {name!r}: except takes `as:` and `steps:` (both optional)"
                )
            step.except_as = spec_except.get("as")
            steps = spec_except.get("steps") or []  # none: the error is caught and dropped
            step.except_block = self.block(steps, f"except of {name!r}") if steps else Block([])
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
            for child, walled, loop in _children(step):
                inner = loop or (in_loop and not walled)
                self.check_jumps(child, [] if walled else scopes, in_loop=inner)


def _children(step: Step) -> list[tuple[Block, bool, bool]]:
    """Nested blocks, whether jumps cannot leave each (a loop body, a parallel branch) and
    whether it is a loop body (where `break` and `continue` go)."""
    if isinstance(step, StepsStep):
        return [(step.block, False, False)]
    if isinstance(step, ForStep):
        return [(step.block, True, True)]
    if isinstance(step, ParallelStep):
        if step.loop:
            return [(step.loop.block, True, True)]
        return [(b.block, True, False) for b in step.branches]
    if isinstance(step, TryStep):
        return (_children(step.body) if step.body else []) + (
            [(step.except_block, False, False)] if step.except_block else []
        )
    if isinstance(step, SwitchStep):
        return [child for c in step.conditions if c.body for child in _children(c.body)]
    return []


def _with_line(mapping: dict, source: Any) -> dict:
    out = LineMap(mapping)
    out.line = line_of(source) or 0
    return out


def compile_workflow(document: Any, source: str = "<workflow>") -> Workflow:
    return _Compiler(source).workflow(document)


def load_workflow(path: str) -> Workflow:
    return parse_workflow(read_text(path), path)


def parse_workflow(text: str, source: str = "<workflow>") -> Workflow:
    """Compile a workflow's source, which may be as large as the service deploys."""
    size = len(text.encode("utf-8"))
    if size > MAX_SOURCE_BYTES:
        raise WorkflowSyntaxError(
            f"{source}: {size:,} bytes; a workflow's source has at most {MAX_SOURCE_BYTES:,} "
            "(128 KB): move data out of it (read it at run time) or split it into workflows"
        )
    return compile_workflow(load_text(text, source), source)
