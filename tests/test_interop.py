"""PyTorch models in and out (symgrad.interop): from_torch, to_torch, check_gradients on a module,
and weight files that are never unpickled."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest
import sympy

import symgrad
from symgrad.errors import GradientCheckError, InvalidArgument
from symgrad.interop import Parameters, from_torch, load_weights, to_torch
from symgrad.testing import assert_gradient_fn, check_gradients

torch = pytest.importorskip("torch")
nn = torch.nn

U = 2.0 ** -53

# Every supported activation module with the symgrad activation it maps to (name, params).
ACTIVATIONS = [
    (nn.ReLU, {}, "relu"),
    (nn.LeakyReLU, {"negative_slope": 0.1}, "leaky_relu"),
    (nn.ELU, {"alpha": 0.7}, "elu"),
    (nn.Tanh, {}, "tanh"),
    (nn.Sigmoid, {}, "sigmoid"),
    (nn.Softplus, {}, "softplus"),
    (nn.Softplus, {"beta": 2.0}, "softplus(beta=2)"),
    (nn.SiLU, {}, "silu"),
    (nn.GELU, {}, "gelu"),
    (nn.SELU, {}, "selu"),
    (nn.Softsign, {}, "softsign"),
    (nn.Identity, {}, "identity"),
]
IDS = ["%s%s" % (cls.__name__, "(%s)" % ",".join("%s=%s" % kv for kv in kw.items()) if kw else "") for cls, kw, _ in ACTIVATIONS]


def _model(act_cls, kw, widths=(3, 5, 5, 2), seed=0):
    torch.manual_seed(seed)
    layers = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(act_cls(**kw))
    return nn.Sequential(*layers)


def _data(n_in, n_out, batch=6, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, n_in)), rng.standard_normal((batch, n_out))


def _forward_bound(net, params, x):
    """|a_L| error bound of one float64 forward pass (first order): a dot product of length n plus a
    bias is off by γ_{n+1}(|W||a| + |b|) (Higham, Accuracy and Stability, §3.1), φ amplifies an
    error by at most sup|φ'| (≤ 1.76 for SELU) and adds 8u|a| (its kernel's ≤ 4 ulps)."""
    a, da = np.abs(x), np.zeros_like(x)
    for l, act in enumerate(net.activations, start=1):
        W, b = np.abs(params["W%d" % l]), np.abs(params["b%d" % l])
        dz = da @ W.T + (W.shape[1] + 1) * U * (a @ W.T + b)
        z = np.abs(symgrad.forward(net, {**params, "a0": x, "y": np.zeros((x.shape[0], net.widths[-1]))})["z%d" % l])
        sup = 1.76 if act.name == "selu" else 1.1
        a = sup * (z + dz) + 1.0
        da = sup * dz + 8 * U * a
    return da


# ---------------------------------------------------------------------------------------------
# from_torch: the mapping
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("act_cls, kw, name", ACTIVATIONS, ids=IDS)
def test_from_torch_computes_what_the_module_computes(act_cls, kw, name):
    """The forward pass of (net, params) is the module's, within two forward passes' rounding:
    a transposed W (the hidden layers are square), a dropped bias or a wrong φ would not be."""
    model = _model(act_cls, kw).double()
    net, params = from_torch(model)
    assert net.widths == (3, 5, 5, 2)
    assert [a.name for a in net.activations] == [name, name, "identity"]
    x, y = _data(3, 2)
    ours = symgrad.forward(net, {**params, "a0": x, "y": y})["a3"]
    theirs = model(torch.from_numpy(x)).detach().numpy()
    assert np.all(np.abs(ours - theirs) <= 2 * _forward_bound(net, params, x))
    assert params.names == {"W1": "0.weight", "b1": "0.bias", "W2": "2.weight", "b2": "2.bias", "W3": "4.weight", "b3": "4.bias"}
    for k, key in params.names.items():
        assert params[k].dtype == np.float64
        assert np.array_equal(params[k], model.state_dict()[key].numpy())  # as it is: no transpose


@pytest.mark.parametrize("act_cls, kw, name", ACTIVATIONS, ids=IDS)
def test_check_gradients_on_a_module_agrees_for_every_supported_activation(act_cls, kw, name):
    model = _model(act_cls, kw)  # float32: checked in float64 on a copy, without a PrecisionWarning
    x, y = _data(3, 2)
    report = check_gradients(model, x, y)
    assert report.ok and report.checked == ["0.weight", "2.weight", "4.weight", "0.bias", "2.bias", "4.bias"]
    assert report.census["grad_fn"] == (0, 6 * (15 + 25 + 10 + 5 + 5 + 2))
    assert model[0].weight.dtype == torch.float32  # the user's module is not converted


@pytest.mark.parametrize("act_cls, kw, name", ACTIVATIONS, ids=IDS)
def test_round_trip_gives_identical_outputs_and_gradients(act_cls, kw, name):
    for dtype in (torch.float32, torch.float64):
        model = _model(act_cls, kw).to(dtype)
        net, params = from_torch(model)
        back = to_torch(net, params, dtype=dtype)
        if name != "identity":  # nn.Identity modules are not written back, so the indices shift
            assert list(back.state_dict()) == list(model.state_dict())
        for t1, t2 in zip(model.state_dict().values(), back.state_dict().values(), strict=True):
            assert torch.equal(t1, t2)
        x = torch.from_numpy(_data(3, 2)[0]).to(dtype)
        out1, out2 = model(x), back(x)
        assert torch.equal(out1, out2)
        out1.square().sum().backward()
        out2.square().sum().backward()
        for (k1, p1), (k2, p2) in zip(model.named_parameters(), back.named_parameters()):
            assert (k1 == k2 or name == "identity") and torch.equal(p1.grad, p2.grad)
        net2, params2 = from_torch(back)
        assert net2.activations == net.activations and net2.widths == net.widths
        assert all(np.array_equal(params[k], params2[k]) for k in net.parameters)


def test_consecutive_linears_final_linear_identity_and_nested_sequentials():
    model = nn.Sequential(nn.Linear(2, 3), nn.Identity(), nn.Linear(3, 3), nn.Sequential(nn.Tanh(), nn.Linear(3, 1)))
    net, params = from_torch(model)
    assert [a.name for a in net.activations] == ["identity", "tanh", "identity"]
    assert params.names == {"W1": "0.weight", "b1": "0.bias", "W2": "2.weight", "b2": "2.bias",
                            "W3": "3.1.weight", "b3": "3.1.bias"}
    assert net.loss.name == "quadratic"
    assert from_torch(model, loss="cross_entropy")[0].loss.name == "cross_entropy"


def test_a_linear_without_bias_gets_a_zero_bias_that_is_not_checked():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Tanh(), nn.Linear(4, 2))
    net, params = from_torch(model)
    assert params.names["b1"] is None and np.array_equal(params["b1"], np.zeros(4))
    assert params.state_dict_name("W2") == "2.weight"
    report = check_gradients(model, *_data(3, 2))
    assert report.ok and report.checked == ["0.weight", "2.weight", "2.bias"]


def test_dropout_is_the_identity_in_eval_mode_only():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 1))
    with pytest.raises(InvalidArgument, match=r"model\.2: Dropout"):
        from_torch(model)
    net, _ = from_torch(model.eval())
    assert [a.name for a in net.activations] == ["relu", "identity"]


def test_softplus_threshold_gap_is_within_the_module_tolerance():
    """PyTorch's softplus is x where βx > threshold (20): the slope is off by < e^-20 ≈ 2e-9
    relative to σ(βx) there, which the module comparison's rtol (1e-5) absorbs: inputs pushed
    far past the threshold still pass; a threshold below 20 is refused."""
    model = nn.Sequential(nn.Linear(2, 3), nn.Softplus(), nn.Linear(3, 1))
    with torch.no_grad():
        model[0].weight.fill_(15.0)
        model[0].bias.fill_(0.0)
    x = np.array([[1.0, 0.5], [2.0, -0.1]])  # z = 22.5 and 28.5: past the threshold
    assert check_gradients(model, x, np.zeros((2, 1))).ok
    with pytest.raises(InvalidArgument, match=r"model\.1: Softplus\(threshold=10\.0\).*threshold >= 20"):
        from_torch(nn.Sequential(nn.Linear(2, 2), nn.Softplus(threshold=10.0)))
    beta = from_torch(nn.Sequential(nn.Linear(2, 2), nn.Softplus(beta=0.5)))[0].activations[0]
    assert beta.name == "softplus(beta=1/2)"
    assert isinstance(to_torch(*from_torch(nn.Sequential(nn.Linear(2, 2), nn.Softplus(beta=0.5))))[1], nn.Softplus)


def test_a_softmax_output_with_the_log_likelihood():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3), nn.Softmax(dim=1))
    net, params = from_torch(model, loss="log_likelihood")
    assert [a.name for a in net.activations] == ["tanh", "softmax"] and net.loss.name == "log_likelihood"
    x = np.random.default_rng(0).standard_normal((5, 3))
    for y in (np.eye(3)[[0, 1, 2, 0, 1]], np.full((5, 3), 1 / 3)):
        assert check_gradients(model, x, y, loss="log_likelihood").ok
    back = to_torch(net, params, dtype=torch.float32)
    assert isinstance(back[3], nn.Softmax) and torch.equal(back(torch.ones(2, 3)), model(torch.ones(2, 3)))
    with pytest.raises(InvalidArgument, match=r"model: network: a 'softmax' output layer pairs only with loss='log_likelihood'"):
        from_torch(model)
    with pytest.raises(InvalidArgument, match=r"model\.2: Linear.* follows the output-only activation at model\.1"):
        from_torch(nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=-1), nn.Linear(4, 2)), loss="log_likelihood")
    with pytest.raises(InvalidArgument, match=r"model\.1: Softmax\(dim=0\): symgrad's softmax normalises each sample's"):
        from_torch(nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=0)), loss="log_likelihood")


def test_activation_parameters_map_exactly():
    net, _ = from_torch(nn.Sequential(nn.Linear(2, 2), nn.LeakyReLU(0.2), nn.Linear(2, 2), nn.ELU(alpha=1.5)))
    assert dict(net.activations[0].params)["alpha"] == symgrad.activation("leaky_relu", alpha=0.2).params[0][1]
    assert float(dict(net.activations[1].params)["alpha"]) == 1.5
    back = to_torch(*from_torch(nn.Sequential(nn.Linear(2, 2), nn.LeakyReLU(0.2), nn.Linear(2, 2), nn.ELU(alpha=1.5))))
    assert back[1].negative_slope == 0.2 and back[3].alpha == 1.5


# ---------------------------------------------------------------------------------------------
# from_torch: bad models
# ---------------------------------------------------------------------------------------------


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(x)


class _OwnForward(nn.Sequential):
    def forward(self, x):
        return super().forward(x) * 2


@pytest.mark.parametrize("model, pattern", [
    (nn.Sequential(), r"model: the model is empty and has no nn\.Linear"),
    (nn.Sequential(nn.Tanh()), r"model\.0: Tanh\(\) comes before the first Linear"),
    (nn.Sequential(nn.Identity()), r"model: the model has no nn\.Linear"),
    (_Net(), r"model: _Net is not an nn\.Sequential"),
    (nn.Linear(2, 2), r"Linear is not an nn\.Sequential"),
    (_OwnForward(nn.Linear(2, 2)), r"model: _OwnForward is a Sequential subclass with its own forward"),
    (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(5, 2)), r"model\.2: Linear\(in_features=5.*takes 5 inputs, but the layer "
                                                                 r"before it \(model\.0\) gives 4"),
    (nn.Sequential(nn.Linear(2, 2), nn.GELU(approximate="tanh")), r"model\.1: GELU\(approximate='tanh'\) is the tanh approximation"),
    (nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), r"model\.1: BatchNorm1d.* is not supported; from_torch reads an "
                                                        r"nn\.Sequential of Linear, ReLU, LeakyReLU"),
    (nn.Sequential(nn.Linear(2, 2), nn.LogSoftmax(dim=1)), r"model\.1: LogSoftmax.* is not supported"),
    (nn.Sequential(nn.Linear(2, 2), nn.PReLU()), r"model\.1: PReLU.* is not supported"),
    (nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.ReLU()), r"model\.2: ReLU\(\) comes right after another activation \(tanh\)"),
    (nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.Hardtanh())), r"model\.1\.1: Hardtanh"),
    (nn.Sequential(nn.Linear(2, 2), nn.ELU(alpha=-1.0)), r"model\.1: elu: alpha=-1 must be > 0"),
    (nn.Sequential(nn.Linear(2, 2), nn.Softplus(beta=-1.0)), r"model\.1: Softplus\(beta=-1\.0\): beta must be in \(0"),
    ("not a model", r"expected a torch\.nn\.Sequential, got str"),
])
def test_bad_models_are_refused_naming_the_module_path(model, pattern):
    with pytest.raises(InvalidArgument, match=pattern):
        from_torch(model)


def test_weights_that_are_not_finite_or_not_shaped_are_refused_by_state_dict_key():
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    with torch.no_grad():
        model[2].weight[0, 1] = float("nan")
    with pytest.raises(InvalidArgument, match=r"model\.2: '2\.weight' holds nan at index \(0, 1\); weights must be finite"):
        from_torch(model)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    with torch.no_grad():
        model[0].bias[2] = float("inf")
    with pytest.raises(InvalidArgument, match=r"'0\.bias' holds inf"):
        from_torch(model)
    model = nn.Sequential(nn.Linear(2, 3))
    model[0].weight = nn.Parameter(torch.zeros(2, 3))
    with pytest.raises(InvalidArgument, match=r"model\.0: .*weight '0\.weight' has shape \(2, 3\); expected \(out_features, "
                                              r"in_features\) = \(3, 2\)"):
        from_torch(model)
    with pytest.raises(InvalidArgument, match=r"is not initialised"):
        from_torch(nn.Sequential(nn.LazyLinear(2)))
    tied = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3))
    tied[2].weight = tied[0].weight
    with pytest.raises(InvalidArgument, match=r"model\.2: its weight is the same tensor as model\.0's \(tied weights\)"):
        from_torch(tied)


class _ScaledTanh(nn.Tanh):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))


def test_an_activation_with_its_own_parameters_is_refused():
    with pytest.raises(InvalidArgument, match=r"model\.1: .* has its own parameters \['scale'\]"):
        from_torch(nn.Sequential(nn.Linear(2, 2), _ScaledTanh()))


class _Residual(nn.Module):
    def __init__(self, inner, alpha=1.0):
        super().__init__()
        self.inner, self.alpha = inner, alpha

    def forward(self, x):
        return x + self.alpha * self.inner(x)


def test_residual_blocks_become_residual_layers_and_are_checked():
    from symgrad.interop.pytorch import residual_module

    torch.manual_seed(0)
    hook = lambda m: (m.inner, m.alpha) if isinstance(m, _Residual) else None  # noqa: E731
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), _Residual(nn.Sequential(nn.Linear(3, 3), nn.Tanh()), 0.5),
                          _Residual(nn.Linear(3, 3), torch.tensor(0.25)), nn.Linear(3, 1))
    net, params = from_torch(model, residual=hook)
    assert net.residual == (None, sympy.Rational(1, 2), sympy.Rational(1, 4), None)
    assert [a.name for a in net.activations] == ["tanh", "tanh", "identity", "identity"]
    assert params.names["W2"] == "2.inner.0.weight" and params.names["b3"] == "3.inner.bias"
    x, y = _data(2, 1)
    assert check_gradients_with_hook(model, x, y, hook).ok
    ours = symgrad.forward(net, {**params, "a0": x, "y": y})["a4"]
    assert np.allclose(ours, model.double()(torch.from_numpy(x)).detach().numpy(), rtol=1e-14, atol=1e-14)
    # A hook that misstates alpha is caught by the gradient check.
    wrong = lambda m: (m.inner, 2 * m.alpha) if isinstance(m, _Residual) else None  # noqa: E731
    with pytest.raises(GradientCheckError, match=r"2\.inner\.0\.weight|0\.weight"):
        check_gradients_with_hook(model, x, y, wrong)
    # symgrad's own wrapper needs no hook, and is what to_torch writes: a bit-identical round trip.
    back = to_torch(net, params)
    assert type(back[2]).__name__ == "Residual" and back[2].alpha == 0.5
    assert torch.equal(back(torch.from_numpy(x)), model(torch.from_numpy(x)))
    net2, params2 = from_torch(back)
    assert net2.residual == net.residual and all(np.array_equal(params[k], params2[k]) for k in net.parameters)
    assert check_gradients(back, x, y).ok
    path = os.path.join(tempfile.mkdtemp(), "residual.pt")
    torch.save(back.state_dict(), path)
    loaded = load_weights(path, net)
    assert loaded.names["W2"] == "2.inner.0.weight" and all(np.array_equal(loaded[k], params[k]) for k in net.parameters)
    # A symbolic α: its value from params[α.name].
    alpha = sympy.Symbol("alpha", real=True)
    snet = symgrad.network([2, 2, 1], "tanh", residual=[alpha, None])
    sp = symgrad.sample(snet, seed=0)
    with pytest.raises(InvalidArgument, match=r"layer 1's residual scale is the symbol alpha; give its value as params\['alpha'\]"):
        to_torch(snet, sp)
    assert to_torch(snet, {**sp, "alpha": 0.75})[0].alpha == 0.75
    assert isinstance(residual_module(nn.Identity(), 1), nn.Module)


def check_gradients_with_hook(model, x, y, hook):
    """check_gradients on a module whose residual blocks ``hook`` names (through module_gradients)."""
    from symgrad.interop import pytorch

    net, params, fn, names = pytorch.module_gradients(model, x, y, residual=hook)
    return symgrad.testing.check_gradients(net, params, grad_fn=fn, _names={k: v for k, v in names.items() if v})


@pytest.mark.parametrize("block, pattern", [
    (lambda: _Residual(nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))), r"inner module must be one Linear\(n, n\) and at most "
                                                                         r"one activation, got \['Linear', 'Linear'\]"),
    (lambda: _Residual(nn.Sequential(nn.Tanh(), nn.Linear(3, 3))), r"got \['Tanh', 'Linear'\]"),
    (lambda: _Residual(nn.Linear(3, 4)), r"model\.1\.inner: the residual block's Linear.* maps width 3 to 4"),
    (lambda: _Residual(nn.Linear(3, 3), nn.Parameter(torch.tensor(0.5))), r"a learnable or non-scalar alpha"),
    (lambda: _Residual(nn.Linear(3, 3), float("nan")), r"alpha=nan must be a finite real number"),
])
def test_bad_residual_blocks_are_refused(block, pattern):
    hook = lambda m: (m.inner, m.alpha) if isinstance(m, _Residual) else None  # noqa: E731
    with pytest.raises(InvalidArgument, match=pattern):
        from_torch(nn.Sequential(nn.Linear(2, 3), block(), nn.Linear(3, 1)), residual=hook)


def test_the_residual_hook_is_checked():
    model = nn.Sequential(nn.Linear(2, 3), _Residual(nn.Linear(3, 3)), nn.Linear(3, 1))
    with pytest.raises(InvalidArgument, match=r"model\.1: _Residual.* is not supported"):
        from_torch(model)
    with pytest.raises(InvalidArgument, match=r"residual=3 must be a function"):
        from_torch(model, residual=3)
    with pytest.raises(InvalidArgument, match=r"residual\(_Residual\) returned 5; it must return \(inner, alpha\) or None"):
        from_torch(model, residual=lambda m: 5 if isinstance(m, _Residual) else None)
    with pytest.raises(InvalidArgument, match=r"inner module must be a submodule"):
        from_torch(model, residual=lambda m: (nn.Linear(3, 3), 1.0) if isinstance(m, _Residual) else None)


# ---------------------------------------------------------------------------------------------
# check_gradients / assert_gradient_fn on a module: custom autograd.Functions
# ---------------------------------------------------------------------------------------------


class _TanhFn(torch.autograd.Function):
    wrong = False

    @staticmethod
    def forward(ctx, x):
        t = torch.tanh(x)
        ctx.save_for_backward(t)
        return t

    @staticmethod
    def backward(ctx, g):
        (t,) = ctx.saved_tensors
        return g * (1 - t) if _TanhFn.wrong else g * (1 - t * t)  # wrong: 1 − t instead of 1 − t²


class _MyTanh(nn.Tanh):
    def forward(self, x):
        return _TanhFn.apply(x)


class _Custom(nn.Module):  # not a subclass of any supported module: mapped with activations=
    def forward(self, x):
        return _TanhFn.apply(x)


class _LinearFn(torch.autograd.Function):
    """The LinearFunction of PyTorch's "Extending PyTorch", with a switchable bug in ∂/∂W."""

    wrong = False

    @staticmethod
    def forward(ctx, x, W, b):
        ctx.save_for_backward(x, W)
        return x @ W.T + b

    @staticmethod
    def backward(ctx, g):
        x, W = ctx.saved_tensors
        gW = g.T @ x
        return g @ W, (gW.T.reshape(gW.shape) if _LinearFn.wrong else gW), g.sum(0)


class _MyLinear(nn.Linear):
    def forward(self, x):
        return _LinearFn.apply(x, self.weight, self.bias)


@pytest.fixture
def wrong():
    yield
    _TanhFn.wrong = _LinearFn.wrong = False


def test_a_correct_custom_function_passes():
    torch.manual_seed(0)
    model = nn.Sequential(_MyLinear(3, 3), _MyTanh(), nn.Linear(3, 2))
    report = assert_gradient_fn(model, *_data(3, 2))
    assert report.ok and report.checked[0] == "0.weight"


def test_a_wrong_custom_backward_is_caught_and_named_by_state_dict_key(wrong):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), _MyTanh(), nn.Linear(4, 2))
    x, y = _data(3, 2)
    _TanhFn.wrong = True
    with pytest.raises(GradientCheckError) as info:
        check_gradients(model, x, y)
    msg = str(info.value)
    assert "grad_fn: ∂C/∂0.weight[" in msg and "grad_fn: ∂C/∂0.bias[" in msg
    assert "2.weight" not in msg and "2.bias" not in msg and "W1" not in msg  # the layer after it is right
    report = check_gradients(model, x, y, raise_on_failure=False)
    assert not report.ok and report.census["backprop"][0] == 0 and report.census["finite_difference"][0] == 0
    assert {w["param"] for w in report.worst} <= {"0.weight", "0.bias"}
    with pytest.raises(GradientCheckError, match=r"0\.bias"):
        assert_gradient_fn(model, x, y)
    # The same Function in a module of the user's own, mapped by activations=
    custom = nn.Sequential(nn.Linear(3, 4), _Custom(), nn.Linear(4, 2))
    with pytest.raises(InvalidArgument, match=r"model\.1: _Custom\(\) is not supported.*activations=\{_Custom:"):
        from_torch(custom)
    assert from_torch(custom, activations={_Custom: "tanh"})[0].activations[0].name == "tanh"


def test_a_wrong_custom_linear_backward_is_caught(wrong):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Sigmoid(), _MyLinear(3, 3))
    _LinearFn.wrong = True
    report = check_gradients(model, *_data(3, 3), raise_on_failure=False)
    assert not report.ok and {w["param"] for w in report.worst} == {"2.weight"}
    assert check_gradients(model, *_data(3, 3), wrt=["0.weight", "2.bias"]).ok


def test_module_checks_with_cross_entropy_wrt_and_unbatched_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ELU(), nn.Linear(4, 2), nn.Sigmoid())
    x, _ = _data(3, 2)
    y = np.random.default_rng(3).uniform(0, 1, (6, 2))
    assert check_gradients(model, x, y, loss="cross_entropy").ok
    assert check_gradients(model, x, y, wrt="2.weight").checked == ["2.weight"]
    assert check_gradients(model, x, y, wrt=["W1"]).checked == ["0.weight"]
    assert check_gradients(model, x[0], y[0]).ok
    assert check_gradients(model, torch.from_numpy(x).float(), torch.from_numpy(y)).ok


@pytest.mark.parametrize("args, kwargs, pattern", [
    ((np.ones((5, 4)), np.ones((5, 2))), {}, r"inputs have shape \(5, 4\); the model's first Linear takes 3 features: expected "
                                             r"\(batch, 3\) or \(3,\)"),
    ((np.ones((5, 3)), np.ones((5, 3))), {}, r"targets have shape \(5, 3\); the model gives 2 outputs"),
    ((np.ones((5, 3)), np.ones((4, 2))), {}, r"inputs have 5 samples but targets 4"),
    ((np.ones((2, 5, 3)), np.ones((5, 2))), {}, r"inputs have shape \(2, 5, 3\)"),
    ((np.ones((5, 3), dtype=int), np.ones((5, 2))), {}, r"inputs has dtype int64"),
    ((np.full((5, 3), np.nan), np.ones((5, 2))), {}, r"'inputs' holds nan"),
    ((np.ones((5, 3)),), {}, r"the targets are missing"),
    ((np.ones((5, 3)), np.ones((5, 2))), {"grad_fn": lambda p: p}, r"grad_fn= with a PyTorch module"),
    ((np.ones((5, 3)), np.ones((5, 2))), {"wrt": "9.weight"}, r"wrt='9\.weight' must name the module's parameters by "
                                                               r"state_dict key; known: 0\.weight"),
    ((np.ones((5, 3)), np.ones((5, 2))), {"loss": "hinge"}, r"unknown loss 'hinge'"),
])
def test_bad_inputs_for_a_module_check(args, kwargs, pattern):
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    with pytest.raises(InvalidArgument, match=pattern):
        check_gradients(model, *args, **kwargs)


def test_targets_and_loss_are_for_modules_only():
    net = symgrad.chain(2)
    p = symgrad.sample(net, seed=0)
    with pytest.raises(InvalidArgument, match=r"targets= and loss= are for a PyTorch module"):
        check_gradients(net, p, np.zeros(1))
    with pytest.raises(InvalidArgument, match=r"targets= and loss= are for a PyTorch module"):
        assert_gradient_fn(net, p, lambda q: {}, loss="quadratic")


# ---------------------------------------------------------------------------------------------
# to_torch
# ---------------------------------------------------------------------------------------------


def test_to_torch_of_a_sampled_network_and_a_chain():
    net = symgrad.network([2, 3, 1], ["relu", "sigmoid"])
    p = symgrad.sample(net, seed=0)
    model = to_torch(net, p)
    assert model[0].weight.dtype == torch.float64 and [type(m).__name__ for m in model] == ["Linear", "ReLU", "Linear", "Sigmoid"]
    x = torch.from_numpy(p["a0"])[None]
    assert torch.equal(model[0].weight, torch.from_numpy(p["W1"]))
    out = symgrad.forward(net, p)["a2"]
    assert abs(float(model(x).detach()[0, 0]) - float(out[0])) <= 1e-15
    chain = symgrad.chain(3, "tanh")
    cp = symgrad.sample(chain, seed=0)
    cm = to_torch(chain, cp)
    assert [type(m).__name__ for m in cm] == ["Linear", "Tanh"] * 3
    assert float(cm[2].weight.detach()) == cp["w2"] and float(cm[4].bias.detach()) == cp["b3"]
    f32 = {k: np.float32(v) for k, v in cp.items()}
    assert to_torch(chain, f32)[0].weight.dtype == torch.float32
    assert to_torch(chain, cp, dtype="float32")[0].weight.dtype == torch.float32
    assert to_torch(chain, cp, dtype=np.float64)[0].weight.dtype == torch.float64


@pytest.mark.parametrize("change, pattern", [
    (lambda net, p: (net, {k: v for k, v in p.items() if k != "W2"}), r"params has no 'W2'"),
    (lambda net, p: (net, symgrad.sample(net, 4, seed=0)), r"'W1' has shape \(4, 3, 2\); expected \(3, 2\) \(one network's "
                                                          r"parameters, not a batch\)"),
    (lambda net, p: (net, {**p, "b1": np.array([0.0, np.inf, 0.0])}), r"to_torch: 'b1' holds inf at index \(1,\)"),
    (lambda net, p: (symgrad.network([2, 3, 1], "z*tanh(z)"), p), r"layer 1's activation 'z\*tanh\(z\)' has no PyTorch module"),
    (lambda net, p: ("net", p), r"net must be a symgrad chain or network"),
    (lambda net, p: (net, [1, 2]), r"params must be a mapping"),
])
def test_to_torch_refuses_bad_arguments(change, pattern):
    net = symgrad.network([2, 3, 1])
    p = symgrad.sample(net, seed=0)
    with pytest.raises(InvalidArgument, match=pattern):
        to_torch(*change(net, p))
    with pytest.raises(InvalidArgument, match=r"dtype='float16' must be torch\.float32 or torch\.float64"):
        to_torch(net, p, dtype="float16")


# ---------------------------------------------------------------------------------------------
# Weight files: never unpickled
# ---------------------------------------------------------------------------------------------


class _Hostile:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def model_and_net():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    return model, from_torch(model)[0]


def test_load_weights_from_npz_and_state_dict_files(tmp_path, model_and_net):
    model, net = model_and_net
    _, params = from_torch(model)
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    np.savez(tmp_path / "by_key.npz", **sd)
    np.savez(tmp_path / "by_name.npz", **params, a0=np.zeros(3), y=np.zeros(2))
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    torch.save({"epoch": 3, "state_dict": model.state_dict()}, tmp_path / "ckpt.pth")
    for name in ("by_key.npz", "by_name.npz", "sd.pt", "ckpt.pth"):
        got = load_weights(tmp_path / name, net)
        assert isinstance(got, Parameters) and list(got) == list(net.parameters)
        assert all(np.array_equal(got[k], params[k]) for k in net.parameters), name
    assert load_weights(tmp_path / "sd.pt", net).names == {"W1": "0.weight", "W2": "2.weight", "b1": "0.bias", "b2": "2.bias"}
    assert load_weights(str(tmp_path / "by_name.npz"), net).names["W2"] == "W2"
    # Layers in the order of their paths (2 before 10), a missing bias is zero, a chain's Linear(1, 1)s
    np.savez(tmp_path / "order.npz", **{"10.weight": np.ones((2, 4)), "2.weight": np.ones((4, 3)), "2.bias": np.ones(4)})
    got = load_weights(tmp_path / "order.npz", net)
    assert got.names == {"W1": "2.weight", "W2": "10.weight", "b1": "2.bias", "b2": None} and not got["b2"].any()
    chain = symgrad.chain(2, "tanh")
    torch.save(to_torch(chain, symgrad.sample(chain, seed=0)).state_dict(), tmp_path / "chain.pt")
    cp = load_weights(tmp_path / "chain.pt", chain)
    assert cp["w2"].shape == () and float(cp["w2"]) == symgrad.sample(chain, seed=0)["w2"]


def test_hostile_pickles_are_refused_and_never_run(tmp_path, model_and_net):
    _, net = model_and_net
    marker = tmp_path / "MARKER"
    raw = tmp_path / "raw.pt"
    with open(raw, "wb") as fh:
        pickle.dump({"0.weight": _Hostile(str(marker))}, fh)
    # The control: unpickling this file does run code (in a child process, on a file in tmp_path).
    code = "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))"
    subprocess.run([sys.executable, "-c", code, str(raw)], capture_output=True, timeout=300, check=True)
    assert marker.exists()
    marker.unlink()
    saved = tmp_path / "saved.pt"
    torch.save({"0.weight": _Hostile(str(marker))}, saved)
    with open(tmp_path / "pickle.npz", "wb") as fh:
        pickle.dump(_Hostile(str(marker)), fh)
    np.savez(tmp_path / "objects.npz", W1=np.array([_Hostile(str(marker))], dtype=object))
    cases = [(raw, r"refused: it needs full unpickling, which can run arbitrary code \(torch\.load\(weights_only=True\) says: "),
             (saved, r"refused: it needs full unpickling.*Unsupported global: GLOBAL io\.open"),
             (tmp_path / "pickle.npz", r"refused: it is a pickle, and symgrad never unpickles"),
             (tmp_path / "objects.npz", r"refused: its entry 'W1' is a pickled object array")]
    for path, pattern in cases:
        with pytest.raises(InvalidArgument, match=pattern):
            load_weights(path, net)
        assert not marker.exists(), path
    torch.save(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)), tmp_path / "module.pt")  # a whole module
    with pytest.raises(InvalidArgument, match=r"needs full unpickling.*Unsupported global: GLOBAL torch\.nn\.modules\.container"
                                              r"\.Sequential.*Fix: save the state_dict only"):
        load_weights(tmp_path / "module.pt", net)


def test_unreadable_and_ill_fitting_weight_files_are_refused_naming_the_file(tmp_path, model_and_net):
    model, net = model_and_net
    torch.save(model.state_dict(), tmp_path / "ok.pt")
    np.savez(tmp_path / "ok.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "trunc.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:-50])
    (tmp_path / "garbage.pt").write_bytes(b"not a weights file")
    (tmp_path / "garbage.npz").write_bytes(b"not a weights file")
    (tmp_path / "empty.pt").write_bytes(b"")
    np.save(tmp_path / "one.npy", np.ones(3))
    os.replace(tmp_path / "one.npy", tmp_path / "one.npz")
    np.savez(tmp_path / "nan.npz", **{"0.weight": np.full((4, 3), np.nan), "0.bias": np.zeros(4), "2.weight": np.zeros((2, 4))})
    np.savez(tmp_path / "ints.npz", W1=np.ones((4, 3), dtype=int), W2=np.ones((2, 4)), b1=np.ones(4), b2=np.ones(2))
    np.savez(tmp_path / "shape.npz", **{"0.weight": np.ones((3, 4)), "2.weight": np.ones((2, 4))})
    np.savez(tmp_path / "layers.npz", **{"0.weight": np.ones((4, 3))})
    np.savez(tmp_path / "extra.npz", **{"0.weight": np.ones((4, 3)), "1.running_mean": np.ones(4)})
    np.savez(tmp_path / "names.npz", W1=np.ones((4, 3)), b1=np.ones(4))
    torch.save([1, 2], tmp_path / "list.pt")
    (tmp_path / "w.txt").write_text("1 2 3")
    cases = {
        "trunc.pt": r"'.*trunc\.pt' is not a readable PyTorch file, or is truncated \(RuntimeError: PytorchStreamReader",
        "trunc.npz": r"'.*trunc\.npz' is not a readable \.npz archive, or is truncated",
        "garbage.pt": r"'.*garbage\.pt' is not a PyTorch file \(neither a zip archive nor a pickle\)",
        "garbage.npz": r"'.*garbage\.npz' is not an \.npz archive",
        "empty.pt": r"'.*empty\.pt' is empty",
        "one.npz": r"is a single \.npy array",
        "nan.npz": r"'0\.weight' holds nan at index \(0, 0\)",
        "ints.npz": r"'W1' has dtype int64",
        "shape.npz": r"'0\.weight' has shape \(3, 4\); layer 1 of .* needs \(out, in\) = \(4, 3\)",
        "layers.npz": r"has 1 Linear layers \(0\) but .* has 2",
        "extra.npz": r"'1\.running_mean' is neither a symgrad name",
        "names.npz": r"does not fit .*missing \['W2', 'b2'\]",
        "list.pt": r"holds a list, not a state_dict",
        "w.txt": r"unknown type '\.txt'; symgrad reads \.npz, \.pt, \.pth",
        "missing.pt": r"'.*missing\.pt' does not exist",
    }
    for name, pattern in cases.items():
        with pytest.raises(InvalidArgument, match=pattern):
            load_weights(tmp_path / name, net)
    with pytest.raises(InvalidArgument, match=r"path=3 must be a file path"):
        load_weights(3, net)
    with pytest.raises(InvalidArgument, match=r"net must be a symgrad chain or network"):
        load_weights(tmp_path / "ok.pt", model)


# ---------------------------------------------------------------------------------------------
# PyTorch stays optional
# ---------------------------------------------------------------------------------------------


def test_symgrad_works_without_torch(tmp_path):
    """With torch unimportable: import symgrad, check a network, load an .npz; the PyTorch entry
    points say how to install it."""
    np.savez(tmp_path / "w.npz", W1=np.ones((1, 2)), b1=np.zeros(1))
    torch.save({"0.weight": torch.ones(1, 2)}, tmp_path / "w.pt")
    code = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None  # import torch now raises ImportError
        import numpy as np, symgrad
        from symgrad.interop import load_weights
        net = symgrad.network([2, 1])
        assert symgrad.check_gradients(net, symgrad.sample(net, 3, seed=0)).ok
        assert load_weights(sys.argv[1] + "/w.npz", net)["W1"].shape == (1, 2)
        for call in (lambda: symgrad.to_torch(net, symgrad.sample(net, seed=0)),
                     lambda: load_weights(sys.argv[1] + "/w.pt", net)):
            try:
                call()
            except symgrad.InvalidArgument as exc:
                assert "needs PyTorch, which is not installed. Fix: pip install 'symgrad[torch]'" in str(exc), exc
            else:
                raise AssertionError("no error")
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_importing_symgrad_interop_does_not_import_torch():
    code = "import sys, symgrad.interop, symgrad.testing.gradcheck; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "False"


def test_parameters_keep_their_names_through_copies_and_pickles():
    import copy

    p = Parameters({"W1": np.eye(2)}, names={"W1": "0.weight"})
    for q in (copy.deepcopy(p), pickle.loads(pickle.dumps(p))):
        assert q.names == {"W1": "0.weight"} and np.array_equal(q["W1"], np.eye(2))
    with pytest.raises(InvalidArgument, match=r"'b9' is not a parameter here; known: W1"):
        p.state_dict_name("b9")


def test_the_readme_pytorch_example_runs_as_shown():
    """The README's "PyTorch models" example is a doctest: what it shows is what symgrad prints."""
    import doctest
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- pytorch-example:start -->\n```python\n(.*?)```\n<!-- pytorch-example:end -->", text, re.S)
    assert m, "README.md lost the PyTorch example markers"
    test = doctest.DocTestParser().get_doctest(m.group(1), {}, "README-pytorch", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


_MODULES = [lambda: nn.ReLU(), lambda: nn.LeakyReLU(0.05), lambda: nn.ELU(0.5), lambda: nn.Tanh(), lambda: nn.Sigmoid(),
            lambda: nn.Softplus(), lambda: nn.SiLU(), lambda: nn.GELU(), lambda: nn.Softsign(), lambda: nn.Identity(), None]


def test_drawn_models_round_trip_and_their_gradients_agree():
    """Drawn Sequentials (1 to 4 Linear layers of widths 1..5, each followed by a drawn activation
    or by none, with or without bias): to_torch(from_torch(m)) computes m's outputs bit for bit,
    and m's autograd gradients agree with the closed forms."""
    from hypothesis import given, settings, strategies as st

    @settings(max_examples=25, deadline=None, derandomize=True)
    @given(st.data())
    def run(data):
        widths = data.draw(st.lists(st.integers(1, 5), min_size=2, max_size=5), label="widths")
        seed = data.draw(st.integers(0, 2**16), label="seed")
        torch.manual_seed(seed)
        layers = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1], bias=data.draw(st.booleans(), label="bias")))
            make = data.draw(st.sampled_from(_MODULES), label="activation")
            if make is not None:
                layers.append(make())
        model = nn.Sequential(*layers).double()
        net, params = from_torch(model)
        assert net.widths == tuple(widths)
        x = torch.from_numpy(np.random.default_rng(seed).standard_normal((3, widths[0])))
        assert torch.equal(to_torch(net, params)(x), model(x))
        assert check_gradients(model, x.numpy(), np.zeros((3, widths[-1])), fd_entries=8).ok

    run()
