"""No user string is ever evaluated as code, through any public entry point.

Every public function, method and option that accepts an expression, an index, a bound, a name
or a number is called with hostile strings while ``eval``, ``exec``, ``compile`` and
``builtins.__import__`` are watched.  Each payload names a module that does not exist
(``symgrad_pwned_marker``): evaluating it would compile source that contains the marker, or
import it.  A call may refuse the string (a :class:`symgrad.SymgradError`, normally
``InvalidArgument``) or treat it as inert data (a file name, a LaTeX title), but code never runs.

A static audit beside it lists every call of ``eval``, ``exec``, ``compile``, ``sympify``,
``parse_expr`` and ``lambdify`` in the package, so that a new one is reviewed before it lands.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import pathlib

import numpy as np
import pytest
import sympy
from hypothesis import given, settings, strategies as st

import symgrad
from symgrad.render import latex
from symgrad.testing import properties
from symgrad.testing import strategies as S
from symgrad.proof import engine as theorems
from symgrad.cli import main as cli_main

MARKER = "symgrad_pwned_marker"

PAYLOADS = [
    "__import__('%s')" % MARKER,
    "__import__('%s').system('touch pwned') or 1" % MARKER,
    "(lambda: __import__('%s'))()" % MARKER,
    "z + __import__('%s').x" % MARKER,
    "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '%s']" % MARKER,
    "Symbol('%s')" % MARKER,
    "exec('import %s')" % MARKER,
    "1 if __import__('%s') else 2" % MARKER,
]


class CodeRan(BaseException):
    """Raised (and recorded) when a payload reaches eval/exec/compile/__import__.  A
    BaseException, so that no ``except Exception`` inside the code under test hides it."""


@contextlib.contextmanager
def watched():
    """Patch eval, exec, compile and __import__ so that any of them seeing the marker records a
    hit; everything else passes through (SymPy's lambdify legitimately compiles its own code)."""
    hits = []
    real = {name: getattr(builtins, name) for name in ("eval", "exec", "compile", "__import__")}

    def carries_marker(source) -> bool:
        if isinstance(source, bytes):
            source = source.decode("utf-8", "replace")
        if isinstance(source, str):
            return MARKER in source
        if hasattr(source, "co_consts"):  # a code object: its names and constants
            return MARKER in repr(source.co_consts) or MARKER in repr(source.co_names)
        return False

    def wrap(name):
        fn = real[name]

        def guarded(*args, **kwargs):
            first = args[0] if args else kwargs.get("source", kwargs.get("name"))
            flags = args[3] if len(args) > 3 else kwargs.get("flags", 0)
            if name == "compile" and isinstance(flags, int) and flags & ast.PyCF_ONLY_AST:
                return fn(*args, **kwargs)  # ast.parse: a syntax tree, nothing is run
            if carries_marker(first):
                hits.append((name, str(first)[:80]))
                raise CodeRan("%s(%r)" % (name, first))
            return fn(*args, **kwargs)

        return guarded

    for name in real:
        setattr(builtins, name, wrap(name))
    try:
        yield hits
    finally:
        for name, fn in real.items():
            setattr(builtins, name, fn)


def _network_inputs():
    net = symgrad.chain(3)
    params = symgrad.sample(net, 2, seed=0)
    return net, params


L = sympy.Symbol("L", integer=True, positive=True)


def _entry_points(p: str):
    """(label, thunk) for every public entry point that takes a user value, with ``p`` in that slot."""
    net, params = _network_inputs()
    dense = symgrad.network([2, 2, 1])
    dparams = symgrad.sample(dense, 2, seed=0)
    grad = net.gradient("b1")
    sg = symgrad.chain(L).gradient("b")
    z = sympy.Symbol("z", real=True)

    def with_param(name):
        q = dict(params)
        q[name] = p
        return q

    yield from [
        ("activation(p)", lambda: symgrad.activation(p)),
        ("custom_activation(p)", lambda: symgrad.custom_activation(p)),
        ("custom_activation(callable returning p)", lambda: symgrad.custom_activation(lambda _z: p)),
        ("custom_activation(expr, bound=p)", lambda: symgrad.custom_activation(z ** 2, bound=p)),
        ("activation('leaky_relu', alpha=p)", lambda: symgrad.activation("leaky_relu", alpha=p)),
        ("activation('elu', alpha=p)", lambda: symgrad.activation("elu", alpha=p)),
        ("Activation.__call__(p)", lambda: symgrad.activation("sigmoid")(p)),
        ("Activation.derivative_at(p)", lambda: symgrad.activation("tanh").derivative_at(p)),
        ("chain(p)", lambda: symgrad.chain(p)),
        ("chain(3, activation=p)", lambda: symgrad.chain(3, activation=p)),
        ("chain(3, activation=[p, ...])", lambda: symgrad.chain(3, activation=["sigmoid", p, "tanh"])),
        ("chain(3, loss=p)", lambda: symgrad.chain(3, loss=p)),
        ("network(p)", lambda: symgrad.network(p)),
        ("network([p, 1])", lambda: symgrad.network([p, 1])),
        ("network(widths, activation=p)", lambda: symgrad.network([2, 1], activation=p)),
        ("loss(p)", lambda: symgrad.loss(p)),
        ("chain.gradient(p)", lambda: net.gradient(p)),
        ("network.gradient(p)", lambda: dense.gradient(p)),
        ("SymbolicChain.gradient(p)", lambda: symgrad.chain(L).gradient(p)),
        ("SymbolicChain.gradient('b', layer=p)", lambda: symgrad.chain(L).gradient("b", layer=p)),
        ("SymbolicGradient.at(p)", lambda: sg.at(p, layer=1)),
        ("SymbolicGradient.at(3, layer=p)", lambda: sg.at(3, layer=p)),
        ("sample(net, p)", lambda: symgrad.sample(net, p)),
        ("sample(init=p)", lambda: symgrad.sample(net, 2, init=p)),
        ("sample(seed=p)", lambda: symgrad.sample(net, 2, seed=p)),
        ("sample(value=p)", lambda: symgrad.sample(net, value=p)),
        ("sample(dtype=p)", lambda: symgrad.sample(net, 2, dtype=p)),
        ("backprop(a0=p)", lambda: symgrad.backprop(net, with_param("a0"))),
        ("backprop(w2=p)", lambda: symgrad.backprop(net, with_param("w2"))),
        ("backprop(wrt=p)", lambda: symgrad.backprop(net, params, wrt=p)),
        ("backprop(backend=p)", lambda: symgrad.backprop(net, params, backend=p)),
        ("backprop(threads=p)", lambda: symgrad.backprop(net, params, threads=p)),
        ("backprop(block_size=p)", lambda: symgrad.backprop(net, params, block_size=p)),
        ("backprop(dense, W1=p)", lambda: symgrad.backprop(dense, {**dparams, "W1": p})),
        ("forward(y=p)", lambda: symgrad.forward(net, with_param("y"))),
        ("evaluate_gradient(b1=p)", lambda: symgrad.evaluate_gradient(grad, with_param("b1"))),
        ("check_gradients(wrt=p)", lambda: symgrad.check_gradients(net, params, wrt=p)),
        ("check_gradients(eps=p)", lambda: symgrad.check_gradients(net, params, eps=p)),
        ("check_gradients(rtol=p)", lambda: symgrad.check_gradients(net, params, rtol=p)),
        ("check_gradients(atol=p)", lambda: symgrad.check_gradients(net, params, atol=p)),
        ("check_gradients(fd_entries=p)", lambda: symgrad.check_gradients(net, params, fd_entries=p)),
        ("assert_vanishing(rate=p)", lambda: properties.assert_vanishing(net, params, rate=p)),
        ("assert_exploding(rate=p)", lambda: properties.assert_exploding(net, params, rate=p)),
        ("assert_derivative_in_range(p, z)", lambda: properties.assert_derivative_in_range(p, [0.0])),
        ("assert_derivative_in_range(act, p)", lambda: properties.assert_derivative_in_range("sigmoid", p)),
        ("verify_derivative_bound(p)", lambda: properties.verify_derivative_bound(p)),
        ("verify_chain_identity(activation=p)", lambda: properties.verify_chain_identity(2, activation=p)),
        ("verify_chain_identity(loss=p)", lambda: properties.verify_chain_identity(2, loss=p)),
        ("assert_chain_identity(params with p)", lambda: properties.assert_chain_identity(net, with_param("b3"))),
        ("steep_interval_width(p)", lambda: properties.steep_interval_width(p)),
        ("steep_interval(p, p)", lambda: properties.steep_interval(p, p)),
        ("assert_steep_interval(p, p, p)", lambda: properties.assert_steep_interval(p, p, p)),
        ("strategies.activations(names=[p])", lambda: S.activations(names=[p]).validate()),
        ("strategies.activations(custom=[p])", lambda: S.activations(custom=[p]).validate()),
        ("strategies.chains(activation=p)", lambda: S.chains(activation=p).validate()),
        ("strategies.chains(loss=p)", lambda: S.chains(loss=p).validate()),
        ("strategies.networks(max_width=p)", lambda: S.networks(max_width=p).validate()),
        ("strategies.parameters(regime=p)", lambda: S.parameters(net=net, regime=p).validate()),
        ("strategies.parameters(rate=p)", lambda: S.parameters(net=net, regime="vanishing", rate=p).validate()),
        ("theorems.Identity(p, p)", lambda: theorems.Identity(p, p).check()),
        ("theorems.ExactValue(p, p)", lambda: theorems.ExactValue(p, p).check()),
        ("theorems.Certificate(p, p)", lambda: theorems.Certificate(p, p).check()),
        ("theorems.Solve(p, z, p)", lambda: theorems.Solve(p, z, p).check()),
        ("theorems.Limit(p, z, 0, p)", lambda: theorems.Limit(p, z, 0, p).check()),
        ("theorems.Enclosure(p, 0, 1)", lambda: theorems.Enclosure(p, 0, 1).check()),
        ("theorems.Enclosure(z, p, p)", lambda: theorems.Enclosure(z, p, p).check()),
        ("theorems.CertifiedRoot(p, z, 0, 1)", lambda: theorems.CertifiedRoot(p, z, 0, 1, 10).check()),
        ("theorems.interval_eval(p)", lambda: theorems.interval_eval(p, {})),
        ("latex.derivation(p)", lambda: latex.derivation(p)),
        ("latex.document(title=p)", lambda: latex.document(grad, title=p)),
        ("latex.document(max_layers=p)", lambda: latex.document(grad, max_layers=p)),
    ]


CLI_OPTIONS = [
    ["derive", "--depth", "{p}"],
    ["derive", "--widths", "{p}"],
    ["derive", "--activation", "{p}"],
    ["derive", "--loss", "{p}"],
    ["derive", "--wrt", "{p}"],
    ["derive", "--format", "{p}"],
    ["check", "--depth", "2", "--activation", "{p}", "--batch", "2"],
    ["check", "--depth", "2", "--init", "{p}", "--batch", "2"],
    ["check", "--depth", "2", "--batch", "{p}"],
    ["check", "--depth", "2", "--seed", "{p}", "--batch", "2"],
    ["check", "--depth", "2", "--wrt", "{p}", "--batch", "2"],
    ["latex", "--depth", "2", "--activation", "{p}"],
    ["latex", "--depth", "2", "--wrt", "{p}"],
    ["bounds", "--activation", "{p}"],
    ["bounds", "--weight-scale", "{p}"],
    ["bounds", "--depth", "{p}"],
    ["meanfield", "--activation", "{p}", "--sigma-w2", "1"],
    ["meanfield", "--sigma-w2", "{p}"],
    ["report", "--widths", "{p}"],
    ["report", "--widths", "2,3,1", "--activation", "{p}", "--batch", "2"],
    ["report", "--widths", "2,3,1", "--output-activation", "{p}", "--batch", "2"],
    ["report", "--widths", "2,3,1", "--loss", "{p}", "--batch", "2"],
    ["report", "--widths", "2,3,1", "--weights", "{p}"],
    ["report", "--widths", "2,3,1", "--data", "{p}"],
    ["report", "--widths", "2,3,1", "--threshold", "{p}"],
]


def _labels():
    return [label for label, _ in _entry_points("x")]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("label", _labels())
def test_no_public_entry_point_runs_a_hostile_string(label, payload, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    thunk = dict(_entry_points(payload))[label]
    with watched() as hits:
        try:
            thunk()
        except (CodeRan, Exception):
            pass  # whether the refusal is clear is the next test's concern; here: did code run?
    assert not hits, "%s evaluated a user string: %s" % (label, hits)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("payload", PAYLOADS[:3])
@pytest.mark.parametrize("label", _labels())
def test_a_hostile_string_is_refused_with_invalid_argument_or_kept_inert(label, payload, monkeypatch, tmp_path):
    """Refusals are clear: a SymgradError (InvalidArgument), never a raw TypeError from deep
    inside NumPy or SymPy.  Entry points that take free text (a LaTeX title) may accept it."""
    monkeypatch.chdir(tmp_path)
    thunk = dict(_entry_points(payload))[label]
    try:
        thunk()
    except symgrad.SymgradError:
        return
    assert label in _INERT_TEXT, "%s accepted the hostile string %r" % (label, payload)


#: Entry points whose string argument is free text that is escaped, never parsed.
_INERT_TEXT = {"latex.document(title=p)"}


@pytest.mark.parametrize("payload", PAYLOADS[:4])
@pytest.mark.parametrize("argv", CLI_OPTIONS, ids=lambda a: " ".join(a[:3]))
def test_no_cli_option_runs_a_hostile_string(argv, payload, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{p}", payload) for a in argv]
    with watched() as hits:
        try:
            code = cli_main(argv)
        except SystemExit as exc:
            code = exc.code
        except CodeRan:
            code = None
    assert not hits, "symgrad %s evaluated a user string: %s" % (" ".join(argv), hits)
    assert code == 2, "symgrad %s exited %r; a hostile value must exit 2" % (" ".join(argv), code)
    err = capsys.readouterr().err.strip()
    assert err and len(err.splitlines()) == 1 and "Traceback" not in err


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("z()_.'+*/-,[]:=lambda __import__ os system 0123456789")), max_size=60)
       .map(lambda s: s + " + __import__('%s')" % MARKER))
def test_fuzzed_activation_strings_never_run_code(text):
    with watched() as hits:
        try:
            symgrad.activation(text)
        except (symgrad.SymgradError, CodeRan):
            pass
    assert not hits


def test_a_user_built_gradient_with_a_hostile_function_name_is_not_lambdified():
    """lambdify prints names into Python source: a factor carrying Function("<code>") is refused
    before it is compiled."""
    net = symgrad.chain(2)
    g = net.gradient("b1")
    hostile = sympy.Function("__import__('%s')" % MARKER)(net.symbols["y"])
    bad = symgrad.Gradient(net, "b1", g.factors[:-1] + (hostile,))
    with watched() as hits:
        with pytest.raises(symgrad.InvalidArgument, match="undefined function"):
            symgrad.evaluate_gradient(bad, symgrad.sample(net, 2, seed=0))
    assert not hits


def test_the_guard_itself_catches_sympify():
    """The watch is not vacuous: SymPy's own sympify of a payload is caught by it."""
    with watched() as hits:
        with pytest.raises(CodeRan):
            sympy.sympify(PAYLOADS[0])
    assert hits


# ---------------------------------------------------------------------------------------------
# Static audit: every place in the package that could evaluate text
# ---------------------------------------------------------------------------------------------

_PACKAGE = pathlib.Path(symgrad.__file__).parent
_RISKY = {"eval", "exec", "compile", "sympify", "parse_expr", "lambdify", "__import__"}

#: (module, enclosing function, call) → why the call cannot see a user string.
AUDITED = {
    ("numeric/_codegen.py", "_run_generated", "compile"): "source printed by symgrad.numeric._codegen from a fixed vocabulary and "
                                                          "repr(float) numbers only (test_generated_kernel_source_holds_no_user_text)",
    ("numeric/_codegen.py", "_run_generated", "exec"): "the same generated source, as above",
    ("render/latex.py", "_bound_facts", "sympify"): "DerivativeBound.sup, which DerivativeBound checks is a SymPy number or a real",
    ("render/latex.py", "_chain_bound", "sympify"): "DerivativeBound.sup, as above",
    ("render/latex.py", "_dense_derivation", "sympify"): "DerivativeBound.sup, as above",
    ("render/latex.py", "_scaled", "sympify"): "DerivativeBound.sup, as above",
    ("numeric/closed_form.py", "_lambdified", "lambdify"): "closed-form factors whose symbol and function names it checks first "
                                               "(test_a_user_built_gradient_with_a_hostile_function_name_is_not_lambdified)",
    ("proof/engine/_values.py", "_sym", "sympify"): "only after checking the value is a real number, never a string",
}


def _risky_calls():
    found = set()
    for path in sorted(_PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        stack = []

        def visit(node):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                stack.append(node.name)
                for child in ast.iter_child_nodes(node):
                    visit(child)
                stack.pop()
                return
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
                # re.compile and friends compile patterns, not code: only a bare compile() counts.
                if name == "compile" and not isinstance(f, ast.Name):
                    name = None
                if name in _RISKY:
                    found.add((path.relative_to(_PACKAGE).as_posix(), ".".join(stack) or "<module>", name))
            for child in ast.iter_child_nodes(node):
                visit(child)

        visit(tree)
    return found


def test_every_call_that_could_evaluate_text_is_audited():
    """A new eval/exec/compile/sympify/parse_expr/lambdify call fails this test until it is
    reviewed and listed in AUDITED with the reason it never sees a user string."""
    found = _risky_calls()
    unaudited = sorted(found - set(AUDITED))
    assert not unaudited, "unreviewed calls that could evaluate text: %s" % unaudited
    stale = sorted(set(AUDITED) - found)
    assert not stale, "AUDITED lists calls that no longer exist: %s" % stale
