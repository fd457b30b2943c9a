"""PyTorch models in and out: :func:`from_torch`, :func:`to_torch`, and a module's own gradients.

``pip install 'symgrad[torch]'``.  PyTorch is imported only when one of these functions is
called: ``import symgrad`` and everything outside :mod:`symgrad.interop` work without it.

The mapping (``nn.Linear(n_in, n_out)`` is ``z = x Wᵀ + b`` on a row of inputs, symgrad's
``z^l = W^l a^{l−1} + b^l`` on a column, so ``W^l`` *is* PyTorch's ``weight``, shape
``(n_out, n_in)``, with no transpose; ``b^l`` is its ``bias``):

================================  =====================================================
PyTorch module                    symgrad
================================  =====================================================
``Linear(n_in, n_out)``           one layer ``W^l`` (n_out × n_in), ``b^l`` (zero for
                                  ``bias=False``)
``ReLU``, ``Tanh``, ``Sigmoid``,  ``relu``, ``tanh``, ``sigmoid``, ``silu``, ``selu``,
``SiLU``, ``SELU``, ``Softsign``  ``softsign``: the same functions
``GELU()``                        ``gelu``, the exact ``z·Φ(z)``; ``approximate="tanh"``
                                  is refused
``LeakyReLU(negative_slope=α)``   ``leaky_relu(alpha=α)``
``ELU(alpha=α)``                  ``elu(alpha=α)`` (α > 0)
``Softplus(beta=1)``              ``softplus``; ``beta=β ≠ 1``: the custom activation
                                  ``softplus(β z)/β``
``Softmax(dim=-1)`` (or dim=1)     ``softmax``, as the output layer only, with
as the last activation            ``loss="log_likelihood"``
``Identity``; ``Dropout`` in      nothing (skipped); a ``Dropout`` in training mode is
eval mode (``model.eval()``)      refused (its gradients are random)
two ``Linear`` in a row, or a     the identity activation on that layer
final ``Linear``
nested ``Sequential``             flattened (paths ``model.1.0``)
================================  =====================================================

``Softplus`` and its ``threshold``: PyTorch returns ``x`` itself where ``β x > threshold``
(default 20) instead of ``ln(1 + e^{βx})/β``, which symgrad computes exactly everywhere.  The two
differ there by less than ``e^{−threshold}/β`` in the value and ``e^{−threshold}`` (2·10⁻⁹ at the
default) in the slope φ' = σ(βx), relative to a slope within 2·10⁻⁹ of 1: far inside
:func:`~symgrad.check_gradients`' ``rtol`` for a module (10⁻⁵).  A ``threshold`` below 20 is
refused (its gap, e^{−threshold}, would reach that tolerance); :func:`to_torch` writes the default.

A subclass of a supported module (``class MyTanh(nn.Tanh)`` whose ``forward`` calls a custom
``autograd.Function``) is read as its base's function: that is the claim
:func:`~symgrad.check_gradients` then checks against the closed form.  ``activations=`` maps any
other module type to a symgrad activation the same way.

Residual blocks ``x + alpha·inner(x)``, with ``inner`` one ``Linear(n, n)`` and at most one
activation and ``alpha`` a fixed number, become residual layers
``a_l = a_{l−1} + α φ(W_l a_{l−1} + b_l)`` (``network(..., residual=[..., alpha, ...])``).  Your
own wrapper is named by the ``residual=`` hook, a function ``residual(module) -> (inner, alpha) or
None``; symgrad's own, :func:`residual_module` (what :func:`to_torch` writes), needs none.  The
block's ``forward`` is yours: :func:`~symgrad.check_gradients` on the module checks that it is
``x + alpha·inner(x)``.

Checking a model's gradients (its custom ``autograd.Function`` s included) against the closed
forms, parameter by parameter, named by ``state_dict`` key:

>>> import numpy as np, torch, symgrad
>>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
>>> symgrad.check_gradients(model, np.ones((5, 3)), np.zeros((5, 1))).checked
['0.weight', '2.weight', '0.bias', '2.bias']
"""

from __future__ import annotations

import copy
import math

import numpy as np
import sympy

from symgrad.errors import InvalidArgument
from symgrad.interop._common import Parameters, finite_array, is_torch_module, torch_module
from symgrad.spec.activations import Activation, activation as _activation, custom_activation, softplus, z
from symgrad.spec.losses import loss as _loss
from symgrad.symbolic.networks import Chain, Network

__all__ = ["from_torch", "to_torch", "module_gradients", "residual_module", "SUPPORTED_MODULES", "SOFTPLUS_MIN_THRESHOLD"]

#: The modules :func:`from_torch` reads (subclasses too), as its messages list them.
SUPPORTED_MODULES = ("Linear", "ReLU", "LeakyReLU", "ELU", "Tanh", "Sigmoid", "Softplus", "SiLU", "GELU (approximate='none')",
                     "SELU", "Softsign", "Softmax(dim=-1) as the output with loss='log_likelihood'", "Identity",
                     "Dropout (in eval mode)", "nested Sequential")

#: Smallest ``Softplus(threshold=...)`` accepted: above ``β x > threshold`` PyTorch's softplus is
#: the identity, off the exact one by e^{−threshold} in slope (module docstring).
SOFTPLUS_MIN_THRESHOLD = 20.0

# Largest β accepted for Softplus(beta=β) (as symgrad bounds a built-in's parameters).
_MAX_BETA = 1e6


def _supported() -> str:
    return ", ".join(SUPPORTED_MODULES)


def _describe(mod) -> str:
    try:
        text = repr(mod)
    except Exception:  # noqa: BLE001 - a user's module whose repr fails: name its type
        text = type(mod).__name__
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------------------------------------
# Reading a module
# ---------------------------------------------------------------------------------------------


#: symgrad's residual wrapper class, made on first use (it subclasses torch.nn.Module, and PyTorch
#: is imported only when needed); see :func:`residual_module`.
_RESIDUAL_CLASS: list = []


def residual_module(inner, alpha):
    """symgrad's residual block for PyTorch, ``forward(x) = x + alpha·inner(x)``: what
    :func:`to_torch` writes for a residual layer (``inner`` = ``Sequential(Linear(n, n), φ)``), and
    what :func:`from_torch` reads as one without a ``residual=`` hook.  ``alpha``: a finite number
    (kept as a Python float, not a parameter).

    >>> import torch
    >>> block = residual_module(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh()), 0.5)
    >>> block
    Residual(
      alpha=0.5
      (inner): Sequential(
        (0): Linear(in_features=2, out_features=2, bias=True)
        (1): Tanh()
      )
    )
    """
    torch = torch_module("residual_module")
    if not _RESIDUAL_CLASS:
        class Residual(torch.nn.Module):
            """x + alpha·inner(x) (symgrad.interop.pytorch.residual_module)."""

            def __init__(self, inner, alpha):
                super().__init__()
                self.inner = inner
                self.alpha = float(alpha)

            def forward(self, x):
                return x + self.alpha * self.inner(x)

            def extra_repr(self):
                return "alpha=%r" % self.alpha

        Residual.__module__, Residual.__qualname__ = __name__, "Residual"
        globals()["Residual"] = Residual  # so that pickle finds it by name
        _RESIDUAL_CLASS.append(Residual)
    if not is_torch_module(inner):
        raise InvalidArgument("residual_module: inner=%r must be a torch.nn.Module" % (inner,))
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise InvalidArgument("residual_module: alpha=%r must be a finite number" % (alpha,))
    return _RESIDUAL_CLASS[0](inner, alpha)


def _flatten(module, path, key, nn, residual, out):
    """(path, state_dict prefix, module, block) of every leaf in order, nested Sequentials
    flattened; ``block`` is None, or a residual block's ``(inner leaves, alpha)``."""
    for child_name, child in module.named_children():
        p, k = "%s.%s" % (path, child_name), "%s%s." % (key, child_name)
        block = _residual_block(child, residual, nn)
        if block is not None:
            out.append((p, k, child, _residual_layer(p, k, child, block, nn)))
        elif isinstance(child, nn.Sequential):
            _check_plain_sequential(child, p, nn)
            _flatten(child, p, k, nn, residual, out)
        else:
            out.append((p, k, child, None))


def _residual_block(module, residual, nn):
    """(inner, alpha) when ``module`` is a residual block: symgrad's own :func:`residual_module`
    wrapper, or one the user's ``residual`` hook recognises; else None."""
    if _RESIDUAL_CLASS and isinstance(module, _RESIDUAL_CLASS[0]):
        return module.inner, module.alpha
    if residual is None:
        return None
    block = residual(module)
    if block is None:
        return None
    if not (isinstance(block, tuple) and len(block) == 2):
        raise InvalidArgument("from_torch: residual(%s) returned %r; it must return (inner, alpha) or None"
                              % (type(module).__name__, block))
    return block


def _residual_layer(path, key, module, block, nn):
    """A residual block ``x + alpha·inner(x)`` as one symgrad layer: ``(leaves of inner, alpha)``,
    where inner is one Linear with n_in = n_out and at most one activation (Identity skipped), and
    alpha a fixed finite number (a symgrad layer ``a_l = a_{l−1} + α φ(W_l a_{l−1} + b_l)``)."""
    inner, alpha = block
    rel = next((n for n, m in module.named_modules() if m is inner), None)
    if rel is None or not rel:
        raise InvalidArgument("%s: the residual block's inner module must be a submodule of %s (so that its weights are in "
                              "the state_dict), got %s" % (path, type(module).__name__, _describe(inner)))
    torch = torch_module("from_torch")
    if isinstance(alpha, torch.Tensor):
        if alpha.requires_grad or alpha.numel() != 1:
            raise InvalidArgument("%s: the residual scale alpha must be a fixed number; a learnable or non-scalar alpha (%s) "
                                  "is not a symgrad parameter. Fix: a Python float, or a tensor without requires_grad"
                                  % (path, _describe(alpha)))
        alpha = float(alpha.detach().cpu())
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise InvalidArgument("%s: the residual scale alpha=%r must be a finite real number" % (path, alpha))
    other = [n for n, _ in module.named_parameters() if not n.startswith(rel + ".")]
    if other:
        raise InvalidArgument("%s: the residual block has parameters %s outside its inner module, which symgrad would not "
                              "check" % (path, other))
    leaves: list = []
    ipath, ikey = "%s.%s" % (path, rel), "%s%s." % (key, rel)
    if isinstance(inner, nn.Sequential):
        _check_plain_sequential(inner, ipath, nn)
        _flatten(inner, ipath, ikey, nn, None, leaves)
    else:
        leaves.append((ipath, ikey, inner, None))
    leaves = [leaf for leaf in leaves if not isinstance(leaf[2], nn.Identity)]
    shape = [type(m).__name__ for _, _, m, _ in leaves]
    if not leaves or not isinstance(leaves[0][2], nn.Linear) or len(leaves) > 2 or (len(leaves) == 2 and isinstance(leaves[1][2], nn.Linear)):
        raise InvalidArgument("%s: a residual block's inner module must be one Linear(n, n) and at most one activation, "
                              "got %s (symgrad's residual layer is a + alpha·phi(W a + b))" % (path, shape))
    lin = leaves[0][2]
    if lin.in_features != lin.out_features:
        raise InvalidArgument("%s: the residual block's %s maps width %d to %d; x + alpha·inner(x) needs equal widths"
                              % (leaves[0][0], _describe(lin), lin.in_features, lin.out_features))
    return leaves, alpha


def _check_plain_sequential(module, path, nn):
    if type(module).forward is not nn.Sequential.forward:
        raise InvalidArgument("%s: %s is a Sequential subclass with its own forward(), which symgrad cannot read as a plain "
                              "stack of layers. Fix: pass an nn.Sequential of %s" % (path, type(module).__name__, _supported()))


def _own_parameters(mod, allowed=()):
    return [n for n, _ in mod.named_parameters(recurse=True) if n not in allowed]


def _softplus_activation(beta: float) -> Activation:
    if beta == 1.0:
        return _activation("softplus")
    b = sympy.Rational(repr(float(beta)))  # exact from the shortest decimal, as symgrad's built-in parameters
    return custom_activation(softplus(b * z) / b, name="softplus(beta=%s)" % b, latex_name=r"\operatorname{softplus}_{\beta}")


def _activation_of(mod, path, nn, custom) -> Activation | None:
    """The symgrad activation a module computes; None for nn.Identity; InvalidArgument naming
    ``path`` for anything else."""
    for cls, spec in custom:
        if isinstance(mod, cls):
            try:
                return _activation(spec)
            except InvalidArgument as exc:
                raise InvalidArgument("%s: activations[%s]: %s" % (path, cls.__name__, exc)) from None
    if isinstance(mod, nn.Identity):
        return None
    if isinstance(mod, nn.Dropout) and type(mod).forward is nn.Dropout.forward and (not mod.training or mod.p == 0):
        return None  # the identity in eval mode (and at p = 0)
    simple = ((nn.ReLU, "relu"), (nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid"), (nn.SiLU, "silu"), (nn.SELU, "selu"),
              (nn.Softsign, "softsign"))
    for cls, name in simple:
        if isinstance(mod, cls):
            return _activation(name)
    try:
        if isinstance(mod, nn.Softmax):
            if mod.dim not in (-1, 1):
                raise InvalidArgument("Softmax(dim=%r): symgrad's softmax normalises each sample's outputs, the last axis. "
                                      "Fix: nn.Softmax(dim=-1)" % (mod.dim,))
            return _activation("softmax")
        if isinstance(mod, nn.GELU):
            if getattr(mod, "approximate", "none") != "none":
                raise InvalidArgument("GELU(approximate=%r) is the tanh approximation; symgrad's gelu is the exact z·Φ(z). "
                                      "Fix: use nn.GELU() (approximate='none')" % (mod.approximate,))
            return _activation("gelu")
        if isinstance(mod, nn.LeakyReLU):
            return _activation("leaky_relu", alpha=float(mod.negative_slope))
        if isinstance(mod, nn.ELU):
            return _activation("elu", alpha=float(mod.alpha))
        if isinstance(mod, nn.Softplus):
            beta, threshold = float(mod.beta), float(mod.threshold)
            if not (math.isfinite(beta) and 0 < beta <= _MAX_BETA):
                raise InvalidArgument("Softplus(beta=%r): beta must be in (0, %g]. Fix: e.g. beta=1" % (mod.beta, _MAX_BETA))
            if not threshold >= SOFTPLUS_MIN_THRESHOLD:
                raise InvalidArgument(
                    "Softplus(threshold=%r): PyTorch's softplus is the identity where beta·x > threshold, off the exact "
                    "ln(1 + e^(beta·x))/beta by up to e^(-threshold) = %.2g in slope, too much for a gradient check. "
                    "Fix: threshold >= %g (the default is 20)" % (mod.threshold, math.exp(-threshold), SOFTPLUS_MIN_THRESHOLD))
            return _softplus_activation(beta)
    except InvalidArgument as exc:
        raise InvalidArgument("%s: %s" % (path, exc)) from None
    raise InvalidArgument("%s: %s is not supported; from_torch reads an nn.Sequential of %s (or pass activations={%s: "
                          "'<symgrad activation>'} for your own activation module, or residual= for a residual block)"
                          % (path, _describe(mod), _supported(), type(mod).__name__))


def _tensor(t, key, where):
    """A parameter tensor as a float64 NumPy array (exact from float16/bfloat16/float32)."""
    torch = torch_module("from_torch")
    if isinstance(t, torch.nn.parameter.UninitializedParameter) or getattr(t, "is_meta", False):
        raise InvalidArgument("%s: %r is not initialised (a lazy or meta module). Fix: run one forward pass, or load its "
                              "weights, first" % (where, key))
    if not t.is_floating_point():
        raise InvalidArgument("%s: %r has dtype %s; expected real floating-point weights" % (where, key, t.dtype))
    return finite_array(t.detach().to(device="cpu", dtype=torch.float64).numpy(), key, where)


def _custom_table(activations):
    if activations is None:
        return []
    if not hasattr(activations, "items"):
        raise InvalidArgument("from_torch: activations=%r must map module classes to symgrad activations, "
                              "e.g. {MyTanh: 'tanh'}" % (activations,))
    out = []
    for cls, spec in activations.items():
        if not isinstance(cls, type):
            raise InvalidArgument("from_torch: activations key %r must be a module class, e.g. {MyTanh: 'tanh'}" % (cls,))
        out.append((cls, spec))
    return out


def from_torch(module, *, loss="quadratic", activations=None, residual=None, name="model"):
    """A symgrad network and its current parameters from a PyTorch ``nn.Sequential``.

    Returns ``(net, params)``: ``net`` a :class:`~symgrad.symbolic.networks.Network` with widths
    ``[n_0, ..., n_L]`` (one layer per ``nn.Linear``; the activation that follows it, or the
    identity), ``loss`` (a symgrad loss name or :class:`~symgrad.spec.losses.Loss`), and
    ``params`` a :class:`~symgrad.interop.Parameters` dict ``{"W1": (n_1, n_0) array, "b1":
    (n_1,) array, ...}`` in float64 (an exact copy of float16/32 weights) whose ``names`` map each
    symgrad name to its ``state_dict`` key (``"W1" → "0.weight"``).  ``W^l`` is PyTorch's
    ``weight`` as it is, no transpose: both are (n_out, n_in).  The mapping, ``Softplus``'s
    threshold and residual blocks: see :mod:`symgrad.interop.pytorch`.

    ``activations``: ``{ModuleClass: symgrad activation}`` for modules of your own.  ``residual``:
    the hook for residual wrappers (refused for now, with the reason).  ``name``: the prefix of
    module paths in messages.

    Raises :class:`~symgrad.InvalidArgument`, naming the module path (``model.3``) and what is
    supported, for: a model that is not an ``nn.Sequential`` or has no ``Linear``; an unsupported
    module (BatchNorm, LogSoftmax, Dropout in training mode, ``GELU(approximate="tanh")``, ...); two activations in a
    row or one before the first ``Linear``; a ``Linear`` whose ``in_features`` differ from the
    width before it, or whose weight shape is not (out_features, in_features); and non-finite or
    non-float weights (naming the ``state_dict`` key).

    >>> import torch
    >>> import symgrad
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    >>> net, params = symgrad.from_torch(model)
    >>> net
    Network(widths=[3, 4, 2], activation=['tanh', 'identity'], loss='quadratic')
    >>> params.names
    {'W1': '0.weight', 'b1': '0.bias', 'W2': '2.weight', 'b2': '2.bias'}
    >>> bool((params["W2"] == model[2].weight.detach().double().numpy()).all())
    True
    """
    torch = torch_module("from_torch")
    nn = torch.nn
    if not isinstance(name, str) or not name:
        raise InvalidArgument("from_torch: name=%r must be a non-empty string such as 'model'" % (name,))
    if not is_torch_module(module):
        raise InvalidArgument("from_torch: expected a torch.nn.Sequential, got %s. Fix: pass an nn.Sequential of %s"
                              % (type(module).__name__, _supported()))
    if not isinstance(module, nn.Sequential):
        raise InvalidArgument("%s: %s is not an nn.Sequential; symgrad reads a plain stack of layers. Fix: put the layers in "
                              "nn.Sequential(%s)" % (name, type(module).__name__, ", ".join(SUPPORTED_MODULES[:2]) + ", ..."))
    if residual is not None and not callable(residual):
        raise InvalidArgument("from_torch: residual=%r must be a function module -> (inner, alpha) or None" % (residual,))
    custom = _custom_table(activations)
    loss_ = _loss(loss)
    _check_plain_sequential(module, name, nn)
    leaves: list = []
    _flatten(module, name, "", nn, residual, leaves)
    widths, acts, res, values, names = [], [], [], {}, {}
    layers = []  # (path, key, Linear)
    state = {"pending": None, "softmax_at": None}  # the last Linear still waiting for its activation; where a softmax came
    seen: dict = {}  # id of each parameter tensor → the module path that holds it (tied weights)

    def add_linear(path, key, mod, alpha=None):
        extra = _own_parameters(mod, ("weight", "bias"))
        if extra:
            raise InvalidArgument("%s: %s has parameters %s besides weight and bias, which symgrad would not check"
                                  % (path, _describe(mod), extra))
        for leaf in ("weight", "bias"):
            t = getattr(mod, leaf)
            if t is not None and id(t) in seen:
                raise InvalidArgument("%s: its %s is the same tensor as %s's (tied weights); symgrad's layers have "
                                      "independent parameters. Fix: untie them (clone the tensor) or convert a copy"
                                      % (path, leaf, seen[id(t)]))
            if t is not None:
                seen[id(t)] = path
        W = _tensor(mod.weight, key + "weight", path)
        n_out, n_in = int(mod.out_features), int(mod.in_features)
        if W.shape != (n_out, n_in):
            raise InvalidArgument("%s: %s: its weight %r has shape %s; expected (out_features, in_features) = %s"
                                  % (path, _describe(mod), key + "weight", W.shape, (n_out, n_in)))
        if mod.bias is not None:
            b = _tensor(mod.bias, key + "bias", path)
            if b.shape != (n_out,):
                raise InvalidArgument("%s: %s: its bias %r has shape %s; expected (out_features,) = (%d,)"
                                      % (path, _describe(mod), key + "bias", b.shape, n_out))
        else:
            b = np.zeros(n_out)
        if state["softmax_at"] is not None:
            raise InvalidArgument("%s: %s follows the output-only activation at %s; softmax is allowed only as the "
                                  "output layer's activation. Fix: move it to the end" % (path, _describe(mod), state["softmax_at"]))
        if not widths:
            widths.append(n_in)
        elif n_in != widths[-1]:
            prev = layers[-1][0]
            raise InvalidArgument("%s: %s takes %d inputs, but the layer before it (%s) gives %d. Fix: in_features=%d, "
                                  "or change %s" % (path, _describe(mod), n_in, prev, widths[-1], widths[-1], prev))
        if state["pending"] is not None:
            acts.append(_activation("identity"))
        l = len(layers) + 1
        widths.append(n_out)
        values["W%d" % l], values["b%d" % l] = W, b
        names["W%d" % l], names["b%d" % l] = key + "weight", (key + "bias" if mod.bias is not None else None)
        layers.append((path, key, mod))
        res.append(alpha)
        state["pending"] = path

    def add_activation(path, mod):
        act = _activation_of(mod, path, nn, custom)
        if act is None:  # Identity
            return
        extra = _own_parameters(mod)
        if extra:
            raise InvalidArgument("%s: %s has its own parameters %s; symgrad's activations have none, so they would go "
                                  "unchecked. Fix: remove them, or keep them fixed outside the module" % (path, _describe(mod), extra))
        if state["pending"] is None:
            where = "before the first Linear" if not layers else "right after another activation (%s)" % acts[-1].name
            raise InvalidArgument("%s: %s comes %s; symgrad's layers are Linear then one activation. Fix: remove it, or "
                                  "merge the two into one activation module" % (path, _describe(mod), where))
        acts.append(act)
        state["pending"] = None
        if act.output_only:
            state["softmax_at"] = path

    for path, key, mod, block in leaves:
        if block is not None:  # a residual block: one Linear(n, n) and its activation (or the identity)
            inner, alpha = block
            add_linear(*inner[0][:3], alpha=alpha)
            if len(inner) == 2:
                add_activation(*inner[1][:1], inner[1][2])
            if state["pending"] is not None:
                acts.append(_activation("identity"))
                state["pending"] = None
        elif isinstance(mod, nn.Linear) and not any(isinstance(mod, c) for c, _ in custom):
            add_linear(path, key, mod)
        else:
            add_activation(path, mod)
    if not layers:
        raise InvalidArgument("%s: %s has no nn.Linear layer; symgrad needs at least one. Fix: e.g. nn.Sequential(nn.Linear(3, 4), "
                              "nn.Tanh(), nn.Linear(4, 1))" % (name, "the model is empty and" if not leaves else "the model"))
    if state["pending"] is not None:
        acts.append(_activation("identity"))
    try:
        net = Network(widths, activation=list(acts), loss=loss_, residual=res if any(r is not None for r in res) else None)
    except InvalidArgument as exc:  # e.g. a softmax output with a loss other than log_likelihood
        raise InvalidArgument("%s: %s" % (name, exc)) from None
    order = ["W%d" % l for l in range(1, len(layers) + 1)] + ["b%d" % l for l in range(1, len(layers) + 1)]
    names_ordered = {}
    for l in range(1, len(layers) + 1):
        names_ordered["W%d" % l], names_ordered["b%d" % l] = names["W%d" % l], names["b%d" % l]
    return net, Parameters({k: values[k] for k in order}, names=names_ordered)


# ---------------------------------------------------------------------------------------------
# Writing a module
# ---------------------------------------------------------------------------------------------


def _torch_activation(act: Activation, layer: int, nn):
    """The PyTorch module computing ``act`` (None for the identity); InvalidArgument otherwise.
    Matched by equality with symgrad's own activations (function and parameters), not by name."""
    if act == _activation("identity"):
        return None
    simple = (("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh), ("relu", nn.ReLU), ("silu", nn.SiLU), ("gelu", nn.GELU),
              ("selu", nn.SELU), ("softsign", nn.Softsign), ("softplus", nn.Softplus))
    for spec, make in simple:
        if act == _activation(spec):
            return make()
    if act == _activation("softmax"):
        return nn.Softmax(dim=-1)
    alpha = dict(act.params).get("alpha")
    if alpha is not None:
        if act == _activation("leaky_relu", alpha=alpha):
            return nn.LeakyReLU(float(alpha))
        if alpha > 0 and act == _activation("elu", alpha=alpha):
            return nn.ELU(float(alpha))
    beta = _softplus_beta(act)
    if beta is not None:
        return nn.Softplus(beta=float(beta))
    raise InvalidArgument("to_torch: layer %d's activation %r has no PyTorch module; to_torch writes sigmoid, tanh, relu, "
                          "leaky_relu, elu, softplus (and softplus(beta*z)/beta), silu, gelu, selu, softsign, softmax, identity"
                          % (layer, act.name))


def _softplus_beta(act: Activation):
    """β when ``act`` is exactly ``softplus(β z)/β`` (what from_torch makes of Softplus(beta=β)), else None."""
    atoms = act.expr.atoms(softplus)
    if len(atoms) != 1:
        return None
    beta = sympy.simplify(next(iter(atoms)).args[0] / z)
    if not (beta.is_Rational and beta > 0) or act.expr != softplus(beta * z) / beta:
        return None
    return beta


def _layer_arrays(net, params):
    """Every layer's (W, b) as float64 (n_out, n_in), (n_out,) arrays, checked."""
    if not hasattr(params, "keys"):
        raise InvalidArgument("to_torch: params must be a mapping such as from_torch or symgrad.sample returns, not %s"
                              % type(params).__name__)
    out = []
    for l in range(1, net.depth + 1):
        pair = []
        for kind in ("W", "b") if isinstance(net, Network) else ("w", "b"):
            key = "%s%d" % (kind, l)
            if key not in params:
                raise InvalidArgument("to_torch: params has no %r; expected %s" % (key, ", ".join(net.parameters)))
            arr = np.asarray(params[key])
            base = net.shape(key) if isinstance(net, Network) else ()
            if arr.shape != base:
                raise InvalidArgument("to_torch: %r has shape %s; expected %s (one network's parameters, not a batch)"
                                      % (key, arr.shape, base))
            pair.append(finite_array(arr, key, "to_torch"))
        W, b = pair
        out.append((W.reshape(1, 1) if W.ndim == 0 else W, b.reshape(1) if b.ndim == 0 else b))
    return out


def _torch_dtype(dtype, torch):
    """torch.float32 or torch.float64 from a torch dtype, a NumPy one or its name."""
    if dtype is torch.float32 or dtype is torch.float64:
        return dtype
    if isinstance(dtype, str) or dtype in (np.float32, np.float64, float) or isinstance(dtype, np.dtype):
        text = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
        if text in ("float32", "float64"):
            return torch.float32 if text == "float32" else torch.float64
    raise InvalidArgument("to_torch: dtype=%r must be torch.float32 or torch.float64 (or None: from the parameters)" % (dtype,))


def to_torch(net, params, *, dtype=None):
    """The PyTorch ``nn.Sequential`` computing symgrad's ``net`` with ``params``: the reverse of
    :func:`from_torch`.

    One ``nn.Linear(n_{l−1}, n_l)`` per layer whose ``weight`` is ``W^l`` (n_l × n_{l−1}, as it
    is) and ``bias`` is ``b^l``, followed by the activation's module (none for the identity); a
    residual layer is :func:`residual_module` of the two (α from ``params[α.name]`` when it is a
    symbol).  So ``from_torch(to_torch(net, params))`` gives back ``net`` and ``params``.  A chain becomes
    ``Linear(1, 1)`` layers.  ``params``: one network's parameters (``a0`` and ``y`` are ignored);
    ``dtype``: ``torch.float32`` or ``torch.float64`` (default: float32 when every weight is
    float32, else float64).

    Raises :class:`~symgrad.InvalidArgument` for a missing, batched, non-finite or wrongly
    shaped parameter, and for an activation with no PyTorch module (a custom one).

    >>> import symgrad, torch
    >>> net = symgrad.network([2, 3, 1], "tanh")
    >>> model = symgrad.to_torch(net, symgrad.sample(net, seed=0))
    >>> model
    Sequential(
      (0): Linear(in_features=2, out_features=3, bias=True)
      (1): Tanh()
      (2): Linear(in_features=3, out_features=1, bias=True)
      (3): Tanh()
    )
    >>> model[0].weight.dtype
    torch.float64
    """
    torch = torch_module("to_torch")
    nn = torch.nn
    if not isinstance(net, (Chain, Network)):
        raise InvalidArgument("to_torch: net must be a symgrad chain or network, not %r" % (net,))
    arrays = _layer_arrays(net, params)
    alphas = [_alpha_value(r, l, params) for l, r in enumerate(getattr(net, "residual", (None,) * net.depth), start=1)]
    if dtype is None:
        kinds = {np.asarray(params[k]).dtype for k in net.parameters}
        tdtype = torch.float32 if kinds == {np.dtype(np.float32)} else torch.float64
    else:
        tdtype = _torch_dtype(dtype, torch)
    layers = []
    for l, ((W, b), act) in enumerate(zip(arrays, net.activations), start=1):
        lin = nn.Linear(W.shape[1], W.shape[0], dtype=tdtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W)))
            lin.bias.copy_(torch.from_numpy(np.ascontiguousarray(b)))
        mod = _torch_activation(act, l, nn)
        if alphas[l - 1] is not None:  # a_l = a_{l−1} + α φ(z_l)
            layers.append(residual_module(nn.Sequential(lin, *([mod] if mod is not None else [])), alphas[l - 1]))
            continue
        layers.append(lin)
        if mod is not None:
            layers.append(mod)
    return nn.Sequential(*layers)


def _alpha_value(alpha, layer, params):
    """A residual layer's α as a float (a symbolic α from ``params[α.name]``); None for a plain layer."""
    if alpha is None:
        return None
    if isinstance(alpha, sympy.Symbol):
        key = str(alpha)  # the symbol's name: its value's key in params
        if key not in params:
            raise InvalidArgument("to_torch: layer %d's residual scale is the symbol %s; give its value as params[%r]"
                                  % (layer, alpha, key))
        value = np.asarray(params[key])
        if value.shape != () or value.dtype.kind not in "fi" or not np.isfinite(value):
            raise InvalidArgument("to_torch: params[%r] = %r must be one finite number (the residual scale of layer %d)"
                                  % (key, params[key], layer))
        return float(value)
    return float(alpha)


# ---------------------------------------------------------------------------------------------
# A module's own gradients, for check_gradients
# ---------------------------------------------------------------------------------------------


def _torch_cost(loss, torch):
    """C(a, y) for one sample in PyTorch operations, as symgrad's loss defines it (summed over
    the output units; :mod:`symgrad.spec.losses`), from the loss's facts, not its name.  None for
    a loss with neither fact (the caller refuses it)."""
    if loss.dcost_is_residual:  # ∂C/∂a = a − y: C = ½ Σ (a − y)²
        return lambda a, y: 0.5 * torch.square(a - y).sum()
    if getattr(loss, "on_simplex", False):  # the log-likelihood −Σ y ln a of a probability vector a
        return lambda a, y: -(y * torch.log(a)).sum()
    if loss.domain_open_unit:  # binary cross-entropy
        return lambda a, y: -(y * torch.log(a) + (1.0 - y) * torch.log1p(-a)).sum()
    return None


def _batch_array(value, what, width, path):
    """inputs/targets as float64 (B, width) or (width,)."""
    if is_torch_module(value):
        raise InvalidArgument("%s must be an array, not a module" % what)
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a tensor
        torch = torch_module("a gradient check on a PyTorch module")
        if not value.is_floating_point():
            raise InvalidArgument("%s has dtype %s; expected floats" % (what, value.dtype))
        value = value.detach().to(device="cpu", dtype=torch.float64).numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "f":
        raise InvalidArgument("%s has dtype %s; expected floats of shape (batch, %d) or (%d,)" % (what, arr.dtype, width, width))
    if arr.ndim not in (1, 2) or arr.shape[-1] != width or (arr.ndim == 2 and arr.shape[0] < 1):
        raise InvalidArgument("%s have shape %s; %s expected (batch, %d) or (%d,)" % (what, arr.shape, path, width, width))
    return finite_array(arr, what, "check_gradients")


def module_gradients(module, inputs, targets, *, loss="quadratic", name="model", activations=None, residual=None):
    """What :func:`~symgrad.check_gradients` compares for a PyTorch module: ``(net, params,
    grad_fn, names)``, where ``net, params`` come from :func:`from_torch` with ``a0 = inputs``
    and ``y = targets`` added, ``grad_fn(params)`` returns the module's own autograd gradients
    (so its custom ``autograd.Function`` s) of ``C`` per sample, by symgrad name, and ``names``
    maps symgrad names to ``state_dict`` keys.

    ``inputs``: (batch, n_0) or (n_0,), ``targets``: (batch, n_L) or (n_L,), arrays or tensors;
    ``activations``, ``residual``: as for :func:`from_torch` (a model with modules of your own:
    ``check_gradients(net, params, grad_fn=grad_fn)`` on this function's result).
    The module runs in float64 on a copy (``copy.deepcopy(module)`` moved to the CPU in float64;
    float32 weights convert exactly), one forward and backward pass per sample (per-sample gradients, as
    symgrad's closed forms give them).  The cost is symgrad's loss in PyTorch operations
    (quadratic ``½Σ(a − y)²``, cross-entropy ``−Σ[y ln a + (1 − y) ln(1 − a)]``, log-likelihood
    ``−Σ y ln a`` after a softmax).

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Sigmoid())
    >>> net, p, grad_fn, names = module_gradients(model, [[1.0, 2.0]], [[0.5]])
    >>> sorted(grad_fn(p)), grad_fn(p)["W1"].shape, names["W1"]
    (['W1', 'b1'], (1, 1, 2), '0.weight')
    """
    torch = torch_module("a gradient check on a PyTorch module")
    net, params = from_torch(module, loss=loss, name=name, activations=activations, residual=residual)
    cost = _torch_cost(net.loss, torch)
    if cost is None:
        raise InvalidArgument("a gradient check on a PyTorch module supports the losses quadratic, cross_entropy and "
                              "log_likelihood, not %r"
                              % net.loss.name)
    first = "the model's first Linear takes %d features:" % net.widths[0]
    last = "the model gives %d outputs:" % net.widths[-1]
    x = _batch_array(inputs, "inputs", net.widths[0], first)
    y = _batch_array(targets, "targets", net.widths[-1], last)
    if x.ndim == 2 and y.ndim == 2 and x.shape[0] != y.shape[0]:
        raise InvalidArgument("inputs have %d samples but targets %d; give one target row per input row" % (x.shape[0], y.shape[0]))
    batch = x.shape[0] if x.ndim == 2 else (y.shape[0] if y.ndim == 2 else None)
    work = copy.deepcopy(module).to(device="cpu", dtype=torch.float64)
    by_key = dict(work.named_parameters())
    names = params.names

    def grad_fn(_params):
        n = 1 if batch is None else batch
        xs = torch.from_numpy(np.broadcast_to(x, (n, net.widths[0])).copy())
        ys = torch.from_numpy(np.broadcast_to(y, (n, net.widths[-1])).copy())
        out = {k: np.zeros((n,) + net.shape(k)) for k in net.parameters}
        for i in range(n):
            work.zero_grad(set_to_none=True)
            a = work(xs[i:i + 1])
            if tuple(a.shape) != (1, net.widths[-1]):
                raise InvalidArgument("%s gave an output of shape %s for one sample; expected (1, %d)"
                                      % (name, tuple(a.shape), net.widths[-1]))
            cost(a[0], ys[i]).backward()
            for k in net.parameters:
                key = names[k]
                g = by_key[key].grad if key is not None else None
                if g is not None:
                    out[k][i] = g.detach().numpy()
        return out if batch is not None else {k: v[0] for k, v in out.items()}

    full = dict(params)
    full["a0"], full["y"] = x, y
    return net, full, grad_fn, dict(names)

