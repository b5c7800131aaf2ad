"""Where a workflow's variables live: one frame per (sub)workflow call, `for` body, except
block and parallel branch, chained to the frame it runs in.

A `for` body or an except block reads and updates its parent's variables, and what it
creates itself (the except block's error map too) is gone with it. A parallel branch reads its
parent's variables but writes only those listed in `shared` (under the engine's lock); anything
else it creates stays in the branch.

Each frame knows the size of each of its variables (`limits.size_of`) and reports what changes
to the engine, which holds the total of all live frames against the execution's memory limit:
an assignment measures the one variable it changed, and a frame gives its total back when it
ends (`release`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from droptune.local.workflows.errors import error
from droptune.local.workflows.expressions import Namespace
from droptune.local.workflows.limits import size_of
from droptune.local.workflows.stdlib import FunctionRef

if TYPE_CHECKING:
    from droptune.local.workflows.engine import Engine

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


class Frame:
    """Variables of one (sub)workflow call, `for` body, except block or parallel branch.

    Implements the `Scope` protocol of the expression compiler (`get`, `call`).
    """

    __slots__ = ("engine", "parent", "shared", "sizes", "variables", "writes_up")

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
        self.sizes: dict[str, int] = {}
        for name in self.variables:
            self.measure(name)

    def get(self, name: str) -> Any:
        frame: Frame | None = self
        while frame is not None:
            if name in frame.variables:
                return frame.variables[name]
            frame = frame.parent
        if name in MODULES:
            return Namespace(name, self.engine.library_value)
        if name in self.engine.workflow.subworkflows:  # predicate: ${my_subworkflow}
            return FunctionRef(name)
        raise error("KeyError", f"variable not defined: {name}")

    def call(self, name: str, args: list[Any]) -> Any:
        """A call made by an expression."""
        return self.engine.call(name, args, {}, self, in_expression=True)

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
                owner.measure(name)
        else:
            owner.variables[name] = value
            owner.measure(name)

    def measure(self, name: str) -> None:
        """Count variable `name` at its present size (it was assigned, or changed inside)."""
        size = size_of(self.variables[name])
        change = size - self.sizes.get(name, 0)
        if change:  # most assignments replace a number with a number: nothing to report
            self.sizes[name] = size
            self.engine.use_memory(change)

    def release(self) -> None:
        """The frame ends: its variables no longer count."""
        self.engine.use_memory(-sum(self.sizes.values()))
        self.sizes.clear()
