"""``symgrad.symbolic.verify.verify_gradient``: exact match up to the documented compose limit, a
mismatch for wrong closed forms (even wrong by 1e-25), "unknown" when the budget runs out."""

from __future__ import annotations

import sympy
import pytest

import symgrad
from symgrad.symbolic.derivation import Gradient
from symgrad.symbolic.networks import MAX_COMPOSE_DEPTH
from symgrad.symbolic.verify import VerifyResult, verify_gradient

BUILTINS = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu", "softsign", "identity"]


@pytest.mark.parametrize("depth", [1, 2, 5, 12, 37])
def test_sigmoid_chain_verifies_at_every_tested_depth_up_to_the_limit(depth):
    net = symgrad.chain(depth)
    for name in ("b1", "w%d" % depth, "a0"):
        res = verify_gradient(net, name, seconds=60)
        assert res.status == "exact match", (depth, name, res)


def test_depth_64_the_documented_limit_verifies():
    # About 1.5 s for b1 on the project's machine (was a RecursionError from depth 37 on).
    assert MAX_COMPOSE_DEPTH == 64
    res = verify_gradient(symgrad.chain(64), "b1", seconds=120)
    assert res.ok and res.status == "exact match", res


def test_depth_65_is_refused_before_any_work():
    with pytest.raises(symgrad.InvalidArgument, match="too deep to compose"):
        verify_gradient(symgrad.chain(MAX_COMPOSE_DEPTH + 1), "b1")


@pytest.mark.parametrize("act", BUILTINS)
def test_every_builtin_activation_verifies(act):
    net = symgrad.chain(4, activation=act)
    for name in ("b1", "w2", "b4"):
        assert verify_gradient(net, name, seconds=60).status == "exact match", (act, name)


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "softplus", "identity", "elu"])
def test_one_function_activations_verify_at_depth_24(act):
    assert verify_gradient(symgrad.chain(24, activation=act), "b1", seconds=60).ok


@pytest.mark.parametrize("widths, name, act", [([2, 3, 1], "W2[0,1]", "sigmoid"), ([2, 3, 1], "W1", "tanh"),
                                                ([2, 3, 1], "b1", "silu"), ([2, 2, 2, 1], "a0", "sigmoid"),
                                                ([2, 2, 1], "b2[0]", "softsign")])
def test_dense_gradients_verify(widths, name, act):
    assert verify_gradient(symgrad.network(widths, activation=act), name, seconds=60).ok


def test_cross_entropy_verifies():
    assert verify_gradient(symgrad.chain(5, loss="cross_entropy"), "w3").ok
    assert verify_gradient(symgrad.chain(3, activation="tanh", loss="cross_entropy"), "b1").ok


def _wrong(g, change):
    return Gradient(g.network, g.wrt, tuple(change(list(g.factors))), g._entry)


@pytest.mark.parametrize("depth", [3, 37])
@pytest.mark.parametrize("mutation", ["sign", "drop", "swap", "tiny", "output"])
def test_wrong_closed_forms_are_mismatches(depth, mutation):
    net = symgrad.chain(depth)
    g = net.gradient("b1")
    w = net.symbols
    change = {
        "sign": lambda f: [-f[0]] + f[1:],
        "drop": lambda f: f[:1] + f[2:],                       # loses w2
        "swap": lambda f: [x.xreplace({w["w2"]: w["w3"]}) for x in f],
        # wrong by a relative 1e-25: far below float64, far above the 60-digit check's rounding
        "output": lambda f: f[:-1] + [f[-1] + net.local_symbols["a%d" % depth]],  # 2 a_L - y: one coefficient off
        "tiny": lambda f: [f[0] * (1 + sympy.Rational(1, 10 ** 25))] + f[1:],
    }[mutation]
    res = verify_gradient(net, _wrong(g, change), seconds=60)
    assert res.status == "mismatch" and "sympy.diff gives" in res.reason, res


def test_a_difference_below_the_numeric_resolution_is_unknown_never_a_match():
    net = symgrad.chain(3)
    g = net.gradient("b1")
    off = _wrong(g, lambda f: [f[0] * (1 + sympy.Rational(1, 10 ** 40))] + f[1:])
    res = verify_gradient(net, off, seconds=60)
    assert res.status == "unknown" and "could not reduce" in res.reason, res


def test_dense_mismatch_names_the_entry():
    net = symgrad.network([2, 3, 1])
    g = net.gradient("W1")
    res = verify_gradient(net, _wrong(g, lambda f: f[:-1] + [2 * f[-1]]), seconds=60)
    assert res.status == "mismatch" and "entry" in res.reason, res


def test_running_out_of_budget_is_unknown_with_the_reason():
    res = verify_gradient(symgrad.chain(40, activation="silu"), "b1", seconds=0.2)
    assert res == VerifyResult("unknown", res.reason) and "budget of 0.2 s" in res.reason
    assert not res.ok and str(res).startswith("unknown (")


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "10", True])
def test_bad_budget_is_refused(bad):
    with pytest.raises(symgrad.InvalidArgument, match="seconds"):
        verify_gradient(symgrad.chain(2), "b1", seconds=bad)


def test_a_gradient_of_another_network_is_refused():
    with pytest.raises(symgrad.InvalidArgument, match="Gradient of this network"):
        verify_gradient(symgrad.chain(3), symgrad.chain(3).gradient("b1"))
