"""The Workflows expression language: `${...}`, parsed with lark and compiled to closures.

An expression is parsed once (cached by its text) into a tree of small Python functions, each
taking the scope it runs in; nothing is ever passed to `eval`. The operators, their precedence
and their type rules follow the Workflows documentation:

    or  <  and  <  not  <  == != < <= > >= in  <  + -  <  * / // %  <  unary -  <  . [] ()

`/` always gives a double; `//` and `%` floor like Python; `+` adds numbers or joins two
strings; `and`, `or`, `not` take booleans only; comparing a number with a string is a
TypeError, as is any operator on operands it does not take. A missing variable or map key is a
KeyError, a list index out of range (negative included) an IndexError.

>>> evaluate("a.b[1] * 2 + 1", Scope({"a": {"b": [1, 20]}}))
41
>>> evaluate('"x" + string(3 // 2)', Scope({}, functions={"string": str}))
'x1'
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import LarkError, UnexpectedInput

from droptune.local.workflows.errors import WorkflowSyntaxError, error

GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr | or_expr "or" and_expr -> or_
?and_expr: not_expr | and_expr "and" not_expr -> and_
?not_expr: comparison | "not" not_expr -> not_
?comparison: sum | comparison COMPARE sum -> compare | comparison "in" sum -> in_
?sum: product | sum ADD sum_rhs -> arith
?sum_rhs: product
?product: unary | product MUL unary -> arith
?unary: postfix | "-" unary -> neg
?postfix: atom
    | postfix "." NAME -> attr
    | postfix "[" or_expr "]" -> index
    | postfix "(" [or_expr ("," or_expr)*] ")" -> call
?atom: INT -> int_
    | FLOAT -> float_
    | STRING -> string
    | NAME -> name
    | "[" [or_expr ("," or_expr)*] "]" -> list_
    | "{" [pair ("," pair)*] "}" -> map_
    | "(" or_expr ")"
pair: or_expr ":" or_expr
COMPARE: "==" | "!=" | "<=" | ">=" | "<" | ">"
ADD: "+" | "-"
MUL: "//" | "*" | "/" | "%"
NAME: /[A-Za-z_][A-Za-z0-9_]*/
INT: /[0-9]+/
FLOAT: /[0-9]+\.[0-9]*([eE][+-]?[0-9]+)?/ | /[0-9]+[eE][+-]?[0-9]+/ | /\.[0-9]+([eE][+-]?[0-9]+)?/
STRING: /"(\\.|[^"\\])*"/ | /'(\\.|[^'\\])*'/
%import common.WS
%ignore WS
"""

_PARSER = Lark(GRAMMAR, parser="lalr", maybe_placeholders=False)
CONSTANTS = {
    "true": True, "True": True, "TRUE": True,
    "false": False, "False": False, "FALSE": False,
    "null": None,
}  # fmt: skip

Compiled = Callable[["Scope"], Any]


class Namespace:
    """A library module used as a value (`http` in `${http.default_retry}`): looking up a key
    gives the library's function or constant of that dotted name, or a deeper namespace."""

    def __init__(self, name: str, resolve: Callable[[str], Any]) -> None:
        self.name, self.resolve = name, resolve

    def child(self, key: str) -> Any:
        return self.resolve(f"{self.name}.{key}")


class Scope:
    """What an expression can see: variables, and functions by dotted name."""

    def __init__(
        self,
        variables: dict[str, Any],
        functions: dict[str, Callable[..., Any]] | None = None,
        call: Callable[[str, list[Any]], Any] | None = None,
    ) -> None:
        self.variables = variables
        self.functions = functions or {}
        self._call = call

    def get(self, name: str) -> Any:
        try:
            return self.variables[name]
        except KeyError:
            raise error("KeyError", f"variable not defined: {name}") from None

    def call(self, name: str, args: list[Any]) -> Any:
        if self._call is not None:
            return self._call(name, args)
        function = self.functions.get(name)
        if function is None:
            raise error("KeyError", f"function not defined: {name}")
        return function(*args)


def evaluate(text: str, scope: Scope) -> Any:
    return compile_expression(text)(scope)


@lru_cache(maxsize=4096)
def compile_expression(text: str) -> Compiled:
    """Parse the inside of `${...}` once; raises WorkflowSyntaxError with the column."""
    try:
        tree = _PARSER.parse(text)
    except UnexpectedInput as exc:
        raise WorkflowSyntaxError(
            f"cannot parse expression ${{{text}}} at column {exc.column}: "
            f"{exc.get_context(text).strip()!r}"
        ) from None
    except LarkError as exc:
        raise WorkflowSyntaxError(f"cannot parse expression ${{{text}}}: {exc}") from None
    return _Compiler().transform(tree)


def compile_target(text: str) -> tuple[str, list[Compiled]]:
    """An assignment target such as `a.b["c"][i]`: the variable and the keys to walk.

    >>> root, path = compile_target('a.b[i + 1]')
    >>> root, [key(Scope({"i": 1})) for key in path]
    ('a', ['b', 2])
    """
    bad = WorkflowSyntaxError(f"cannot assign to {text!r}: write a name, a.key or a[index]")
    try:
        node = _PARSER.parse(text)
    except LarkError:
        raise bad from None
    path: list[Compiled] = []
    while getattr(node, "data", None) in ("attr", "index"):
        target, key = node.children
        if node.data == "attr":
            path.append(lambda scope, k=str(key): k)
        else:
            path.append(_Compiler().transform(key))
        node = target
    if getattr(node, "data", None) != "name" or str(node.children[0]) in CONSTANTS:
        raise bad
    return str(node.children[0]), path[::-1]


# --- type rules ---------------------------------------------------------------------------
def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def type_name(value: Any) -> str:
    """The Workflows name of a value's type.

    >>> [type_name(v) for v in (None, True, 1, 1.5, "s", [], {})]
    ['null', 'boolean', 'integer', 'double', 'string', 'list', 'map']
    """
    return next(
        (name for kind, name in _TYPE_NAMES if isinstance(value, kind)), type(value).__name__
    )


# bool before int: True is an int to Python, a boolean to Workflows.
_TYPE_NAMES = (
    (type(None), "null"),
    (bool, "boolean"),
    (int, "integer"),
    (float, "double"),
    (str, "string"),
    (list, "list"),
    (dict, "map"),
)


def _type_error(op: str, *values: Any) -> Exception:
    kinds = " and ".join(type_name(v) for v in values)
    return error("TypeError", f"unsupported operand type(s) for {op}: {kinds}")


def _add(a: Any, b: Any) -> Any:
    if is_number(a) and is_number(b):
        return a + b
    if isinstance(a, str) and isinstance(b, str):
        return a + b
    raise _type_error("+", a, b)


def _numeric(op: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if not (is_number(a) and is_number(b)):
            raise _type_error(op, a, b)
        if op in ("/", "//", "%") and b == 0:
            raise error("ZeroDivisionError", f"division by zero in {op}")
        return fn(a, b)

    return apply


ARITHMETIC = {
    "+": _add,
    "-": _numeric("-", operator.sub),
    "*": _numeric("*", operator.mul),
    "/": _numeric("/", lambda a, b: a / b),
    "//": _numeric(
        "//",
        lambda a, b: (
            a // b if isinstance(a, int) and isinstance(b, int) else float(math.floor(a / b))
        ),
    ),
    "%": _numeric("%", operator.mod),
}


def equal(a: Any, b: Any) -> bool:
    """Workflows equality: by value, numbers across integer/double, no bool/number mixing."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    return a == b


def _order(op: str, fn: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def apply(a: Any, b: Any) -> bool:
        if (is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
            return fn(a, b)
        raise _type_error(op, a, b)

    return apply


COMPARISONS = {
    "==": equal,
    "!=": lambda a, b: not equal(a, b),
    "<": _order("<", operator.lt),
    "<=": _order("<=", operator.le),
    ">": _order(">", operator.gt),
    ">=": _order(">=", operator.ge),
}


def _boolean(op: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise error("TypeError", f"{op} needs a boolean, got {type_name(value)}")
    return value


def member(item: Any, container: Any) -> bool:
    if isinstance(container, list):
        return any(equal(item, x) for x in container)
    if isinstance(container, dict):
        return item in container
    raise error("TypeError", f"'in' needs a list or a map on its right, got {type_name(container)}")


def get_key(value: Any, key: Any) -> Any:
    """`value.key` and `value[key]` with the service's errors."""
    if isinstance(value, Namespace):
        return value.child(key)
    if isinstance(value, dict):
        if not isinstance(key, str):
            raise error("TypeError", f"map keys are strings, got {type_name(key)}")
        try:
            return value[key]
        except KeyError:
            raise error("KeyError", f"key not found: {key}") from None
    if isinstance(value, list):
        if not isinstance(key, int) or isinstance(key, bool):
            raise error("TypeError", f"list indices are integers, got {type_name(key)}")
        if not 0 <= key < len(value):
            raise error("IndexError", f"list index out of range: {key} (length {len(value)})")
        return value[key]
    raise error("TypeError", f"cannot look up {key!r} in a {type_name(value)}")


def map_builder(pairs: list[tuple[Compiled, Compiled]]) -> Compiled:
    """A map whose keys and values are computed: `{"k" + x: v}`, or YAML keys with `${...}`."""

    def build(scope: Any) -> dict[str, Any]:
        out = {}
        for key, value in pairs:
            k = key(scope)
            if not isinstance(k, str):
                raise error("TypeError", f"map keys are strings, got {type_name(k)}")
            out[k] = value(scope)
        return out

    return build


def decode_string(token: str) -> str:
    body = token[1:-1]
    if "\\" not in body:
        return body
    return (
        body.encode("utf-8", "surrogatepass")
        .decode("unicode_escape")
        .encode("latin-1", "surrogatepass")
        .decode("utf-8")
    )


# --- compilation --------------------------------------------------------------------------
def _dotted(node: Any) -> str | None:
    """The function name of a call target such as `text.split`, or None if it is not one."""
    return getattr(node, "dotted", None)


@v_args(inline=True)
class _Compiler(Transformer):
    def int_(self, token: Token) -> Compiled:
        value = int(token)
        return lambda scope: value

    def float_(self, token: Token) -> Compiled:
        value = float(token)
        return lambda scope: value

    def string(self, token: Token) -> Compiled:
        value = decode_string(str(token))
        return lambda scope: value

    def name(self, token: Token) -> Compiled:
        text = str(token)
        if text in CONSTANTS:
            value = CONSTANTS[text]
            return lambda scope: value

        def lookup(scope: Scope) -> Any:
            return scope.get(text)

        lookup.dotted = text  # type: ignore[attr-defined]
        return lookup

    def list_(self, *items: Compiled) -> Compiled:
        return lambda scope: [item(scope) for item in items]

    def pair(self, key: Compiled, value: Compiled) -> tuple[Compiled, Compiled]:
        return key, value

    def map_(self, *pairs: tuple[Compiled, Compiled]) -> Compiled:
        return map_builder(list(pairs))

    def attr(self, target: Compiled, name: Token) -> Compiled:
        key = str(name)

        def lookup(scope: Scope) -> Any:
            return get_key(target(scope), key)

        prefix = _dotted(target)
        if prefix is not None:
            lookup.dotted = f"{prefix}.{key}"  # type: ignore[attr-defined]
        return lookup

    def index(self, target: Compiled, key: Compiled) -> Compiled:
        return lambda scope: get_key(target(scope), key(scope))

    def call(self, target: Compiled, *args: Compiled) -> Compiled:
        name = _dotted(target)
        if name is None:
            raise WorkflowSyntaxError('only named functions can be called, e.g. text.split(s, ",")')
        return lambda scope: scope.call(name, [arg(scope) for arg in args])

    def neg(self, operand: Compiled) -> Compiled:
        def apply(scope: Scope) -> Any:
            value = operand(scope)
            if not is_number(value):
                raise error("TypeError", f"bad operand type for unary -: {type_name(value)}")
            return -value

        return apply

    def arith(self, left: Compiled, op: Token, right: Compiled) -> Compiled:
        fn = ARITHMETIC[str(op)]
        return lambda scope: fn(left(scope), right(scope))

    def compare(self, left: Compiled, op: Token, right: Compiled) -> Compiled:
        fn = COMPARISONS[str(op)]
        return lambda scope: fn(left(scope), right(scope))

    def in_(self, left: Compiled, right: Compiled) -> Compiled:
        return lambda scope: member(left(scope), right(scope))

    def not_(self, operand: Compiled) -> Compiled:
        return lambda scope: not _boolean("not", operand(scope))

    def and_(self, left: Compiled, right: Compiled) -> Compiled:
        return lambda scope: _boolean("and", left(scope)) and _boolean("and", right(scope))

    def or_(self, left: Compiled, right: Compiled) -> Compiled:
        return lambda scope: _boolean("or", left(scope)) or _boolean("or", right(scope))
