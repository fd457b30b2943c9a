"""Public API surface, the error hierarchy, and a table of invalid arguments."""

from __future__ import annotations

import pytest
import sympy

import symgrad
from symgrad import GradientCheckError, InvalidArgument, SymgradError


def test_all_names_are_exported_and_exist():
    for name in symgrad.__all__:
        assert hasattr(symgrad, name), name
    assert len(set(symgrad.__all__)) == len(symgrad.__all__)


def test_error_hierarchy():
    assert issubclass(InvalidArgument, SymgradError) and issubclass(InvalidArgument, ValueError)
    assert issubclass(GradientCheckError, SymgradError) and issubclass(GradientCheckError, AssertionError)


def test_chain_symbols_carry_exactly_the_literature_names():
    net = symgrad.chain(3)
    assert list(net.symbols) == ["a0", "y", "w1", "w2", "w3", "b1", "b2", "b3"]
    assert all(str(s) == n for n, s in net.symbols.items())
    assert list(net.local_symbols) == ["z1", "z2", "z3", "a1", "a2", "a3"]
    assert net.parameters == ("w1", "w2", "w3", "b1", "b2", "b3")


def test_dense_network_names_and_shapes():
    net = symgrad.network([2, 3, 1])
    assert net.parameters == ("W1", "W2", "b1", "b2")
    assert net.arrays["W1"].shape == (3, 2) and net.arrays["W2"].shape == (1, 3)
    assert net.arrays["b1"].shape == (3, 1)
    assert "W2[0,1]" in net.symbols and "b1[2]" in net.symbols and "a0[1]" in net.symbols


def test_gradient_renders_for_jupyter():
    g = symgrad.chain(2).gradient("w1")
    assert g._repr_latex_().startswith("$\\displaystyle \\frac{\\partial C}{\\partial w_{1}} = a_{0}")


def test_loss_composes_only_for_small_depths():
    assert symgrad.chain(3).cost() == sympy.Rational(1, 2) * (symgrad.chain(3).forward()["a3"] - symgrad.chain(3).symbols["y"]) ** 2
    with pytest.raises(InvalidArgument, match="too deep to compose.*MAX_COMPOSE_DEPTH"):
        symgrad.chain(symgrad.symbolic.MAX_COMPOSE_DEPTH + 1).cost()


BAD_CALLS = [
    (lambda: symgrad.chain(0), "depth=0 must be at least 1"),
    (lambda: symgrad.chain(-3), "depth=-3 must be at least 1"),
    (lambda: symgrad.chain(2.5), "depth=2.5 must be a positive int"),
    (lambda: symgrad.chain(4.0), "pass depth=4"),
    (lambda: symgrad.chain(True), "depth=True must be a positive int"),
    (lambda: symgrad.chain("4"), "depth='4' must be a positive int"),
    (lambda: symgrad.chain(None), "depth=None"),
    (lambda: symgrad.chain(symgrad.symbolic.MAX_DEPTH + 1), "exceeds the maximum"),
    (lambda: symgrad.chain(3, activation="sigmod"), "unknown activation 'sigmod'; known: sigmoid"),
    (lambda: symgrad.chain(3, activation=["tanh", "relu"]), "2 activations given for 3 layers"),
    (lambda: symgrad.chain(3, activation=42), "got 42 of type int"),
    (lambda: symgrad.chain(3, loss="hinge"), "unknown loss 'hinge'; known: quadratic"),
    (lambda: symgrad.chain(3).gradient("w4"), "unknown parameter 'w4' for a depth-3 chain; known: w1..w3"),
    (lambda: symgrad.chain(3).gradient("w0"), "unknown parameter 'w0'"),
    (lambda: symgrad.chain(3).gradient("b01"), "unknown parameter 'b01'"),
    (lambda: symgrad.chain(3).gradient("W1"), "unknown parameter 'W1'"),
    (lambda: symgrad.chain(3).gradient("c1"), "unknown parameter 'c1'"),
    (lambda: symgrad.chain(3).gradient(1), "must be a str"),
    (lambda: symgrad.network([]), "needs at least two entries"),
    (lambda: symgrad.network([3]), "needs at least two entries"),
    (lambda: symgrad.network([2, 0, 1]), r"widths\[1\]=0 must be a positive int"),
    (lambda: symgrad.network([2, -1]), r"widths\[1\]=-1"),
    (lambda: symgrad.network([2, True]), r"widths\[1\]=True"),
    (lambda: symgrad.network("2,3"), "must be a list of layer widths"),
    (lambda: symgrad.network(5), "must be a list of layer widths"),
    (lambda: symgrad.network([2, 10**6]), "exceeds the maximum width"),
    (lambda: symgrad.network([2, 3, 1]).gradient("W3"), "unknown parameter 'W3'"),
    (lambda: symgrad.network([2, 3, 1]).gradient("W1[3,0]"), "out of range: W1 has shape"),
    (lambda: symgrad.network([2, 3, 1]).gradient("b1[0,0]"), "out of range: b1 has shape"),
    (lambda: symgrad.network([2, 3, 1]).gradient("w1"), "unknown parameter 'w1'"),
    (lambda: symgrad.activation("leaky_relu", alpha="abc"), "alpha='abc' is not a number"),
    (lambda: symgrad.activation("leaky_relu", alpha=float("nan")), "alpha=nan (must be|is not) finite"),
    (lambda: symgrad.activation("elu", alpha=-1), "alpha=-1 must be > 0"),
    (lambda: symgrad.activation("tanh", alpha=1), "takes no parameters"),
    (lambda: symgrad.custom_activation(sympy.Symbol("p") * sympy.Symbol("q")), "2 free symbols"),
    (lambda: symgrad.custom_activation(lambda t: "oops"), "failed on a SymPy symbol|not a SymPy expression"),
    (lambda: symgrad.chain(sympy.Symbol("L")).gradient("v"), "kind='v' must be 'w' or 'b'"),
    (lambda: symgrad.chain(sympy.Symbol("L")).gradient("b").at(3), "pass layer="),
]


@pytest.mark.parametrize("call,message", BAD_CALLS, ids=[m[:40] for _, m in BAD_CALLS])
def test_invalid_arguments_raise_invalid_argument_naming_the_value(call, message):
    with pytest.raises(InvalidArgument, match=message):
        call()


def test_readme_quick_example_runs_as_written():
    """The README's first example is a doctest: what it shows is what symgrad prints."""
    import doctest
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n(>>>.*?)```", text, re.S).group(1)
    test = doctest.DocTestParser().get_doctest(block, {}, "README", "README.md", 0)
    runner = doctest.DocTestRunner()
    runner.run(test)
    assert runner.failures == 0 and runner.tries >= 3
