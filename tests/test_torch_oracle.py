"""An independent oracle: PyTorch autograd (CPU, float64) on the same chains and dense networks.

PyTorch is in the ``test`` extra (``pip install -e .[test]``).  Without it these tests skip with
a loud reason locally, and FAIL in CI (``CI`` set): an oracle that silently vanishes is no oracle.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

import symgrad
from symgrad.numeric import backprop, evaluate_gradient, sample

from ._mpref import U, assert_within, chain_tolerance, dense_tolerance

try:
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None
    if os.environ.get("CI"):
        raise ImportError(
            "PyTorch is required for the autograd oracle tests in CI: install the test extra "
            "(pip install -e '.[test]', which pins torch==2.13.0)"
        )
    pytestmark = pytest.mark.skip(
        reason="!!! PyTorch NOT INSTALLED: the autograd oracle tests did NOT run. "
        "Install the test extra: pip install -e '.[test]' !!!"
    )

ACTS = [
    ("sigmoid", {}), ("tanh", {}), ("relu", {}), ("leaky_relu", {"alpha": 0.1}), ("elu", {"alpha": 0.7}),
    ("softplus", {}), ("silu", {}), ("gelu", {}), ("softsign", {}), ("identity", {}),
]


def _torch_act(name, params):
    F = torch.nn.functional
    return {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "leaky_relu": lambda x: F.leaky_relu(x, params.get("alpha", 0.01)),
        "elu": lambda x: F.elu(x, params.get("alpha", 1.0)),
        # PyTorch's default threshold=20 switches to x (φ' = 1) above 20, where σ(20) = 1 − 2e-9
        "softplus": lambda x: F.softplus(x, beta=1.0, threshold=1000.0),
        "silu": F.silu,
        "gelu": lambda x: F.gelu(x, approximate="none"),  # the exact erf GELU
        "softsign": F.softsign,
        "identity": lambda x: x,
    }[name]


def _seed(*key) -> int:
    return zlib.crc32(repr(key).encode())  # stable across runs, unlike the salted built-in hash


def _torch_loss(loss, a, y, z):
    if loss == "quadratic":
        return 0.5 * (a - y) ** 2
    # The output is a sigmoid here.  binary_cross_entropy(a, y) clamps log a at −100 and divides by
    # max(a(1 − a), 1e-12), so it is wrong for saturated outputs; the logit form is exact.
    return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")


def _torch_chain(net, acts, loss, p):
    L = net.depth
    leaves = {k: torch.tensor(np.asarray(p[k], dtype=np.float64), requires_grad=True) for k in net.parameters}
    a = torch.tensor(np.asarray(p["a0"], dtype=np.float64))
    for j in range(1, L + 1):
        z = leaves["w%d" % j] * a + leaves["b%d" % j]
        a = acts[j - 1](z)
    _torch_loss(loss, a, torch.tensor(np.asarray(p["y"], dtype=np.float64)), z).sum().backward()
    return {k: v.grad.numpy() for k, v in leaves.items()}


def _chain_case(name, params, loss, depth, seed):
    act = symgrad.activation(name, **params)
    acts = [act] * (depth - 1) + ([symgrad.activation("sigmoid")] if loss == "cross_entropy" else [act])
    net = symgrad.chain(depth, acts, loss)
    p = sample(net, 64, seed=seed)
    tacts = [_torch_act(name, params)] * (depth - 1) + [torch.sigmoid if loss == "cross_entropy" else _torch_act(name, params)]
    return net, p, tacts


@pytest.mark.parametrize("name,params", ACTS, ids=[a for a, _ in ACTS])
@pytest.mark.parametrize("loss", ["quadratic", "cross_entropy"])
def test_chain_matches_torch(name, params, loss):
    rng = np.random.default_rng(_seed(name, loss))
    depth = int(rng.integers(2, 7))
    net, p, tacts = _chain_case(name, params, loss, depth, seed=int(rng.integers(1 << 30)))
    ref = _torch_chain(net, tacts, loss, p)
    res = backprop(net, p)
    # No fixed rtol: each side within its forward-error bound of the exact gradient (tests/_mpref.py;
    # PyTorch's φ' formulas such as (1 − σ)σ add a few u absolutely to each factor).
    tol = chain_tolerance(net, p)
    tol = {k: tol[k] + v for k, v in chain_tolerance(net, p, torch_like=True).items()}
    for k in net.parameters:
        assert_within(res.grads[k], ref[k], tol[k], k)
    # and the closed form, evaluated factor by factor
    for k in ("w1", "b1", "b%d" % depth):
        assert_within(evaluate_gradient(net.gradient(k), p), ref[k], tol[k], k)


@pytest.mark.parametrize("name,params", [a for a in ACTS if a[0] in ("relu", "leaky_relu", "elu")], ids=["relu", "leaky_relu", "elu"])
def test_kink_convention_is_left_derivative_like_torch(name, params):
    # z1 = 0 exactly: φ'(0) is the left derivative in both symgrad and PyTorch
    net = symgrad.chain(2, symgrad.activation(name, **params))
    p = sample(net, value={"w1": 1.0, "b1": 0.0, "w2": 1.5, "b2": 0.25, "a0": 0.0, "y": -1.0})
    ref = _torch_chain(net, [_torch_act(name, params)] * 2, "quadratic", p)
    res = backprop(net, p)
    # at the kink itself the bound says nothing (inf): the two must agree on the branch, so here
    # the comparison is to a few u, which is what the other factors (exact at these inputs) allow
    for k in net.parameters:
        np.testing.assert_allclose(res.grads[k], ref[k], rtol=16 * U, atol=0, err_msg=k)


@pytest.mark.parametrize("name,params", ACTS, ids=[a for a, _ in ACTS])
@pytest.mark.parametrize("loss", ["quadratic", "cross_entropy"])
def test_dense_matches_torch(name, params, loss):
    rng = np.random.default_rng(_seed(name, loss, "dense"))
    widths = [int(n) for n in rng.integers(1, 6, size=int(rng.integers(3, 5)))]
    act = symgrad.activation(name, **params)
    L = len(widths) - 1
    acts = [act] * (L - 1) + ([symgrad.activation("sigmoid")] if loss == "cross_entropy" else [act])
    net = symgrad.network(widths, acts, loss)
    p = sample(net, seed=int(rng.integers(1 << 30)))  # shared weights
    B = 16
    p["a0"] = rng.normal(size=(B, widths[0]))
    p["y"] = rng.uniform(size=(B, widths[-1]))
    tf = _torch_act(name, params)
    tacts = [tf] * (L - 1) + [torch.sigmoid if loss == "cross_entropy" else tf]
    leaves = {k: torch.tensor(p[k], requires_grad=True) for k in net.parameters}
    a = torch.tensor(p["a0"])
    zs = []
    for l in range(1, L + 1):
        z = a @ leaves["W%d" % l].T + leaves["b%d" % l]
        z.retain_grad()
        zs.append(z)
        a = tacts[l - 1](z)
    _torch_loss(loss, a, torch.tensor(p["y"]), z).sum().backward()
    res = backprop(net, p)
    tol = dense_tolerance(net, p)
    tol = {k: tol[k] + v for k, v in dense_tolerance(net, p, torch_like=True).items()}
    for k in net.parameters:
        # PyTorch sums the per-sample gradients: the bounds add, and so does the sum's rounding
        summed = tol[k].sum(axis=0) + (B + 2) * U * np.abs(res.grads[k]).sum(axis=0)
        assert_within(res.total(k), leaves[k].grad.numpy(), summed, k)
    for l in range(L):
        t = tol["b%d" % (l + 1)]
        assert_within(res.deltas[l], zs[l].grad.numpy(), t, "delta%d" % (l + 1))
        # a norm moves by at most the norm of the entry errors, plus its own (n + 2) u
        n = res.deltas[l].shape[1]
        nb = np.linalg.norm(t, axis=1) + 2 * (n + 2) * U * res.layer_norms[:, l]
        assert_within(res.layer_norms[:, l], zs[l].grad.norm(dim=1).numpy(), nb, "norm%d" % (l + 1))


def test_dense_per_sample_weights_match_torch_vmap_equivalent():
    # batched W: every sample is its own network; compare sample by sample
    net = symgrad.network([3, 4, 2], "tanh")
    p = sample(net, 5, seed=3)
    res = backprop(net, p)
    tol = dense_tolerance(net, p)
    tol = {k: tol[k] + v for k, v in dense_tolerance(net, p, torch_like=True).items()}
    for i in range(5):
        leaves = {k: torch.tensor(p[k][i], requires_grad=True) for k in net.parameters}
        a = torch.tensor(p["a0"][i])
        for l in (1, 2):
            a = torch.tanh(leaves["W%d" % l] @ a + leaves["b%d" % l])
        (0.5 * (a - torch.tensor(p["y"][i])) ** 2).sum().backward()
        for k in net.parameters:
            assert_within(res.grads[k][i], leaves[k].grad.numpy(), tol[k][i], "%s[%d]" % (k, i))
