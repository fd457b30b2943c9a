"""Network specifications: Nielsen's single-neuron chain and dense networks.

A specification names the symbols (inputs, target, parameters, and the local ``z``/``a`` of each
layer) and composes the loss for small depths.  It never derives anything itself:
:mod:`symgrad.symbolic.derivation` builds gradients from per-layer local factors.

Naming
    Chain: input ``a0``, target ``y``, parameters ``w1..wL``, ``b1..bL``; locals ``z1..zL``,
    ``a1..aL`` with ``z_j = w_j a_{j-1} + b_j`` and ``a_j = φ_j(z_j)`` (a residual layer:
    ``a_j = a_{j-1} + α_j φ_j(z_j)``; a symbolic α is listed in ``symbols``, not a parameter).

    Dense network with widths ``[n0, ..., nL]``: arrays ``a0`` (n0), ``y`` (nL), ``W1..WL``
    (``W_l`` is n_l × n_{l-1}) and ``b1..bL``; single entries are addressed as ``"W2[1,0]"``,
    ``"b1[0]"``, ``"a0[2]"``, ``"y[0]"``; locals ``z2[i]``, ``a2[i]``.
"""

from __future__ import annotations

import math
import numbers
import re
from fractions import Fraction
from functools import cached_property
from typing import Sequence

import sympy

from symgrad.spec.activations import Activation, activation as _activation
from symgrad.errors import InvalidArgument
from symgrad.spec.losses import Loss, loss as _loss
from symgrad.symbolic.derivation import Gradient, chain_gradient, check_parameter_name, dense_gradient

__all__ = ["Chain", "Network", "MAX_DEPTH", "MAX_COMPOSE_DEPTH", "MAX_WIDTH"]

#: Deepest chain symgrad accepts.  The symbolic derivation is linear in depth (about 30 µs a
#: layer), so this bounds a single call to well under a minute.
MAX_DEPTH = 1_000_000
#: Deepest network whose loss :meth:`Chain.cost` / ``explicit()`` will compose into one
#: expression.  Beyond this, composed expressions are too large to differentiate or print.
MAX_COMPOSE_DEPTH = 64
#: Widest layer of a dense network.
MAX_WIDTH = 100_000


def _real_symbols(names) -> list[sympy.Symbol]:
    """``[Symbol(n, real=True) for n in names]``, about 20× faster.

    ``Symbol(name, real=True)`` re-derives the closure of its assumptions for every symbol
    (about 25 µs), which dominates building a depth-10000 chain.  The closure is the same for
    every real symbol, so it is derived once and copied; the objects compare and hash equal to
    ``Symbol(name, real=True)`` (a test checks this).
    """
    names = list(names)
    try:
        kb, orig, a0 = sympy.Symbol._canonical_assumptions(real=True)
    except AttributeError:  # a SymPy without this private helper: take the slow, public road
        return [sympy.Symbol(n, real=True) for n in names]
    a0 = tuple(sorted(a0.items()))
    out = []
    new = sympy.Expr.__new__
    for n in names:
        obj = new(sympy.Symbol)
        obj.name = n
        # StdFactKB.copy() re-deduces the closure; a plain dict copy of the finished closure is
        # the same facts (each symbol gets its own, since queries cache new facts into it).
        facts = dict.__new__(type(kb))
        facts.__dict__.update(kb.__dict__)
        dict.update(facts, kb)
        obj._assumptions = facts
        obj._assumptions_orig = orig
        obj._assumptions0 = a0
        out.append(obj)
    return out


def _check_depth(depth) -> int:
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral):
        if isinstance(depth, float) and depth.is_integer():
            raise InvalidArgument("depth=%r must be an int, not a float; pass depth=%d" % (depth, int(depth)))
        raise InvalidArgument("depth=%r must be a positive int (got %s), e.g. depth=4" % (depth, type(depth).__name__))
    if depth < 1:
        raise InvalidArgument("depth=%d must be at least 1 (a chain needs one layer), e.g. depth=4" % depth)
    if depth > MAX_DEPTH:
        raise InvalidArgument("depth=%d exceeds the maximum %d (symgrad.symbolic.MAX_DEPTH)" % (depth, MAX_DEPTH))
    return int(depth)


def _per_layer(spec, n: int, what: str) -> tuple[Activation, ...]:
    if isinstance(spec, (list, tuple)):
        if len(spec) != n:
            raise InvalidArgument("%s: %d activations given for %d layers; give one per layer or a single one" % (what, len(spec), n))
        return tuple(_activation(s) for s in spec)
    act = _activation(spec)
    return (act,) * n


def _check_output_only(acts, loss, what: str, widths=None) -> None:
    """An output-only activation (softmax) only as a dense network's last layer, there only with
    a loss that pairs with it (``log_likelihood``), and that loss only with such an output;
    else InvalidArgument naming the layer and the fix."""
    names = [a.name for a in acts]
    if widths is None and any(a.output_only for a in acts):
        act = next(a for a in acts if a.output_only)
        raise InvalidArgument(
            "chain: %r on a chain's single unit is the constant e^z/e^z = 1, so C would not depend on any parameter "
            "(and in a hidden layer it is not elementwise); use a dense network, e.g. "
            "symgrad.network([2, 3, 3], activation=['tanh', '%s'], loss='log_likelihood')" % (act.name, act.name))
    for l, act in enumerate(acts[:-1], start=1):
        if act.output_only:
            example = ["tanh" if a.output_only else a.name for a in acts[:-1]] + [act.name]
            raise InvalidArgument(
                "%s: activation %r at hidden layer %d is output-only (%s(z)_i = e^{z_i}/Σ_k e^{z_k} couples the units of a "
                "layer, it is not elementwise); use it only as the last layer's activation, e.g. activation=%r"
                % (what, act.name, l, act.name, example))
    out = acts[-1]
    if out.output_only:
        if widths[-1] < 2:
            raise InvalidArgument(
                "%s: %r on an output layer of width %d is the constant 1, so C would not depend on any parameter; "
                "give the output layer at least 2 units, e.g. widths=%r" % (what, out.name, widths[-1], list(widths[:-1]) + [2]))
        if not loss.on_simplex:
            raise InvalidArgument(
                "%s: a %r output layer pairs only with loss='log_likelihood' (C = −Σ y_i ln a_i, δ^L = a^L − y), not loss=%r; "
                "use loss='log_likelihood', or an elementwise output activation such as 'sigmoid' with loss=%r"
                % (what, out.name, loss.name, loss.name))
    elif loss.on_simplex:
        if widths is None:
            raise InvalidArgument(
                "chain: loss=%r needs a probability-vector output (softmax over several units), which a single-unit chain "
                "cannot have; use a dense network, e.g. symgrad.network([2, 3, 3], activation=['tanh', 'softmax'], "
                "loss='log_likelihood'), or loss='cross_entropy' with a sigmoid chain" % loss.name)
        raise InvalidArgument(
            "%s: loss=%r (C = −Σ y_i ln a_i) needs a probability-vector output, but the output activation is %r; "
            "use activation=[..., 'softmax'] (e.g. %r), or loss='cross_entropy' with a sigmoid output"
            % (what, loss.name, out.name, names[:-1] + ["softmax"]))


# Names an α symbol may not take: every input, target, parameter and per-layer symbol of a
# network (a0, y, w3, W2[0,1], z1, a2[0]), and the index, layer and depth symbols of the
# symbolic-depth form (k, j, L).
_RESERVED_ALPHA = re.compile(r"(?:[awbzW][0-9]+|y)(?:\[.*\])?|[kjL]")


def _alpha(value, layer: int, what: str):
    """One layer's residual scale as SymPy: ``None`` (a plain layer), an exact number (int →
    Integer, Fraction → Rational, float → the short decimal it prints as, else its exact binary
    value) or a real Symbol.  α = 0 is allowed: the layer is then the identity map.  Strings are
    refused (nothing is parsed)."""
    if value is None:
        return None
    where = "%s: residual=%r at layer %d" % (what, value, layer)
    if isinstance(value, sympy.Symbol):
        if value.is_real is False or value.is_finite is False:
            raise InvalidArgument("%s is declared non-real or infinite; α must be real, e.g. sympy.Symbol('alpha', real=True)" % where)
        if not value.name.isidentifier() or _RESERVED_ALPHA.fullmatch(value.name):
            raise InvalidArgument("%s: the symbol's name %r is not an identifier or is taken by the network (a0, y, w_l, b_l, W_l, z_l, a_l, "
                                  "k, j, L); name it e.g. sympy.Symbol('alpha', real=True)" % (where, value.name))
        return value
    if isinstance(value, bool) or isinstance(value, (str, bytes)):
        raise InvalidArgument("%s must be a number or a SymPy Symbol (strings are not parsed), e.g. residual=0.5 or "
                              "residual=sympy.Symbol('alpha', real=True)" % where)
    if isinstance(value, sympy.Basic):
        if value.free_symbols or not value.is_number:
            raise InvalidArgument("%s must be a number or a single Symbol, not an expression; use residual=sympy.Symbol('alpha', real=True)" % where)
        if isinstance(value, sympy.Float):
            value = float(value)
        elif value.is_real is not True or value.is_finite is not True:
            raise InvalidArgument("%s must be a finite real number, e.g. residual=0.5" % where)
        else:
            return value
    if isinstance(value, numbers.Integral):
        return sympy.Integer(int(value))
    if isinstance(value, Fraction):
        return sympy.Rational(value.numerator, value.denominator)
    if isinstance(value, numbers.Real):
        f = float(value)
        if not math.isfinite(f):
            raise InvalidArgument("%s must be finite, e.g. residual=0.5" % where)
        short = sympy.Rational(repr(f))  # the decimal the user wrote (0.1), when it is the same float
        return short if float(short) == f else sympy.Rational(*Fraction(f).as_integer_ratio())
    raise InvalidArgument("%s must be a number or a SymPy Symbol, e.g. residual=0.5 or residual=sympy.Symbol('alpha', real=True)" % where)


def _per_layer_residual(spec, n: int, what: str) -> tuple:
    """``residual=`` as a tuple of L entries (None or α_l); one value for every layer or a list."""
    if isinstance(spec, (list, tuple)):
        if len(spec) != n:
            raise InvalidArgument("%s: residual has %d entries for %d layers; give one per layer (None for a plain layer) or a single α"
                                  % (what, len(spec), n))
        out = tuple(_alpha(v, l, what) for l, v in enumerate(spec, start=1))
    else:
        out = (_alpha(spec, 1, what),) * n if spec is not None else (None,) * n
    named = {}
    for v in out:
        if isinstance(v, sympy.Symbol) and named.setdefault(v.name, v) != v:
            raise InvalidArgument("%s: two different symbols are named %r in residual (%r and %r); use one Symbol object or two names"
                                  % (what, v.name, named[v.name], v))
    return out


def _check_residual(residual, acts, loss, what: str, widths=None) -> None:
    """A residual layer keeps its width (n_l = n_{l−1}); a residual output layer is neither an
    output-only activation (softmax) nor paired with a loss defined only on (0, 1)."""
    L = len(residual)
    if widths is not None:
        for l, alpha in enumerate(residual, start=1):
            if alpha is not None and widths[l] != widths[l - 1]:
                raise InvalidArgument(
                    "%s: residual layer %d maps width %d to width %d, but a_%d = a_%d + α φ(z_%d) needs equal widths; "
                    "make widths[%d] = widths[%d] = %d or make layer %d plain (None in the residual list)"
                    % (what, l, widths[l - 1], widths[l], l, l - 1, l, l, l - 1, widths[l - 1], l))
    if residual[-1] is None:
        return
    if acts[-1].output_only:
        raise InvalidArgument("%s: the output layer %d is residual but its activation %r is output-only; a_L = a_{L−1} + α %s(z_L) "
                              "is not a probability vector: make the last layer plain (None as the last residual entry)"
                              % (what, L, acts[-1].name, acts[-1].name))
    if loss.domain_open_unit:
        raise InvalidArgument("%s: loss=%r needs the output a_L in (0, 1), which a residual output layer a_L = a_{L−1} + α φ(z_L) "
                              "does not guarantee (and σ'(z_L) no longer cancels); make the last layer plain (None as the last "
                              "residual entry) or use loss='quadratic'" % (what, loss.name))


def _residual_repr(residual) -> str:
    if all(r is None for r in residual):
        return ""
    if all(r == residual[0] for r in residual):
        return ", residual=%s" % residual[0]
    return ", residual=[%s]" % ", ".join("None" if r is None else str(r) for r in residual)


class _Net:
    """Shared parts of :class:`Chain` and :class:`Network`."""

    depth: int
    activations: tuple[Activation, ...]
    loss: Loss
    #: One entry per layer: ``None`` for a plain layer, else its residual scale α_l (a SymPy
    #: number or Symbol): ``a_l = a_{l−1} + α_l φ_l(z_l)``.
    residual: tuple = ()

    @property
    def is_residual(self) -> bool:
        """True when some layer is residual (``a_l = a_{l−1} + α_l φ_l(z_l)``).

        >>> import symgrad
        >>> symgrad.chain(2).is_residual, symgrad.chain(2, residual=[None, 1]).is_residual
        (False, True)
        """
        return any(r is not None for r in self.residual)

    def _residual_symbols(self) -> dict:
        return {r.name: r for r in self.residual if isinstance(r, sympy.Symbol)}

    @property
    def activation(self) -> Activation:
        """The activation, when all layers share one (otherwise see ``activations``)."""
        if any(a != self.activations[0] for a in self.activations):
            raise InvalidArgument("this network has per-layer activations; use net.activations[l - 1]")
        return self.activations[0]

    def _check_compose(self):
        if self.depth > MAX_COMPOSE_DEPTH:
            raise InvalidArgument(
                "depth %d is too deep to compose into one expression (limit %d, symgrad.symbolic.MAX_COMPOSE_DEPTH); "
                "use net.gradient(name), which is built from local factors" % (self.depth, MAX_COMPOSE_DEPTH)
            )


class Chain(_Net):
    """Nielsen's single-neuron chain of ``depth`` layers (use :func:`symgrad.chain` to make one).

    ``z_j = w_j a_{j−1} + b_j``, ``a_j = φ_j(z_j)``, cost ``C(a_L, y)`` (Nielsen, *Neural Networks
    and Deep Learning*, ch. 5).  ``depth``: an int in ``1..MAX_DEPTH`` (else
    :class:`~symgrad.InvalidArgument`); ``activation``: one for every layer or a list of L;
    ``loss``: a name or :class:`~symgrad.spec.losses.Loss`.

    ``residual``: None, one α for every layer, or a list of L entries (None for a plain layer);
    a residual layer is ``a_j = a_{j−1} + α_j φ_j(z_j)`` (He et al., *Deep Residual Learning*,
    2016), kept in :attr:`residual` as exact SymPy numbers or real Symbols (a symbol's value is
    ``params[symbol.name]`` on the numeric side; α = 0 makes the layer the identity).  Strings,
    non-finite or non-real α, a name the network already uses, and a residual output layer with
    cross-entropy raise :class:`~symgrad.InvalidArgument`.

    >>> import symgrad
    >>> net = symgrad.chain(2)
    >>> net, net.parameters
    (Chain(depth=2, activation='sigmoid', loss='quadratic'), ('w1', 'w2', 'b1', 'b2'))
    """

    def gradient(self, name: str) -> Gradient:
        """The closed-form gradient ``∂C/∂name`` (``'w1'``…``'wL'``, ``'b1'``…``'bL'``, ``'a0'``) as a
        :class:`~symgrad.symbolic.derivation.Gradient`; InvalidArgument for an unknown name.

        Built from local factors (BP1–BP4, Nielsen ch. 2) in time linear in depth.

        >>> import symgrad
        >>> symgrad.chain(2).gradient("w2")
        Gradient(∂C/∂w2 = a1*sigmoid'(z2)*(a2 - y))
        """
        return chain_gradient(self, check_parameter_name(name))

    def __init__(self, depth, activation="sigmoid", loss="quadratic", residual=None):
        self.depth = _check_depth(depth)
        self.activations = _per_layer(activation, self.depth, "chain")
        self.loss = _loss(loss)
        _check_output_only(self.activations, self.loss, "chain")
        self.residual = _per_layer_residual(residual, self.depth, "chain")
        _check_residual(self.residual, self.activations, self.loss, "chain")

    def __repr__(self):
        acts = self.activations[0].name if len(set(a.name for a in self.activations)) == 1 else "mixed"
        return "Chain(depth=%d, activation=%r, loss=%r%s)" % (self.depth, acts, self.loss.name, _residual_repr(self.residual))

    @cached_property
    def parameters(self) -> tuple[str, ...]:
        """Parameter names, ``('w1', ..., 'wL', 'b1', ..., 'bL')``.

        >>> import symgrad
        >>> symgrad.chain(2).parameters
        ('w1', 'w2', 'b1', 'b2')
        """
        L = self.depth
        return tuple("w%d" % j for j in range(1, L + 1)) + tuple("b%d" % j for j in range(1, L + 1))

    @cached_property
    def symbols(self) -> dict[str, sympy.Symbol]:
        """Name → real Symbol for the input ``a0``, the target ``y`` and every parameter.

        >>> import symgrad
        >>> sorted(symgrad.chain(2).symbols)
        ['a0', 'b1', 'b2', 'w1', 'w2', 'y']
        """
        L = self.depth
        out = {"a0": sympy.Symbol("a0", real=True), "y": sympy.Symbol("y", real=True)}
        for kind in "wb":
            names = ["%s%d" % (kind, j) for j in range(1, L + 1)]
            out.update(zip(names, _real_symbols(names)))
        out.update(self._residual_symbols())  # a symbolic α (not a parameter: never in .parameters)
        return out

    @cached_property
    def local_symbols(self) -> dict[str, sympy.Symbol]:
        """Name → Symbol for the pre-activations ``z1..zL`` and activations ``a1..aL``.

        >>> import symgrad
        >>> sorted(symgrad.chain(2).local_symbols)
        ['a1', 'a2', 'z1', 'z2']
        """
        L = self.depth
        out = {}
        for kind in "za":
            names = ["%s%d" % (kind, j) for j in range(1, L + 1)]
            out.update(zip(names, _real_symbols(names)))
        return out

    def forward(self) -> dict[str, sympy.Expr]:
        """Local name → its explicit expression in inputs and parameters (``z2 → w2 σ(w1 a0 + b1) + b2``).

        Depth ≤ ``MAX_COMPOSE_DEPTH`` (else :class:`~symgrad.InvalidArgument`).

        >>> import symgrad
        >>> symgrad.chain(2).forward()["z2"]
        b2 + w2*sigmoid(a0*w1 + b1)
        """
        self._check_compose()
        s = self.symbols
        out, prev = {}, s["a0"]
        for j, (act, alpha) in enumerate(zip(self.activations, self.residual), start=1):
            zj = s["w%d" % j] * prev + s["b%d" % j]
            prev = act(zj) if alpha is None else prev + alpha * act(zj)  # residual: a_j = a_{j−1} + α_j φ(z_j)
            out["z%d" % j], out["a%d" % j] = zj, prev
        return out

    def cost(self) -> sympy.Expr:
        """The composed cost ``C(a_L, y)`` in ``a0``, ``y`` and the parameters (depth ≤ MAX_COMPOSE_DEPTH,
        else :class:`~symgrad.InvalidArgument`).

        >>> import symgrad
        >>> symgrad.chain(1).cost()
        (-y + sigmoid(a0*w1 + b1))**2/2
        """
        return self.loss.cost(self.forward()["a%d" % self.depth], self.symbols["y"])


class Network(_Net):
    """A dense network with widths ``[n0, ..., nL]`` (use :func:`symgrad.network` to make one).

    ``z^l = W^l a^{l−1} + b^l``, ``a^l = φ_l(z^l)`` elementwise (Nielsen, ch. 2).  Every width is
    an int in ``1..MAX_WIDTH`` and there are at least two (else :class:`~symgrad.InvalidArgument`).

    The last layer may instead be ``"softmax"`` (a^L_i = e^{z^L_i}/Σ_k e^{z^L_k}, at least 2
    units) with ``loss="log_likelihood"`` (C = −Σ_i y_i ln a^L_i; Nielsen ch. 3 eqs. 78–82); then
    δ^L = a^L − y for a target with Σ y = 1.  Softmax in a hidden layer, softmax with another
    loss and the log-likelihood with another output raise :class:`~symgrad.InvalidArgument`.

    ``residual`` as for :class:`Chain`: a residual layer ``a^l = a^{l−1} + α_l φ_l(z^l)`` keeps
    its width (``n_l = n_{l−1}``, else InvalidArgument naming the layer), and its backward step
    is ``∂C/∂a^{l−1} = (I + α_l W_lᵀ Σ'(z^l)) ∂C/∂a^l``; a residual softmax output is refused.

    >>> import symgrad
    >>> symgrad.network([2, 3, 3], activation=["tanh", "softmax"], loss="log_likelihood").gradient("b2")
    Gradient(∂C/∂b2 = (a2 - y))

    >>> import symgrad
    >>> net = symgrad.network([2, 3, 1])
    >>> net.parameters, net.shape("W2")
    (('W1', 'W2', 'b1', 'b2'), (1, 3))
    """

    def gradient(self, name: str) -> Gradient:
        """The closed-form gradient ``∂C/∂name`` (``'W1'``, ``'b2'``, entries such as ``'W1[0,1]'``, ``'a0'``)
        as a :class:`~symgrad.symbolic.derivation.Gradient`; InvalidArgument for an unknown name.

        ``δ^l = Σ'(z^l)(W^{l+1})ᵀ δ^{l+1}`` unrolled (Nielsen ch. 2, BP2), as matrix expressions.

        >>> import symgrad
        >>> symgrad.network([2, 3, 1]).gradient("b2")
        Gradient(∂C/∂b2 = diag(sigmoid'(z2))*(a2 - y))
        """
        return dense_gradient(self, check_parameter_name(name))

    def __init__(self, widths: Sequence[int], activation="sigmoid", loss="quadratic", residual=None):
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
            raise InvalidArgument("widths=%r must be a list of layer widths [n0, ..., nL], e.g. [2, 3, 1]" % (widths,))
        if len(widths) < 2:
            raise InvalidArgument("widths=%r needs at least two entries (input and output), e.g. [2, 3, 1]" % (list(widths),))
        for i, n in enumerate(widths):
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
                raise InvalidArgument("widths[%d]=%r must be a positive int; every layer needs at least one unit" % (i, n))
            if n > MAX_WIDTH:
                raise InvalidArgument("widths[%d]=%d exceeds the maximum width %d" % (i, n, MAX_WIDTH))
        self.widths = tuple(int(n) for n in widths)
        self.depth = _check_depth(len(self.widths) - 1)
        self.activations = _per_layer(activation, self.depth, "network")
        self.loss = _loss(loss)
        _check_output_only(self.activations, self.loss, "network", self.widths)
        self.residual = _per_layer_residual(residual, self.depth, "network")
        _check_residual(self.residual, self.activations, self.loss, "network", self.widths)

    def __repr__(self):
        acts = self.activations[0].name if len(set(a.name for a in self.activations)) == 1 else [a.name for a in self.activations]
        return "Network(widths=%r, activation=%r, loss=%r%s)" % (list(self.widths), acts, self.loss.name, _residual_repr(self.residual))

    @cached_property
    def parameters(self) -> tuple[str, ...]:
        """Array parameter names ``('W1', ..., 'WL', 'b1', ..., 'bL')``.

        >>> import symgrad
        >>> symgrad.network([2, 3, 1]).parameters
        ('W1', 'W2', 'b1', 'b2')
        """
        L = self.depth
        return tuple("W%d" % l for l in range(1, L + 1)) + tuple("b%d" % l for l in range(1, L + 1))

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape of an array parameter or input: ``W_l`` is (n_l, n_{l-1}); ``b_l`` (n_l,); ``a0``
        (n_0,); ``y`` (n_L,).  :class:`~symgrad.InvalidArgument` for any other name.

        >>> import symgrad
        >>> symgrad.network([2, 3, 1]).shape("W1")
        (3, 2)
        """
        n = self.widths
        if name == "a0":
            return (n[0],)
        if name == "y":
            return (n[-1],)
        m = re.fullmatch(r"([Wb])([1-9][0-9]*)", name)
        if m and 1 <= int(m.group(2)) <= self.depth:
            l = int(m.group(2))
            return (n[l], n[l - 1]) if m.group(1) == "W" else (n[l],)
        raise InvalidArgument("unknown array %r; known: a0, y, %s" % (name, ", ".join(self.parameters)))

    @cached_property
    def arrays(self) -> dict[str, sympy.ImmutableMatrix]:
        """Name → matrix of scalar symbols: ``W2`` (n2 × n1), column vectors ``b2``, ``a0``, ``y``.

        >>> import symgrad
        >>> symgrad.network([2, 3, 1]).arrays["W1"].shape
        (3, 2)
        """
        out = {}
        for name in ("a0", "y") + self.parameters:
            shp = self.shape(name)
            if len(shp) == 2:
                out[name] = sympy.ImmutableMatrix(shp[0], shp[1], lambda i, j: sympy.Symbol("%s[%d,%d]" % (name, i, j), real=True))
            else:
                out[name] = sympy.ImmutableMatrix(shp[0], 1, lambda i, _: sympy.Symbol("%s[%d]" % (name, i), real=True))
        return out

    @cached_property
    def symbols(self) -> dict[str, sympy.Symbol]:
        """Name → real Symbol for every scalar input, target and parameter entry (``'W2[1,0]'``).

        >>> import symgrad
        >>> len(symgrad.network([2, 3, 1]).symbols)  # a0: 2, y: 1, W1: 6, W2: 3, b1: 3, b2: 1
        16
        """
        out = {str(s): s for m in self.arrays.values() for s in m}
        out.update(self._residual_symbols())  # a symbolic α (not a parameter)
        return out

    @cached_property
    def local_symbols(self) -> dict[str, sympy.Symbol]:
        """Name → Symbol for every ``z{l}[i]`` and ``a{l}[i]``.

        >>> import symgrad
        >>> sorted(symgrad.network([2, 3, 1]).local_symbols)[:3]
        ['a1[0]', 'a1[1]', 'a1[2]']
        """
        out = {}
        for l in range(1, self.depth + 1):
            for kind in "za":
                for i in range(self.widths[l]):
                    out["%s%d[%d]" % (kind, l, i)] = sympy.Symbol("%s%d[%d]" % (kind, l, i), real=True)
        return out

    def forward(self) -> dict[str, sympy.ImmutableMatrix]:
        """``z{l}``/``a{l}`` → explicit column vectors in inputs and parameters (depth ≤
        ``MAX_COMPOSE_DEPTH``, else :class:`~symgrad.InvalidArgument`).

        >>> import symgrad
        >>> symgrad.network([2, 3, 1]).forward()["z1"].shape
        (3, 1)
        """
        self._check_compose()
        arr = self.arrays
        out, prev = {}, arr["a0"]
        for l, (act, alpha) in enumerate(zip(self.activations, self.residual), start=1):
            zl = arr["W%d" % l] * prev + arr["b%d" % l]
            # an output-only activation (softmax) maps the whole layer: a_i = e^{z_i}/Σ_k e^{z_k}
            phi = sympy.ImmutableMatrix(act.vector(list(zl))) if act.output_only else zl.applyfunc(act)
            prev = phi if alpha is None else sympy.ImmutableMatrix(prev + alpha * phi)  # a^l = a^{l−1} + α_l φ(z^l)
            out["z%d" % l], out["a%d" % l] = zl, prev
        return out

    def cost(self) -> sympy.Expr:
        """The composed cost, summed over the output units (depth ≤ ``MAX_COMPOSE_DEPTH``).

        >>> import symgrad
        >>> symgrad.network([1, 1]).cost()
        (-y[0] + sigmoid(W1[0,0]*a0[0] + b1[0]))**2/2
        """
        aL, y = self.forward()["a%d" % self.depth], self.arrays["y"]
        return sympy.Add(*[self.loss.cost(aL[i], y[i]) for i in range(self.widths[-1])])
