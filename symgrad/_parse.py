"""Turn a user's activation-function string into a SymPy expression, executing nothing.

Users describe custom activations as short formulas such as ``"x*sigmoid(x)"``,
``"log(1 + exp(z))"`` or ``"max(0.01*z, z)"``.  :func:`parse_expression` reads such a string
with :func:`ast.parse` (``mode="eval"``) and walks the syntax tree through a strict whitelist,
building the SymPy expression node by node itself.

Why not ``eval``/``sympify``?  ``sympify`` and ``parse_expr`` call ``eval``, and a restricted
namespace for ``eval`` does not make it safe: attribute tricks such as
``().__class__.__base__.__subclasses__()`` reach every loaded class without naming any builtin.
Here nothing from the string is ever executed -- by construction: the only thing done with the
text is parsing it into a tree, and the tree is only inspected.

The whitelist (everything else is rejected with :class:`~symgrad.errors.InvalidArgument`):

* numbers: ``int`` literals (at most 100 digits) and finite ``float`` literals, which become
  exact rationals from their decimal text (``0.01`` is ``Rational(1, 100)``);
* the variable, written ``z`` or ``x`` (one of them, not both), and the constants ``pi`` and ``E``;
* the operators ``+ - * / **`` and unary ``+``/``-``;
* calls of whitelisted function names with positional arguments: the functions of
  :data:`DEFAULT_FUNCTIONS` plus any passed in ``functions``.

Resource limits keep a hostile string from hanging or exhausting memory: at most 2000
characters, brackets and syntax nested at most 100 deep, and numeric powers are checked
before SymPy evaluates them (see :meth:`_Builder._check_power`).
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import NoReturn

import sympy

from .errors import InvalidArgument

__all__ = ["DEFAULT_FUNCTIONS", "parse_expression"]

MAX_SOURCE_LENGTH = 2000
MAX_DEPTH = 100
MAX_INT_DIGITS = 100
MAX_EXPONENT = 1000  # |p/q| of a numeric exponent
MAX_BASE = 10**100  # numerators and denominators in the base of a numeric power
# Any number anywhere in the result: Python refuses to print ints over 4300 digits, and
# products of big powers would otherwise grow without bound.
MAX_NUMBER_DIGITS = 4000
# SymPy evaluates b**(p/q) by factoring numbers about as large as b**q, so the digits of b
# times q must stay small; measured: 100-digit bases with q near 1000 take minutes.
MAX_ROOT_WORK = 1000

DEFAULT_FUNCTIONS: Mapping[str, Callable[..., sympy.Expr]] = MappingProxyType(
    {
        "exp": sympy.exp,
        "log": sympy.log,
        "sqrt": sympy.sqrt,
        "abs": sympy.Abs,
        "tanh": sympy.tanh,
        "sinh": sympy.sinh,
        "cosh": sympy.cosh,
        "sin": sympy.sin,
        "cos": sympy.cos,
        "tan": sympy.tan,
        "atan": sympy.atan,
        "asinh": sympy.asinh,
        "erf": sympy.erf,
        "max": sympy.Max,
        "min": sympy.Min,
        "sign": sympy.sign,
        "heaviside": lambda t: sympy.Heaviside(t, 0),
    }
)
_VARIADIC = frozenset({"max", "min"})  # take 2 or more arguments; the rest take exactly 1
_CONSTANTS = {"pi": sympy.pi, "E": sympy.E}
_VARIABLE_NAMES = ("z", "x")
_NON_FINITE = (sympy.zoo, sympy.oo, -sympy.oo, sympy.nan)

_OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
_OPERATOR_SYMBOLS = {
    ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
    ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^", ast.Not: "not", ast.Invert: "~",
}
_PIECEWISE_FIX = "For piecewise activations use max(...), min(...), heaviside(...) or sign(...)."
# Node types that are never allowed, with what to call them and how to fix the formula.
_REJECTED = {
    ast.Attribute: ("attribute access", "Attributes are never available; use only the listed functions."),
    ast.Subscript: ("indexing", "Indexing is not available; write the formula in the variable itself."),
    ast.Lambda: ("lambda", "Write just the formula, e.g. 'z*sigmoid(z)'."),
    ast.ListComp: ("comprehension", "Write just the formula, e.g. 'z*sigmoid(z)'."),
    ast.SetComp: ("comprehension", "Write just the formula, e.g. 'z*sigmoid(z)'."),
    ast.DictComp: ("comprehension", "Write just the formula, e.g. 'z*sigmoid(z)'."),
    ast.GeneratorExp: ("comprehension", "Write just the formula, e.g. 'z*sigmoid(z)'."),
    ast.Compare: ("comparison", _PIECEWISE_FIX),
    ast.BoolOp: ("boolean operator", _PIECEWISE_FIX),
    ast.IfExp: ("conditional expression", _PIECEWISE_FIX),
    ast.NamedExpr: ("assignment expression", "Assignments are not available; inline the value."),
    ast.JoinedStr: ("f-string", "Strings are not available; write the formula without quotes."),
    ast.List: ("list", "Containers are not available; write a single formula."),
    ast.Tuple: ("tuple", "Containers are not available; write a single formula."),
    ast.Set: ("set", "Containers are not available; write a single formula."),
    ast.Dict: ("dict", "Containers are not available; write a single formula."),
    ast.Starred: ("star-argument", "Pass the arguments one by one, e.g. max(z, 0)."),
}


def parse_expression(
    source: str,
    variable: sympy.Symbol,
    functions: Mapping[str, Callable[..., sympy.Expr]] | None = None,
) -> sympy.Expr:
    """Parse the activation formula ``source`` into a SymPy expression in ``variable``.

    ``source`` names the variable ``z`` or ``x``; ``functions`` adds (or overrides) callable
    names on top of :data:`DEFAULT_FUNCTIONS`.  Nothing in ``source`` is executed: the string
    is parsed with :func:`ast.parse` and the tree is walked through the whitelist described in
    the module docstring.  Raises :class:`InvalidArgument` naming the offending fragment, the
    allowed syntax and a fix for anything outside it, and for strings that break the resource
    limits.
    """
    if not isinstance(variable, sympy.Symbol):
        raise InvalidArgument(
            f"variable must be a sympy.Symbol, got {type(variable).__name__} ({variable!r}). "
            "Fix: pass e.g. sympy.Symbol('z', real=True)."
        )
    merged = dict(DEFAULT_FUNCTIONS)
    if functions is not None:
        for name, fn in functions.items():
            if not (isinstance(name, str) and name.isidentifier() and callable(fn)):
                raise InvalidArgument(
                    f"functions must map identifier strings to callables, got {name!r}: {fn!r}. "
                    "Fix: pass e.g. {'sigmoid': my_sigmoid_function_class}."
                )
        merged.update(functions)
    allowed = (
        "numbers, the variable z (or x), the constants pi and E, + - * / **, "
        f"and the functions {', '.join(sorted(merged))}"
    )

    if not isinstance(source, str):
        raise InvalidArgument(
            f"activation must be a string such as 'z*sigmoid(z)', got {type(source).__name__} "
            f"({_show(repr(source))}). Allowed: {allowed}."
        )
    # Leading blanks would be an IndentationError; outer whitespace means nothing here.
    text = source.strip(" \t\n\r\f\v")
    if not text:
        raise InvalidArgument(
            f"activation {source!r} is empty. Allowed: {allowed}. "
            "Fix: write a formula in z, e.g. 'z*sigmoid(z)'."
        )
    if len(text) > MAX_SOURCE_LENGTH:
        raise InvalidArgument(
            f"activation {_show(text)} is too long: {len(text)} characters (limit "
            f"{MAX_SOURCE_LENGTH}). Fix: write a shorter formula or pass a SymPy expression."
        )
    _check_brackets(text, allowed)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:  # also IndentationError
        where = ""
        if exc.offset:  # None for some errors (e.g. NUL bytes)
            near = (exc.text or "").rstrip("\r\n")[exc.offset - 1:]
            where = f" near {_show(near, 40)} (column {exc.offset})"
        raise InvalidArgument(
            f"activation {_show(text)} is not a valid formula: {exc.msg}{where}. "
            f"Allowed: {allowed}. Fix: write a single expression, e.g. 'z*sigmoid(z)'."
        ) from None
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, parser limits
        raise InvalidArgument(
            f"activation {_show(text)} cannot be parsed: {exc}. Allowed: {allowed}."
        ) from None
    builder = _Builder(text, variable, merged, allowed)
    builder.check_depth(tree)
    result = builder.build(tree.body)
    builder.check_result(result, tree.body)
    return result


def _show(text: str, limit: int = 80) -> str:
    """repr() of ``text`` shortened for messages (activations may be 2000 characters)."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _check_brackets(text: str, allowed: str) -> None:
    # Brackets make no AST nodes, and the parser gives up at 200 with a vaguer message.
    depth = 0
    for column, char in enumerate(text, start=1):
        if char in "([{":
            depth += 1
            if depth > MAX_DEPTH:
                raise InvalidArgument(
                    f"activation {_show(text)} is not allowed: brackets nested more than "
                    f"{MAX_DEPTH} deep at {_show(text[column - 1:column + 19])} (column {column}). "
                    f"Allowed: {allowed}. Fix: remove redundant brackets."
                )
        elif char in ")]}":
            depth -= 1


class _Builder:
    """Builds the SymPy expression from a parsed tree, one whitelisted node type at a time."""

    def __init__(self, source: str, variable: sympy.Symbol, functions: dict, allowed: str):
        self.source = source
        self.variable = variable
        self.functions = functions
        self.allowed = allowed
        self.alias: str | None = None  # 'z' or 'x', whichever the formula uses first
        # Same line splitting as ast.get_source_segment, to turn byte offsets into columns.
        self.lines = re.split(r"\r\n|\r|\n", source)

    # -- errors ---------------------------------------------------------------------------
    def fail(self, node: ast.AST, problem: str, fix: str) -> NoReturn:
        fragment = ast.get_source_segment(self.source, node) or ""
        raise InvalidArgument(
            f"activation {_show(self.source)} is not allowed: {problem} {_show(fragment)} "
            f"({self._where(node)}). Allowed: {self.allowed}. Fix: {fix}"
        )

    def _where(self, node: ast.AST) -> str:
        lineno, offset = getattr(node, "lineno", 1), getattr(node, "col_offset", 0)
        try:  # col_offset counts UTF-8 bytes; report characters
            column = len(self.lines[lineno - 1].encode()[:offset].decode()) + 1
        except (IndexError, UnicodeDecodeError):
            column = offset + 1
        return f"column {column}" if lineno == 1 else f"line {lineno}, column {column}"

    # -- limits ---------------------------------------------------------------------------
    def check_depth(self, tree: ast.Expression) -> None:
        # Iterative, so a deep tree cannot overflow the stack while it is being measured;
        # afterwards the recursive build() is at most MAX_DEPTH calls deep.
        stack = [(tree.body, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH and isinstance(node, ast.expr):
                self.fail(node, f"nesting deeper than {MAX_DEPTH} levels at", "Simplify the formula.")
            step = 1 if isinstance(node, ast.expr) else 0
            stack.extend((child, depth + step) for child in ast.iter_child_nodes(node))

    def check_numbers(self, expr: sympy.Basic, node: ast.AST) -> None:
        for number in expr.atoms(sympy.Rational):
            if max(abs(number.p), number.q) >= 10**MAX_NUMBER_DIGITS:
                self.fail(
                    node,
                    f"a number with more than {MAX_NUMBER_DIGITS} digits comes from",
                    "Use smaller numbers.",
                )

    def check_power(self, base: sympy.Expr, exponent: sympy.Expr, node: ast.AST) -> None:
        """Refuse numeric powers whose evaluation by SymPy would be huge or slow.

        Only a rational exponent makes SymPy compute (``9**9**9**9``, ``(2*z)**10**50``
        expands to ``2**10**50 * z**10**50``); the numbers it works on are the rationals in
        the base.
        """
        if not isinstance(exponent, sympy.Rational):
            return
        if abs(exponent) > MAX_EXPONENT:
            self.fail(
                node,
                f"exponent {_short(exponent)} is too large (limit |exponent| <= {MAX_EXPONENT}) in",
                "Use a smaller exponent, or write exp(...) instead.",
            )
        biggest = max((max(abs(r.p), r.q) for r in base.atoms(sympy.Rational)), default=1)
        if biggest > MAX_BASE:
            self.fail(
                node,
                "the base of a numeric power is too large (numbers in it must be <= 1e100) in",
                "Use smaller numbers in the base.",
            )
        digits = _digits(biggest)
        if digits * abs(exponent) > MAX_NUMBER_DIGITS or digits * exponent.q > MAX_ROOT_WORK:
            self.fail(
                node,
                "the power would need numbers with thousands of digits in",
                "Use smaller numbers, or a simpler exponent such as 1/2 or 3.",
            )

    def check_product(self, left: sympy.Expr, right: sympy.Expr, node: ast.AST) -> None:
        # SymPy merges numeric roots with equal exponents, 2**(1/3)*3**(1/3) -> 6**(1/3), and
        # then factors the merged base; so the roots in a product share one MAX_ROOT_WORK.
        work = sum(
            _digits(factor.base) * factor.exp.q
            for factor in sympy.Mul.make_args(left) + sympy.Mul.make_args(right)
            if factor.is_Pow and factor.base.is_Rational and factor.exp.is_Rational
        )
        if work > MAX_ROOT_WORK:
            self.fail(
                node,
                "the product of roots of large numbers would be slow to simplify in",
                "Use smaller numbers under roots.",
            )

    def check_exp(self, argument: sympy.Expr, node: ast.AST) -> None:
        # SymPy rewrites exp(c*log(b)) (also inside a sum) as b**c, so check it as that power.
        for term in sympy.Add.make_args(argument):
            coefficient, rest = term.as_coeff_Mul()
            for logarithm in rest.atoms(sympy.log):
                self.check_power(logarithm.args[0], coefficient, node)

    def check_result(self, result: sympy.Expr, node: ast.AST) -> None:
        if any(result.has(value) for value in _NON_FINITE):
            self.fail(node, f"the formula is undefined or infinite ({result}):", "Avoid dividing by zero or log(0).")
        stray = result.free_symbols - {self.variable}
        if stray:
            names = ", ".join(sorted(map(str, stray)))
            self.fail(node, f"a function introduced other symbols ({names}) in", "Use only z (or x).")

    # -- building -------------------------------------------------------------------------
    def build(self, node: ast.AST) -> sympy.Expr:
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return -self.build(node.operand)
            if isinstance(node.op, ast.UAdd):
                return self.build(node.operand)
            self.fail(node, f"operator {_OPERATOR_SYMBOLS[type(node.op)]!r} in", "Use only + - * / **.")
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        what, fix = _REJECTED.get(type(node), (f"{type(node).__name__} syntax", "Write a plain formula."))
        self.fail(node, what, fix)

    def _binop(self, node: ast.BinOp) -> sympy.Expr:
        op = type(node.op)
        if op is ast.BitXor:
            left = ast.get_source_segment(self.source, node.left)
            right = ast.get_source_segment(self.source, node.right)
            self.fail(node, "'^' is bitwise xor in Python, not a power:", f"use ** for powers, e.g. '{left}**{right}'.")
        if op is not ast.Pow and op not in _OPERATORS:
            self.fail(node, f"operator {_OPERATOR_SYMBOLS[op]!r} in", "Use only + - * / **.")
        left, right = self.build(node.left), self.build(node.right)
        if op is ast.Pow:
            self.check_power(left, right, node)
            if left == sympy.E:  # E**t is exp(t)
                self.check_exp(right, node)
            for exponential in left.atoms(sympy.exp):  # exp(a)**t becomes exp(a*t)
                self.check_exp(exponential.args[0] * right, node)
            result = left**right
        else:
            if op in (ast.Mult, ast.Div):
                self.check_product(left, right, node)
            result = _OPERATORS[op](left, right)
        self.check_numbers(result, node)
        return result

    def _constant(self, node: ast.Constant) -> sympy.Expr:
        value = node.value
        if isinstance(value, bool):  # bool is an int subclass: test it first
            self.fail(node, "boolean", "Use 1 or 0.")
        if isinstance(value, int):
            if abs(value) >= 10**MAX_INT_DIGITS:
                self.fail(node, f"integer with more than {MAX_INT_DIGITS} digits", "Use a smaller number.")
            return sympy.Integer(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                self.fail(node, "number too large to be finite:", "Use a smaller number.")
            return sympy.Rational(repr(value))  # exact: 0.01 -> 1/100, not a binary float
        kind = {complex: "complex number", str: "string", bytes: "bytes literal"}.get(type(value), "literal")
        self.fail(node, kind, "Use real numbers only (no quotes, no 'j').")

    def _name(self, node: ast.Name) -> sympy.Expr:
        name = node.id
        if name in _VARIABLE_NAMES:
            if self.alias is None:
                self.alias = name
            elif self.alias != name:
                self.fail(
                    node,
                    f"the formula uses both '{self.alias}' and '{name}' for the variable; found",
                    f"write the variable as '{self.alias}' everywhere.",
                )
            return self.variable
        if name in _CONSTANTS:
            return _CONSTANTS[name]
        if name in self.functions:
            self.fail(node, "function used without a call:", f"call it, e.g. '{name}(z)'.")
        self.fail(node, "unknown name", "the variable must be written z (or x); no other names exist.")

    def _call(self, node: ast.Call) -> sympy.Expr:
        if not isinstance(node.func, ast.Name):
            self.fail(node, "call of something other than a function name:", "Call only the listed functions by name.")
        name = node.func.id
        fn = self.functions.get(name)
        if fn is None:
            self.fail(node, f"call of unknown function '{name}' in", "Call only the listed functions.")
        for argument in node.args:
            if isinstance(argument, ast.Starred):
                self.fail(argument, "star-argument", "Pass the arguments one by one.")
        if node.keywords:
            self.fail(node.keywords[0], "keyword argument", f"Pass arguments by position, e.g. '{name}(z)'.")
        count = len(node.args)
        if fn is DEFAULT_FUNCTIONS.get(name):  # known arity; custom callables check their own
            if name in _VARIADIC and count < 2:
                self.fail(node, f"{name} needs at least 2 arguments, got {count}:", f"e.g. '{name}(0, z)'.")
            if name not in _VARIADIC and count != 1:
                self.fail(node, f"{name} takes exactly 1 argument, got {count}:", f"e.g. '{name}(z)'.")
        else:  # SymPy Function classes declare their arity; other callables raise TypeError
            nargs = getattr(fn, "nargs", None)
            if isinstance(nargs, sympy.Set) and count not in nargs:
                self.fail(node, f"{name} cannot take {count} argument(s):", f"Allowed counts: {nargs}.")
        arguments = [self.build(argument) for argument in node.args]
        if fn is sympy.sqrt:
            self.check_power(arguments[0], sympy.S.Half, node)
        if fn is sympy.exp:
            self.check_exp(arguments[0], node)
        try:
            result = fn(*arguments)
        except (TypeError, ValueError, ArithmeticError) as exc:  # e.g. wrong arity, max(z, 1/0)
            self.fail(node, f"cannot build {name}(...) ({exc}):", "Check the arguments.")
        if not isinstance(result, sympy.Expr):
            self.fail(node, f"{name}(...) did not give a SymPy expression:", "Use a function that returns one.")
        self.check_numbers(result, node)
        return result


def _digits(number: sympy.Rational | int) -> float:
    """Decimal digits of the larger of numerator and denominator (0 for 0 and +-1)."""
    biggest = max(abs(int(number.p)), int(number.q)) if isinstance(number, sympy.Rational) else abs(number)
    return math.log10(biggest) if biggest > 1 else 0.0


def _short(number: sympy.Rational) -> str:
    # Exponents reaching this may have thousands of digits; name their size instead.
    if max(abs(number.p), number.q) < 10**40:
        return str(number)
    return f"(a {len(str(abs(number.p)))}-digit number)"
