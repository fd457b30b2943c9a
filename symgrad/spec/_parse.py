"""Turn a user's activation-function string into a SymPy expression, executing nothing.

Users describe custom activations as short formulas such as ``"x*sigmoid(x)"``,
``"log(1 + exp(z))"`` or ``"max(0.01*z, z)"``.  :func:`parse_expression` reads such a string
with :func:`ast.parse` (``mode="eval"``) and walks the syntax tree through a strict whitelist,
building the SymPy expression node by node itself.

Why not ``eval``/``sympify``?  ``sympify`` and ``parse_expr`` call ``eval``, and a restricted
namespace for ``eval`` does not make it safe: attribute tricks such as
``().__class__.__base__.__subclasses__()`` reach every loaded class without naming a single
builtin.  Here nothing from the string is executed, by construction: the text is only parsed
into a tree, and the tree is only inspected.

The whitelist (anything else raises :class:`~symgrad.errors.InvalidArgument`):

* numbers: ``int`` literals of at most 100 digits and finite ``float`` literals; floats become
  exact rationals from their decimal text (``0.01`` is ``Rational(1, 100)``);
* the variable, written ``z`` or ``x`` (one of them, not both), and the constants ``pi``, ``E``;
* the operators ``+ - * / **`` and unary ``+``/``-``;
* calls, with positional arguments only, of the names in :data:`DEFAULT_FUNCTIONS` and in the
  ``functions`` argument.  SymPy's own spellings ``Abs``, ``Max``, ``Min`` and ``Heaviside`` are
  aliases of ``abs``, ``max``, ``min`` and ``heaviside`` (``Heaviside(0)`` is 0 here: the left
  limit, symgrad's convention at kinks); ``max``/``min`` take 2 to :data:`MAX_VARIADIC_ARGS`
  arguments.

Resource limits (the ``MAX_*`` constants below) keep a hostile string from hanging the process
or exhausting memory.  SymPy evaluates as it builds, so sizes are checked *before* each step
that could blow up: at most 2000 characters and 100 levels of brackets or syntax; numeric
powers with |exponent| <= 1000 and bases <= 1e100 (``9**9**9**9`` is refused at once), also
where SymPy makes them itself (``exp(c*log(b))`` is ``b**c``, ``(2*z)**n`` is ``2**n*z**n``,
roots merge in products); no number over 330 digits and no exponent numerator over 1000
anywhere (20 for bases SymPy does not know to be real); no part without the variable beyond
1e300 in magnitude (``cosh(cosh(cosh(9)))``), since comparing such a constant makes SymPy
compute its digits; at most 400 syntax nodes; and, as a backstop, at most 5 s of building in
all, *enforced* (:func:`symgrad._budget.within_budget` interrupts a single slow SymPy step too)
and reported as :class:`InvalidArgument`.
"""

from __future__ import annotations

import ast
import cmath
import math
import re
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import NoReturn

import sympy

from symgrad._budget import BudgetExceeded, within_budget
from symgrad.errors import InvalidArgument

__all__ = ["DEFAULT_FUNCTIONS", "parse_expression"]

MAX_SOURCE_LENGTH = 2000
MAX_DEPTH = 100
MAX_INT_DIGITS = 100
MAX_EXPONENT = 1000  # |exponent| of a numeric power
MAX_BASE = 10**100  # numerators and denominators in the base of a numeric power
MAX_CONSTANT = 1e300  # |value| of any part of the formula that does not involve the variable
# Any number anywhere in the formula.  Every float literal fits (5e-324 is 5/10**324), while
# identities such as cos(atan(t)) = 1/sqrt(1 + t**2) make SymPy factor and primality-test
# numbers of twice these digits: about 0.1 s at 330 digits, but 5 s at 1000.
MAX_NUMBER_DIGITS = 330
# Numerators of the rationals in any exponent (also exp's argument).  SymPy's polynomial code,
# which comparisons reach (max, min, cosh's sign), turns t**(p/q) into a polynomial of degree p
# in t**(1/q), so a p with 300 digits hangs it.
MAX_EXPONENT_NUMERATOR = 1000
# ... and far fewer when SymPy cannot tell that the base is real (an undefined sigmoid(z), say):
# its assumption queries then expand (re + i*im)**p, about 1 s at p = 20 and minutes at p = 1000.
MAX_COMPLEX_POWER_NUMERATOR = 20
# A backstop: every step above is bounded, but many slow-ish steps could still add up.
MAX_BUILD_SECONDS = 5.0
# SymPy simplifies b**(p/q) by factoring numbers about as large as b**q, so digits(b)*q must stay
# small: 100-digit bases with q near 1000 were measured to take minutes.
MAX_ROOT_WORK = 1000
# Syntax nodes in the whole formula (2000 characters allow ~1000): each becomes a SymPy step.
MAX_NODES = 400
# Arguments of one max/min: SymPy compares them pairwise (assumption queries on each pair), so
# the cost grows quadratically: 40 powers of z took 0.9 s, 110 took 9.5 s, 199 took 42 s.
MAX_VARIADIC_ARGS = 32

# Every name here works end to end in symgrad (a real φ, a finite φ', LaTeX, the CLI) in the
# formulas the activation checks accept.  ``tan`` is not here: SymPy cannot show tan(g) real
# (its poles), so every activation using it would be refused anyway.
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
        "atan": sympy.atan,
        "asinh": sympy.asinh,
        "erf": sympy.erf,
        "max": sympy.Max,
        "min": sympy.Min,
        "sign": sympy.sign,
        "heaviside": lambda t: sympy.Heaviside(t, 0),
        # SymPy's own spellings, as aliases (see _ALIASES)
        "Abs": sympy.Abs,
        "Max": sympy.Max,
        "Min": sympy.Min,
        "Heaviside": lambda t: sympy.Heaviside(t, 0),
    }
)
# SymPy's canonical name -> the whitelisted name it stands for (same checks, same float twin).
_ALIASES = {"Abs": "abs", "Max": "max", "Min": "min", "Heaviside": "heaviside"}
_VARIADIC = frozenset({"max", "min"})  # take 2 or more arguments; the others exactly 1

# Complex-float twins of the default functions.  They track the approximate value of every part
# of the formula that does not involve the variable, so that an astronomically large constant
# is refused before SymPy meets it (comparing cosh(cosh(99)) with 0 would compute its digits).
_NUMERIC = {
    "exp": cmath.exp, "log": cmath.log, "sqrt": cmath.sqrt, "abs": abs, "tanh": cmath.tanh,
    "sinh": cmath.sinh, "cosh": cmath.cosh, "sin": cmath.sin, "cos": cmath.cos,
    "atan": cmath.atan, "asinh": cmath.asinh,
    # erf grows like exp(|t|**2) off the real axis; that bound is all the check needs
    "erf": lambda t: math.erf(t.real) if t.imag == 0 else cmath.exp(abs(t) ** 2),
    "max": lambda *ts: max(ts, key=lambda t: t.real),
    "min": lambda *ts: min(ts, key=lambda t: t.real),
    "sign": lambda t: t / abs(t) if t else 0j,
    "heaviside": lambda t: 1.0 if t.real > 0 else 0.0,
}
_CONSTANTS = {"pi": (sympy.pi, math.pi), "E": (sympy.E, math.e)}
_VARIABLE_NAMES = ("z", "x")
_NON_FINITE = (sympy.zoo, sympy.oo, -sympy.oo, sympy.nan)

_OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}
_OPERATOR_SYMBOLS = {
    ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
    ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^", ast.Not: "not", ast.Invert: "~",
}
_FORMULA_FIX = "Write just the formula, e.g. 'z*sigmoid(z)'."
_PIECEWISE_FIX = "For piecewise activations use max(...), min(...), heaviside(...) or sign(...)."
_CONTAINER_FIX = "Containers are not available; write a single formula."
# Node types that are never allowed, with what to call them and how to fix the formula.
_REJECTED = {
    ast.Attribute: ("attribute access", "Attributes are never available; use only the listed functions."),
    ast.Subscript: ("indexing", "Indexing is not available; write the formula in the variable itself."),
    ast.Lambda: ("lambda", _FORMULA_FIX),
    ast.ListComp: ("comprehension", _FORMULA_FIX),
    ast.SetComp: ("comprehension", _FORMULA_FIX),
    ast.DictComp: ("comprehension", _FORMULA_FIX),
    ast.GeneratorExp: ("comprehension", _FORMULA_FIX),
    ast.Compare: ("comparison", _PIECEWISE_FIX),
    ast.BoolOp: ("boolean operator", _PIECEWISE_FIX),
    ast.IfExp: ("conditional expression", _PIECEWISE_FIX),
    ast.NamedExpr: ("assignment expression", "Assignments are not available; inline the value."),
    ast.JoinedStr: ("f-string", "Strings are not available; write the formula without quotes."),
    ast.List: ("list", _CONTAINER_FIX),
    ast.Tuple: ("tuple", _CONTAINER_FIX),
    ast.Set: ("set", _CONTAINER_FIX),
    ast.Dict: ("dict", _CONTAINER_FIX),
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
    the module docstring.  Anything outside the whitelist, and any string that breaks a
    resource limit, raises :class:`InvalidArgument` naming the offending fragment, what is
    allowed, and a fix.  The result may also be a constant (``"1"`` is a valid activation).
    """
    if not isinstance(variable, sympy.Symbol):
        raise InvalidArgument(
            f"variable must be a sympy.Symbol, got {type(variable).__name__} ({variable!r}). "
            "Fix: pass e.g. sympy.Symbol('z', real=True)."
        )
    if functions is not None and not isinstance(functions, Mapping):
        raise InvalidArgument(
            f"functions must be a mapping of names to callables, got {type(functions).__name__}. "
            "Fix: pass e.g. {'sigmoid': sigmoid}."
        )
    merged = dict(DEFAULT_FUNCTIONS)
    for name, fn in (functions or {}).items():
        if not (isinstance(name, str) and name.isidentifier() and callable(fn)):
            raise InvalidArgument(
                f"functions must map identifier strings to callables, got {name!r}: {fn!r}. "
                "Fix: pass e.g. {'sigmoid': sigmoid} with a SymPy Function class."
            )
        merged[name] = fn
    allowed = (
        "numbers, the variable z (or x), the constants pi and E, + - * / **, "
        f"and the functions {', '.join(sorted(merged))}"
    )

    if not isinstance(source, str):
        raise InvalidArgument(
            f"activation must be a string such as 'z*sigmoid(z)', got {type(source).__name__} "
            f"({_show(repr(source))}). Allowed: {allowed}."
        )
    text = source.strip(" \t\n\r\f\v")  # leading blanks would be an IndentationError
    if not text:
        raise InvalidArgument(
            f"activation {_show(source)} is empty. Allowed: {allowed}. "
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
        if exc.offset:  # None for some errors, e.g. NUL characters
            near = (exc.text or "").rstrip("\r\n")[exc.offset - 1:]
            where = f" near {_show(near, 40)} (column {exc.offset})"
        raise InvalidArgument(
            f"activation {_show(text)} is not a valid formula: {exc.msg}{where}. "
            f"Allowed: {allowed}. Fix: write a single expression, e.g. 'z*sigmoid(z)'."
        ) from None
    except (ValueError, RecursionError, MemoryError) as exc:  # parser limits
        raise InvalidArgument(
            f"activation {_show(text)} cannot be parsed: {type(exc).__name__} {exc}. "
            f"Allowed: {allowed}. Fix: write a shorter, simpler formula."
        ) from None
    builder = _Builder(text, variable, merged, allowed)
    builder.check_depth(tree)
    builder.check_nodes(tree)
    try:
        # Enforced: a single slow SymPy constructor (a wide Max, say) is interrupted too, not
        # merely noticed at the next node.
        result, _ = within_budget(
            lambda: builder.build(tree.body), seconds=max(MAX_BUILD_SECONDS, 0.01), what="building the formula"
        )
    except BudgetExceeded as exc:
        raise InvalidArgument(
            f"activation {_show(text)} is not allowed: {exc.reason}. "
            f"Allowed: {allowed}. Fix: simplify the formula."
        ) from None
    if any(result.has(value) for value in _NON_FINITE):
        problem = f"the formula is undefined or infinite ({str(result)[:60]}):"
        builder.fail(tree.body, problem, "Avoid dividing by zero.")
    stray = result.free_symbols - {variable}
    if stray:
        names = ", ".join(sorted(map(str, stray)))
        builder.fail(tree.body, f"a function brought in other symbols ({names}) in", "Use only z (or x).")
    return result


def _show(text: str, limit: int = 80) -> str:
    """repr() of ``text``, shortened for messages (an activation may be 2000 characters)."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _digits(number: int) -> float:
    """Decimal digits of ``number`` (0 for 0 and +-1)."""
    return math.log10(abs(number)) if abs(number) > 1 else 0.0


def _size(rational: sympy.Rational) -> int:
    return max(abs(int(rational.p)), int(rational.q))


def _short(number: sympy.Rational) -> str:
    # An exponent in a message may have hundreds of digits; name its size instead.
    if _size(number) < 10**40:
        return str(number)
    return f"(a {len(str(abs(number.p)))}-digit number)"


def _check_brackets(text: str, allowed: str) -> None:
    # Brackets make no AST nodes, and the parser itself gives up at 200 with a vaguer message.
    depth = 0
    for column, char in enumerate(text, start=1):
        if char in "([{":
            depth += 1
            if depth > MAX_DEPTH:
                raise InvalidArgument(
                    f"activation {_show(text)} is not allowed: brackets nested more than "
                    f"{MAX_DEPTH} deep at {_show(text[column - 1:], 20)} (column {column}). "
                    f"Allowed: {allowed}. Fix: remove redundant brackets."
                )
        elif char in ")]}":
            depth -= 1


class _Builder:
    """Builds the expression from the tree, one whitelisted node type at a time.

    :meth:`build` returns ``(expr, value)``: the SymPy expression and, for parts that do not
    involve the variable, their approximate complex value (``None`` otherwise).
    """

    def __init__(self, source: str, variable: sympy.Symbol, functions: dict, allowed: str):
        self.source = source
        self.variable = variable
        self.functions = functions
        self.allowed = allowed
        self.alias: str | None = None  # 'z' or 'x', whichever the formula uses first
        self.deadline = time.monotonic() + MAX_BUILD_SECONDS
        # The line splitting of ast.get_source_segment, to turn byte offsets into columns.
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
        # Iterative, so measuring cannot overflow the stack; afterwards build() recurses at
        # most MAX_DEPTH levels.
        stack = [(tree.body, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH and isinstance(node, ast.expr):
                self.fail(node, f"syntax nested more than {MAX_DEPTH} levels deep at", "Simplify the formula.")
            step = 1 if isinstance(node, ast.expr) else 0
            stack.extend((child, depth + step) for child in ast.iter_child_nodes(node))

    def check_nodes(self, tree: ast.Expression) -> None:
        count = sum(1 for node in ast.walk(tree.body) if isinstance(node, ast.expr))
        if count > MAX_NODES:
            self.fail(tree.body, f"the formula has {count} parts (limit {MAX_NODES}):", "Write a shorter formula.")

    def check_power(self, base: sympy.Expr, exponent: sympy.Expr, node: ast.AST) -> None:
        """Refuse powers that SymPy would evaluate into huge numbers or slow factorings.

        SymPy computes with the rationals of the base raised to the rationals of the exponent:
        ``9**9**9**9`` directly, ``(2*z)**10**50`` as ``2**10**50 * z**10**50``, and
        ``2**(10**99 - z)`` as ``2**10**99 * 2**-z`` when it factors terms.
        """
        biggest = max((_size(r) for r in base.atoms(sympy.Rational)), default=1)
        if isinstance(exponent, sympy.Rational) and abs(exponent) > MAX_EXPONENT:
            self.fail(
                node,
                f"exponent {_short(exponent)} is too large (limit |exponent| <= {MAX_EXPONENT}) in",
                "Use a smaller exponent.",
            )
        if isinstance(exponent, sympy.Rational) and biggest > MAX_BASE:
            self.fail(node, "a numeric power's base is too large (limit 1e100) in", "Use smaller numbers in the base.")
        digits = _digits(biggest)
        for r in exponent.atoms(sympy.Rational) if digits else ():
            # the first two tests keep the float products below from overflowing
            if (
                r.q > MAX_ROOT_WORK
                or abs(r) > MAX_NUMBER_DIGITS
                or digits * r.q > MAX_ROOT_WORK
                or digits * float(abs(r)) > MAX_NUMBER_DIGITS
            ):
                self.fail(
                    node,
                    f"the power would need numbers of more than {MAX_NUMBER_DIGITS} digits in",
                    "Use smaller numbers, or a simpler exponent such as 1/2 or 3.",
                )

    def check_exp(self, argument: sympy.Expr, node: ast.AST) -> None:
        # SymPy rewrites exp(c*log(b)), also inside a sum, as b**c: check it as that power.
        for term in sympy.Add.make_args(argument):
            coefficient, rest = term.as_coeff_Mul()
            for logarithm in rest.atoms(sympy.log):
                self.check_power(logarithm.args[0], coefficient, node)

    def check_product(self, left: sympy.Expr, right: sympy.Expr, node: ast.AST) -> None:
        # SymPy merges numeric roots, 2**(1/3)*3**(1/3) -> 6**(1/3), and then factors the merged
        # base; so all roots of one product share one MAX_ROOT_WORK.
        work = sum(
            _digits(_size(factor.base)) * min(factor.exp.q, 10**6)  # min: no float overflow
            for factor in sympy.Mul.make_args(left) + sympy.Mul.make_args(right)
            if factor.is_Pow and factor.base.is_Rational and factor.exp.is_Rational
        )
        if work > MAX_ROOT_WORK:
            problem = "the product of roots of large numbers would be slow to simplify in"
            self.fail(node, problem, "Use smaller numbers under roots.")

    def check_value(self, compute: Callable[[], complex], node: ast.AST) -> complex:
        """Approximate value of a part without the variable; refuse it if huge or undefined."""
        try:
            value = complex(compute())
        except (ArithmeticError, ValueError, TypeError):  # overflow, log(0), 1/0
            value = complex(math.inf)
        if not (cmath.isfinite(value) and abs(value) <= MAX_CONSTANT):
            self.fail(
                node,
                f"the constant part is undefined or beyond {MAX_CONSTANT:g} in magnitude:",
                "Use moderate constants (and no division by zero).",
            )
        return value

    def construct(self, make: Callable[[], sympy.Expr], node: ast.AST) -> sympy.Expr:
        """Run one SymPy constructor; any failure becomes an InvalidArgument for ``node``."""
        try:
            result = make()
        except Exception as exc:  # noqa: BLE001 -- SymPy even raises AttributeError on
            # atan(tan(10**300)); e.g. max(z, 1/0) raises ValueError
            try:
                reason = f"{type(exc).__name__}: {str(exc)[:100]}"
            except Exception:  # noqa: BLE001 -- the message itself may fail to print
                reason = type(exc).__name__
            self.fail(node, f"SymPy cannot build this ({reason}):", "Check the arguments, or simplify the formula.")
        if not isinstance(result, sympy.Expr):
            self.fail(node, "this did not give a SymPy expression:", "Use functions that return SymPy expressions.")
        self.check_numbers(result, node)
        return result

    def check_numbers(self, expr: sympy.Expr, node: ast.AST) -> None:
        """Keep the invariant that every part built so far has moderate numbers."""
        for number in expr.atoms(sympy.Rational):
            if _size(number) >= 10**MAX_NUMBER_DIGITS:
                problem = f"a number with more than {MAX_NUMBER_DIGITS} digits comes from"
                self.fail(node, problem, "Use smaller numbers.")
        for power in expr.atoms(sympy.Pow, sympy.exp):
            base, exponent = power.as_base_exp()
            limit = MAX_EXPONENT_NUMERATOR if base.is_extended_real else MAX_COMPLEX_POWER_NUMERATOR
            numbers = exponent.atoms(sympy.Rational) | {exponent.as_coeff_Mul()[0]}
            if any(isinstance(n, sympy.Rational) and abs(n.p) > limit for n in numbers):
                self.fail(
                    node,
                    f"an exponent with a numerator over {limit} (of a base not known to be real) comes from"
                    if limit == MAX_COMPLEX_POWER_NUMERATOR
                    else f"an exponent with a numerator over {limit} comes from",
                    "Use simpler exponents, such as 1/2, 3 or 0.25.",
                )

    # -- building -------------------------------------------------------------------------
    def build(self, node: ast.AST) -> tuple[sympy.Expr, complex | None]:
        if time.monotonic() > self.deadline:
            problem = f"the formula took over {MAX_BUILD_SECONDS:g} s to build; stopped at"
            self.fail(node, problem, "Simplify the formula.")
        expr, value = self._build(node)
        if value is None and not expr.has(self.variable):
            # A constant the float twins could not follow: a custom function of constants, or
            # one SymPy simplified out of the variable (max(-700**z, 1e99) is 1e99).  Its parts
            # are bounded already, so evaluating it is safe; what SymPy cannot evaluate (say an
            # undefined sigmoid(2)) it cannot blow up either.
            try:
                value = complex(expr.evalf(15))
            except Exception:  # noqa: BLE001
                value = None
            else:
                value = self.check_value(lambda: value, node)
        return expr, value

    def _build(self, node: ast.AST) -> tuple[sympy.Expr, complex | None]:
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                self.fail(node, f"operator {_OPERATOR_SYMBOLS[type(node.op)]!r} in", "Use only + - * / **.")
            expr, value = self.build(node.operand)
            if isinstance(node.op, ast.UAdd):
                return expr, value
            return self.construct(lambda: -expr, node), (None if value is None else -value)
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        what, fix = _REJECTED.get(type(node), (f"{type(node).__name__} syntax", _FORMULA_FIX))
        self.fail(node, what, fix)

    def _binop(self, node: ast.BinOp) -> tuple[sympy.Expr, complex | None]:
        op = type(node.op)
        if op is ast.BitXor:
            left = ast.get_source_segment(self.source, node.left)
            right = ast.get_source_segment(self.source, node.right)
            self.fail(node, "'^' is bitwise xor in Python, not a power:", f"use ** for powers, e.g. '{left}**{right}'.")
        if op not in _OPERATORS:
            self.fail(node, f"operator {_OPERATOR_SYMBOLS[op]!r} in", "Use only + - * / **.")
        (left, left_value), (right, right_value) = self.build(node.left), self.build(node.right)
        if op is ast.Pow:
            if right_value is not None and abs(right_value) > MAX_EXPONENT:
                problem = f"exponent {str(right)[:40]} is too large (limit |exponent| <= {MAX_EXPONENT}) in"
                self.fail(node, problem, "Use a smaller exponent.")
            self.check_power(left, right, node)
            if left == sympy.E:  # E**t is exp(t)
                self.check_exp(right, node)
            for exponential in left.atoms(sympy.exp):  # exp(a)**t becomes exp(a*t)
                self.check_exp(self.construct(lambda: exponential.args[0] * right, node), node)
        if op in (ast.Mult, ast.Div):
            self.check_product(left, right, node)
        value = None
        if left_value is not None and right_value is not None:
            value = self.check_value(lambda: _OPERATORS[op](left_value, right_value), node)
        return self.construct(lambda: _OPERATORS[op](left, right), node), value

    def _constant(self, node: ast.Constant) -> tuple[sympy.Expr, complex]:
        value = node.value
        if isinstance(value, bool):  # bool is an int subclass: test it first
            self.fail(node, "boolean", "Use 1 or 0.")
        if isinstance(value, int):
            if abs(value) >= 10**MAX_INT_DIGITS:
                self.fail(node, f"integer with more than {MAX_INT_DIGITS} digits", "Use a smaller number.")
            return sympy.Integer(value), complex(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                self.fail(node, "number too large to be finite:", "Use a smaller number.")
            return sympy.Rational(repr(value)), complex(value)  # exact: 0.01 -> 1/100
        kind = {complex: "complex number", str: "string", bytes: "bytes literal"}.get(type(value), "literal")
        self.fail(node, kind, "Use real numbers only (no quotes, no 'j').")

    def _name(self, node: ast.Name) -> tuple[sympy.Expr, complex | None]:
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
            return self.variable, None
        if name in _CONSTANTS:
            expr, value = _CONSTANTS[name]
            return expr, complex(value)
        if name in self.functions:
            self.fail(node, "function used without a call:", f"call it, e.g. '{name}(z)'.")
        self.fail(node, "unknown name", "the variable must be written z (or x); no other names exist.")

    def _call(self, node: ast.Call) -> tuple[sympy.Expr, complex | None]:
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
        default = fn is DEFAULT_FUNCTIONS.get(name)
        kind = _ALIASES.get(name, name) if default else name  # Abs works as abs, and so on
        if default and kind in _VARIADIC and count < 2:
            self.fail(node, f"{name} needs at least 2 arguments, got {count}:", f"e.g. '{name}(0, z)'.")
        if default and kind in _VARIADIC and count > MAX_VARIADIC_ARGS:
            self.fail(
                node,
                f"{name} takes at most {MAX_VARIADIC_ARGS} arguments, got {count}:",
                f"nest the calls, e.g. '{name}({name}(a, b), c)', or use fewer terms.",
            )
        if default and kind not in _VARIADIC and count != 1:
            self.fail(node, f"{name} takes exactly 1 argument, got {count}:", f"e.g. '{name}(z)'.")
        nargs = getattr(fn, "nargs", None)  # SymPy Function classes declare their arity
        if not default and isinstance(nargs, sympy.Set) and count not in nargs:
            self.fail(node, f"{name} cannot take {count} argument(s):", f"Argument counts it takes: {nargs}.")

        built = [self.build(argument) for argument in node.args]
        arguments = [expr for expr, _ in built]
        values = [value for _, value in built]
        if fn is sympy.sqrt:
            self.check_power(arguments[0], sympy.S.Half, node)
        if fn is sympy.exp:
            self.check_exp(arguments[0], node)
        value = None
        if None not in values and default:
            value = self.check_value(lambda: _NUMERIC[kind](*values), node)
        return self.construct(lambda: fn(*arguments), node), value
