"""Closed-form gradients, built from local factors in time linear in depth.

For a chain the gradient of ``b_j`` is the product, in chain order, of

    φ'(z_j) · w_{j+1} φ'(z_{j+1}) · … · w_L φ'(z_L) · ∂C/∂a_L

(and ``a_{j-1}`` in front for ``w_j``).  The per-layer factors are made once per network; each
gradient's factor tuple is a slice of the shared sequence, so deriving all 2L gradients copies
pointers instead of rebuilding suffix products.  Nothing is composed into one expression and
nothing is simplified.  A dense network's ``δ^l = Σ'(z^l)(W^{l+1})ᵀ … Σ'(z^L) ∇_a C`` is the same
product of matrix expressions.

``Gradient.expr`` is an *unevaluated* product in chain order (so it reads as the literature
writes it and costs O(L) to build); ``Gradient.doit()`` turns every φ' into its closed form and
returns SymPy's canonical product; ``Gradient.explicit()`` rewrites it in inputs and parameters.
"""

from __future__ import annotations

import re
from functools import cached_property

import sympy
from sympy import Basic, KroneckerDelta, MatrixExpr, MatrixSymbol, Mul

from symgrad._budget import DEFAULT_SECONDS, within_budget
from sympy.core.symbol import Str

from symgrad.spec.activations import Activation, from_token
from symgrad.spec.losses import loss as _loss_by_name
from symgrad.errors import InvalidArgument

__all__ = ["Gradient", "ActivationJacobian", "CostGradient", "check_parameter_name", "chain_gradient", "dense_gradient"]


class Gradient:
    """The closed-form gradient ``∂C/∂wrt`` of one parameter (or input) of a network.

    * ``factors``: the factors in chain order (SymPy expressions; matrices for dense layers).
    * ``expr``: their product, unevaluated, in chain order.
    * ``doit()``: the canonical SymPy product with each φ' in closed form.
    * ``explicit()``: the same gradient in inputs, target and parameters only (small depths).
    * ``latex()``: ``\\frac{\\partial C}{\\partial b_{1}} = \\sigma'(z_{1}) w_{2} …``.

    The factors are BP1–BP4 unrolled (Nielsen, *Neural Networks and Deep Learning*, ch. 2).

    >>> import symgrad
    >>> g = symgrad.chain(2).gradient("b1")
    >>> g.factors
    (sigmoid'(z1), w2, sigmoid'(z2), a2 - y)
    """

    def __init__(self, network, wrt: str, factors: tuple, entry: tuple[int, int] | None = None):
        self.network = network
        self.wrt = wrt
        self.factors = factors
        self._entry = entry

    def __repr__(self):
        return "Gradient(∂C/∂%s = %s)" % (self.wrt, sympy.sstr(self.expr, order="none"))

    @property
    def assumptions(self) -> tuple[str, ...]:
        """What the closed form assumes beyond the network: the log-likelihood's cancellation
        δ^L = a^L − y with a softmax output holds when ``Σ_i y_i = 1`` (a one-hot or probability
        target; :attr:`symgrad.spec.losses.Loss.assumption`).  Empty when nothing is assumed.

        >>> import symgrad
        >>> symgrad.network([2, 2], "softmax", "log_likelihood").gradient("b1").assumptions
        ('Σ_i y_i = 1 (a one-hot or probability target)',)
        >>> symgrad.chain(2).gradient("b1").assumptions
        ()
        """
        cost = self.network.loss
        if cost.assumption and cost.cancels_with(self.network.activations[-1]):
            return (cost.assumption,)
        return ()

    @cached_property
    def expr(self) -> sympy.Expr:
        """The factors' product, unevaluated and in chain order (O(L) to build; a matrix
        expression, or one entry of it, for a dense network).

        >>> import symgrad
        >>> symgrad.chain(2).gradient("b2").expr
        (a2 - y)*sigmoid'(z2)
        """
        if self.factors and isinstance(self.factors[0], MatrixExpr):
            prod = sympy.MatMul(*self.factors)
            if self._entry is not None:
                # Indexing a MatMul evaluates the entry; keep it as an unevaluated element instead.
                return sympy.matrices.expressions.matexpr.MatrixElement(prod, *self._entry)
            return prod
        # Mul(*factors, evaluate=False) re-sympifies every factor and scans them for constructor
        # postprocessors; the factors are already SymPy scalars, so build the node directly.
        return Mul._from_args(self.factors, True) if len(self.factors) > 1 else self.factors[0]

    def doit(self, *, seconds: float | None = DEFAULT_SECONDS) -> sympy.Expr:
        """The canonical SymPy form, with every φ' replaced by its closed form.

        SymPy's canonical product costs far more than the chain itself (about 35 s at depth
        100,000), so it runs under a time budget: past ``seconds`` it raises
        :class:`symgrad.BudgetExceeded` with the reason (``seconds=None``: no limit).

        >>> import symgrad
        >>> symgrad.chain(2).gradient("b2").doit()
        (1 - sigmoid(z2))*(a2 - y)*sigmoid(z2)
        """
        if isinstance(self.factors[0], MatrixExpr):
            return _budgeted(lambda: self._explicit_matrix(local=True), seconds, "doit() of ∂C/∂%s" % self.wrt)
        return _budgeted(lambda: Mul(*[f.doit() for f in self.factors]), seconds, "doit() of ∂C/∂%s" % self.wrt)

    def explicit(self, *, seconds: float | None = DEFAULT_SECONDS) -> sympy.Expr:
        """The gradient in terms of the inputs, the target and the parameters only.

        Composes the forward pass, so it is limited to depth ≤ ``symgrad.symbolic.MAX_COMPOSE_DEPTH``,
        and runs under a time budget (``seconds``; :class:`symgrad.BudgetExceeded` past it).
        Deeper networks raise :class:`~symgrad.InvalidArgument`.

        >>> import symgrad
        >>> symgrad.chain(1).gradient("b1").explicit()
        (1 - sigmoid(a0*w1 + b1))*(-y + sigmoid(a0*w1 + b1))*sigmoid(a0*w1 + b1)
        """
        self.network._check_compose()
        if isinstance(self.factors[0], MatrixExpr):
            return _budgeted(lambda: self._explicit_matrix(local=False), seconds, "explicit() of ∂C/∂%s" % self.wrt)

        def compose():
            fwd = self.network.forward()
            mapping = {self.network.local_symbols[k]: v for k, v in fwd.items()}
            return Mul(*[f.xreplace(mapping).doit() for f in self.factors])

        return _budgeted(compose, seconds, "explicit() of ∂C/∂%s" % self.wrt)

    def _explicit_matrix(self, local: bool):
        net = self.network
        if local:
            vec = {}
            for l in range(1, net.depth + 1):
                for kind in "za":
                    vec["%s%d" % (kind, l)] = sympy.ImmutableMatrix([net.local_symbols["%s%d[%d]" % (kind, l, i)] for i in range(net.widths[l])])
        else:
            vec = dict(net.forward())
        vec.update(net.arrays)
        out = None
        for f in self.factors:
            m = _explicit_factor(f, vec)
            out = m if out is None else out * m
        out = sympy.ImmutableMatrix(out)
        if self._entry is not None:
            return out[self._entry]
        return out

    def latex(self) -> str:
        """``\\frac{\\partial C}{\\partial w} = …`` with the factors in chain order.

        >>> import symgrad
        >>> symgrad.chain(1).gradient("b1").latex()
        "\\\\frac{\\\\partial C}{\\\\partial b_{1}} = \\\\sigma'\\\\mathopen{}\\\\left(z_{1}\\\\right) \\\\left(a_{1} - y\\\\right)"
        """
        lhs = r"\frac{\partial C}{\partial %s}" % _latex_name(self.wrt)
        parts = []
        for f in self.factors:
            s = sympy.latex(f)
            parts.append(r"\left(%s\right)" % s if isinstance(f, (sympy.Add, sympy.MatAdd)) else s)
        rhs = " ".join(parts)
        if self._entry is not None:
            rhs = r"\left[%s\right]_{%d,%d}" % (rhs, self._entry[0], self._entry[1])
        return "%s = %s" % (lhs, rhs)

    def _repr_latex_(self) -> str:
        return "$\\displaystyle %s$" % self.latex()


def _budgeted(fn, seconds, what):
    if seconds is None:
        return fn()
    return within_budget(fn, seconds=seconds, what=what)


def _latex_name(name: str) -> str:
    m = re.fullmatch(r"([A-Za-z]+)([0-9]+)(?:\[([0-9]+)(?:,([0-9]+))?\])?", name)
    if not m:
        return name
    base, layer, i, j = m.groups()
    if base in ("W", "b") and i is not None:
        idx = i if j is None else "%s%s" % (i, j)
        return "%s^{%s}_{%s}" % (base, layer, idx)
    if base in ("W",):
        return "W^{%s}" % layer
    return "%s_{%s}" % (base, layer)


# ---------------------------------------------------------------------------------------------
# Chains
# ---------------------------------------------------------------------------------------------


def _chain_sequence(net) -> tuple:
    """``(φ'_1(z_1), w_2, φ'_2(z_2), …, w_L, φ'_L(z_L), ∂C/∂a_L)``, made once per chain.

    With cross-entropy and a sigmoid output the last two collapse to ``a_L − y``.  A chain with
    residual layers has its own layout (:func:`_chain_layout`), whose sequence this returns.
    """
    cached = net.__dict__.get("_sequence")
    if cached is not None:
        return cached
    if getattr(net, "is_residual", False):
        return _chain_layout(net)[0]
    s, loc, L = net.symbols, net.local_symbols, net.depth
    seq = []
    for j, act in enumerate(net.activations[:-1], start=1):
        seq.append(act.prime.at(loc["z%d" % j]))
        seq.append(s["w%d" % (j + 1)])
    seq.extend(net.loss.output_delta(net.activations[-1], loc["a%d" % L], loc["z%d" % L], s["y"]))
    net.__dict__["_sequence"] = tuple(seq)
    return net.__dict__["_sequence"]


def _residual_layout(net, transfer, local, out_factors) -> tuple:
    """The shared factor sequence of a network with residual layers, and where each layer's
    gradient starts in it.

    A plain layer k contributes ``w_k, φ'(z_k)`` (dense: ``W_kᵀ, Σ'(z^k)``; no ``w_1`` for the
    first layer); a residual one the single transfer factor ``∂a_k/∂a_{k−1} = 1 + α_k w_k φ'(z_k)``
    (dense: ``I + α_k W_kᵀ Σ'(z^k)``).  Then ∂C/∂b_j is ``φ'(z_j)`` followed by the rest of the
    sequence for a plain layer (a slice), and ``α_j φ'(z_j)`` (dense: ``α_j Σ'(z^j)``) followed by
    everything after layer j's transfer for a residual one: ``∂a_j/∂b_j = α_j φ'(z_j)``.

    ``transfer(k, alpha)``, ``local(k, alpha)`` (the lead factors of a residual layer) and
    ``out_factors(plain_output)`` build the per-layer pieces.  Returns ``(seq, heads)`` with
    ``heads[j−1] = (lead, start)``: the gradient of b_j is ``lead + seq[start:]``.
    """
    L = net.depth
    seq, heads = [], []
    for k, alpha in enumerate(net.residual, start=1):
        if alpha is None:
            if k > 1:
                seq.append(transfer(k, None))
            start = len(seq)
            if k < L:
                seq.append(local(k, None))
            else:
                seq.extend(out_factors(True))
            heads.append(((), start))
        else:
            seq.append(transfer(k, alpha))
            heads.append((local(k, alpha), len(seq)))
            if k == L:
                seq.extend(out_factors(False))
    return tuple(seq), tuple(heads)


def _chain_layout(net) -> tuple:
    """``(seq, heads)`` of a chain (see :func:`_residual_layout`), made once per chain; for a
    plain chain the sequence is :func:`_chain_sequence` and b_j starts at ``2(j − 1)``."""
    cached = net.__dict__.get("_layout")
    if cached is not None:
        return cached
    if not net.is_residual:
        layout = (_chain_sequence(net), tuple(((), 2 * (j - 1)) for j in range(1, net.depth + 1)))
    else:
        s, loc, L = net.symbols, net.local_symbols, net.depth
        acts = net.activations

        def prime(k):
            return acts[k - 1].prime.at(loc["z%d" % k])

        def transfer(k, alpha):
            if alpha is None:
                return s["w%d" % k]
            return sympy.Add(1, Mul(alpha, s["w%d" % k], prime(k)))  # ∂a_k/∂a_{k−1} = 1 + α_k w_k φ'(z_k)

        def local(k, alpha):
            if alpha is None:
                return prime(k)
            return (prime(k),) if alpha == 1 else (alpha, prime(k))  # ∂a_k/∂b_k = α_k φ'(z_k)

        def out_factors(plain):
            if plain:
                return net.loss.output_delta(acts[-1], loc["a%d" % L], loc["z%d" % L], s["y"])
            return (net.loss.dcost(loc["a%d" % L], s["y"]),)

        layout = _residual_layout(net, transfer, local, out_factors)
        net.__dict__["_sequence"] = layout[0]
    net.__dict__["_layout"] = layout
    return layout


def chain_gradient(net, name: str) -> Gradient:
    """∂C/∂name of a :class:`~symgrad.symbolic.networks.Chain` (``net.gradient(name)`` calls this).

    Plain layers: ∂C/∂b_j = φ'(z_j) Π_{k>j} w_k φ'(z_k) · ∂C/∂a_L.  A residual layer
    ``a_k = a_{k−1} + α_k φ(z_k)`` has ∂a_k/∂a_{k−1} = 1 + α_k w_k φ'(z_k) and ∂a_k/∂b_k =
    α_k φ'(z_k), so for a residual chain ∂C/∂b_j = α_j φ'(z_j) · P_j · ∂C/∂a_L with the path
    product P_j = Π_{k=j+1}^{L} (1 + α_k w_k φ'(z_k)); ∂C/∂w_j is a_{j−1} times that and
    ∂C/∂a_0 = P_0 · ∂C/∂a_L.

    >>> import symgrad, sympy
    >>> symgrad.chain(2, "tanh", residual=sympy.Symbol("alpha")).gradient("b1")
    Gradient(∂C/∂b1 = alpha*tanh'(z1)*(1 + alpha*w2*tanh'(z2))*(a2 - y))
    """
    m = re.fullmatch(r"([wb])([1-9][0-9]*)|a0", name)
    j = int(m.group(2)) if m and m.group(2) else None
    if not m or (j is not None and not 1 <= j <= net.depth):
        raise InvalidArgument(
            "unknown parameter %r for a depth-%d chain; known: w1..w%d, b1..b%d and the input a0"
            % (name, net.depth, net.depth, net.depth)
        )
    seq, heads = _chain_layout(net)
    if name == "a0":
        return Gradient(net, name, seq if net.residual[0] is not None else (net.symbols["w1"],) + seq)
    lead, start = heads[j - 1]
    tail = lead + seq[start:] if lead else seq[start:]
    if m.group(1) == "w":
        prev = net.symbols["a0"] if j == 1 else net.local_symbols["a%d" % (j - 1)]
        return Gradient(net, name, (prev,) + tail)
    return Gradient(net, name, tail)


# ---------------------------------------------------------------------------------------------
# Dense networks: matrix expressions with Σ'(z^l) as a diagonal Jacobian
# ---------------------------------------------------------------------------------------------


class ActivationJacobian(MatrixExpr):
    r"""Σ'(z^l) = diag(φ'(z^l_1), …, φ'(z^l_n)), unevaluated; prints ``\Sigma'(z^{l})``.

    ``ActivationJacobian(zvec, token)``: one module-level class for every activation, which the
    second argument names (:attr:`Activation.token`), as for :class:`ActivationPrime`."""

    def __new__(cls, zvec, token):
        return Basic.__new__(cls, zvec, token)

    @property
    def _activation(self) -> Activation:
        return from_token(self.args[1])

    @property
    def shape(self):
        n = self.args[0].shape[0]
        return (n, n)

    def _entry(self, i, j, **kwargs):
        return KroneckerDelta(i, j) * self._activation.prime(self.args[0][i, 0])

    def _latex(self, printer):
        return r"\Sigma'\left(%s\right)" % printer._print(self.args[0])

    def _sympystr(self, printer):
        return "diag(%s'(%s))" % (self._activation.name, printer._print(self.args[0]))


class CostGradient(MatrixExpr):
    r"""∇_a C for a loss whose ∂C/∂a_i is not simply a_i − y_i; prints ``\nabla_{a} C``.

    ``CostGradient(avec, yvec, Str(loss_name))``: one module-level class, the loss named by its
    third argument (a built-in loss, see :func:`symgrad.spec.losses.loss`)."""

    def __new__(cls, avec, yvec, loss_name):
        return Basic.__new__(cls, avec, yvec, loss_name)

    @property
    def _loss(self):
        return _loss_by_name(self.args[2].name)

    @property
    def shape(self):
        return self.args[0].shape

    def _entry(self, i, j, **kwargs):
        return self._loss.dcost(self.args[0][i, j], self.args[1][i, j])

    def _latex(self, printer):
        return r"\nabla_{a} C"

    def _sympystr(self, printer):
        return "grad_a C(%s, %s)" % (printer._print(self.args[0]), printer._print(self.args[1]))


def _jacobian_class(act: Activation):
    """Σ'(·) of ``act``: ``zvec -> ActivationJacobian(zvec, act.token)``."""
    return lambda zvec: ActivationJacobian(zvec, act.token)


def _walk_matrix_factor(f, leaf, *, transpose, add, matmul, scale, identity=None):
    """Evaluate a dense gradient's matrix factor by one walk over its expression tree.

    The leaves (``MatrixSymbol``, :class:`ActivationJacobian`, :class:`CostGradient`) go to
    ``leaf(f)``; ``Transpose``, ``MatAdd`` and ``MatMul`` (with its scalar coefficient) are folded
    with the given operations.  The one walk serves the symbolic side (explicit SymPy matrices,
    :func:`_explicit_factor`) and the numeric side (NumPy arrays, in
    :mod:`symgrad.numeric.closed_form`), which differ only in their leaves and operations.
    A residual layer's factor ``I + α W_lᵀ Σ'(z^l)`` has an ``Identity(n)`` leaf, which goes to
    ``identity(n)``, and a scalar coefficient α that may be a Symbol (``scale(alpha, m)``: the
    numeric side looks its value up by ``alpha.name``).
    Raises :class:`~symgrad.InvalidArgument` for any other node.

    >>> import sympy
    >>> A = sympy.MatrixSymbol("A", 2, 2)
    >>> _walk_matrix_factor(2 * A.T + A, lambda m: sympy.ImmutableMatrix([[1, 2], [3, 4]]),
    ...                    transpose=lambda m: m.T, add=lambda x, y: x + y, matmul=lambda x, y: x * y,
    ...                    scale=lambda c, m: c * m)
    Matrix([
    [3,  8],
    [7, 12]])
    """
    def walk(node):
        if isinstance(node, sympy.Transpose):
            return transpose(walk(node.arg))
        if isinstance(node, sympy.MatAdd):
            out = None
            for t in node.args:
                m = walk(t)
                out = m if out is None else add(out, m)
            return out
        if isinstance(node, sympy.MatMul):
            coeff, mats = node.as_coeff_matrices()
            out = None
            for t in mats:
                m = walk(t)
                out = m if out is None else matmul(out, m)
            return scale(coeff, out)
        if isinstance(node, (MatrixSymbol, ActivationJacobian, CostGradient)):
            return leaf(node)
        if isinstance(node, sympy.Identity) and identity is not None:
            return identity(int(node.shape[0]))
        raise InvalidArgument("cannot evaluate the matrix factor %r" % (node,))

    return walk(f)


def _explicit_factor(f, vec: dict) -> sympy.ImmutableMatrix:
    """A matrix factor as an explicit matrix, with the symbolic vectors/matrices in ``vec``."""

    def leaf(g):
        if isinstance(g, MatrixSymbol):
            return vec[g.name]
        if isinstance(g, ActivationJacobian):
            return sympy.ImmutableMatrix(sympy.diag(*[g._activation.derivative_at(zi) for zi in vec[g.args[0].name]]))
        av, yv = vec[g.args[0].name], vec[g.args[1].name]  # CostGradient
        return sympy.ImmutableMatrix([g._loss.dcost(ai, yi) for ai, yi in zip(av, yv)])

    return _walk_matrix_factor(f, leaf, transpose=lambda m: m.T, add=lambda x, y: x + y,
                              matmul=lambda x, y: x * y, scale=lambda c, m: c * m,
                              identity=lambda n: sympy.ImmutableMatrix(sympy.eye(n)))


def _dense_sequence(net) -> tuple:
    cached = net.__dict__.get("_sequence")
    if cached is not None:
        return cached
    if getattr(net, "is_residual", False):
        return _dense_layout(net)[0]
    n, L = net.widths, net.depth
    zs = [None] + [MatrixSymbol("z%d" % l, n[l], 1) for l in range(1, L + 1)]
    seq = []
    for l in range(1, L):
        seq.append(_jacobian_class(net.activations[l - 1])(zs[l]))
        seq.append(MatrixSymbol("W%d" % (l + 1), n[l + 1], n[l]).T)
    aL, y = MatrixSymbol("a%d" % L, n[L], 1), MatrixSymbol("y", n[L], 1)
    out_act = net.activations[-1]
    residual = sympy.MatAdd(aL, -y)  # unevaluated, so it prints a − y as written
    if net.loss.cancels_with(out_act):
        seq.append(residual)
    else:
        seq.append(_jacobian_class(out_act)(zs[L]))
        if net.loss.dcost_is_residual:
            seq.append(residual)
        else:
            seq.append(CostGradient(aL, y, Str(net.loss.name)))
    net.__dict__["_sequence"] = tuple(seq)
    return net.__dict__["_sequence"]


def _dense_layout(net) -> tuple:
    """``(seq, heads)`` of a dense network (see :func:`_residual_layout`), made once per network.

    A residual layer's backward step is ``∂C/∂a^{l−1} = (I + α_l W_lᵀ Σ'(z^l)) ∂C/∂a^l`` and
    ``∂C/∂b^l = α_l Σ'(z^l) ∂C/∂a^l``."""
    cached = net.__dict__.get("_layout")
    if cached is not None:
        return cached
    if not net.is_residual:
        layout = (_dense_sequence(net), tuple(((), 2 * (l - 1)) for l in range(1, net.depth + 1)))
    else:
        n, L = net.widths, net.depth
        zs = [None] + [MatrixSymbol("z%d" % l, n[l], 1) for l in range(1, L + 1)]

        def jac(k):
            return _jacobian_class(net.activations[k - 1])(zs[k])

        def scaled(alpha, *mats):
            return sympy.MatMul(*mats) if alpha == 1 else sympy.MatMul(alpha, *mats)

        def transfer(k, alpha):
            wt = MatrixSymbol("W%d" % k, n[k], n[k - 1]).T
            if alpha is None:
                return wt
            return sympy.MatAdd(sympy.Identity(n[k - 1]), scaled(alpha, wt, jac(k)))  # I + α_k W_kᵀ Σ'(z^k)

        def local(k, alpha):
            return jac(k) if alpha is None else (scaled(alpha, jac(k)),)  # ∂a^k/∂b^k = α_k Σ'(z^k)

        def out_factors(plain):
            aL, y = MatrixSymbol("a%d" % L, n[L], 1), MatrixSymbol("y", n[L], 1)
            out = []
            if plain and net.loss.cancels_with(net.activations[-1]):
                return (sympy.MatAdd(aL, -y),)
            if plain:
                out.append(jac(L))
            out.append(sympy.MatAdd(aL, -y) if net.loss.dcost_is_residual else CostGradient(aL, y, Str(net.loss.name)))
            return tuple(out)

        layout = _residual_layout(net, transfer, local, out_factors)
        net.__dict__["_sequence"] = layout[0]
    net.__dict__["_layout"] = layout
    return layout


def dense_gradient(net, name: str) -> Gradient:
    """∂C/∂name of a :class:`~symgrad.symbolic.networks.Network` (``net.gradient(name)`` calls this).

    A residual layer ``a^l = a^{l−1} + α_l φ(z^l)`` steps back by ``∂C/∂a^{l−1} = (I + α_l W_lᵀ
    Σ'(z^l)) ∂C/∂a^l``, and ``∂C/∂b^l = α_l Σ'(z^l) ∂C/∂a^l``.

    >>> import symgrad
    >>> symgrad.network([2, 2, 2], "tanh", residual=[None, 0.5]).gradient("b1")
    Gradient(∂C/∂b1 = diag(tanh'(z1))*(I + (1/2)*W2.T*diag(tanh'(z2)))*(a2 - y))
    """
    # ASCII digits only (\d would take '１'), no leading zeros: one spelling per parameter.
    m = re.fullmatch(r"(W|b|a)(0|[1-9][0-9]*)(?:\[(0|[1-9][0-9]*)(?:,(0|[1-9][0-9]*))?\])?", name)
    known = "W1..W%d, b1..b%d (or entries such as 'W1[0,0]', 'b1[0]') and the input a0" % (net.depth, net.depth)
    if not m:
        raise InvalidArgument("unknown parameter %r for %r; known: %s" % (name, net, known))
    kind, layer, i, j = m.group(1), int(m.group(2)), m.group(3), m.group(4)
    if (kind == "a" and layer != 0) or (kind != "a" and not 1 <= layer <= net.depth) or m.group(2) != str(layer):
        raise InvalidArgument("unknown parameter %r for %r; known: %s" % (name, net, known))
    shape = net.shape("%s%d" % (kind, layer))
    entry = None
    if i is not None:
        idx = (int(i),) if j is None else (int(i), int(j))
        if len(idx) != len(shape) or any(a >= b for a, b in zip(idx, shape)):
            raise InvalidArgument("entry %r is out of range: %s%d has shape %s" % (name, kind, layer, shape))
        entry = (idx[0], idx[1] if len(idx) == 2 else 0)
    seq, heads = _dense_layout(net)
    n = net.widths
    if kind == "a":
        factors = seq if net.residual[0] is not None else (MatrixSymbol("W1", n[1], n[0]).T,) + seq
    else:
        lead, start = heads[layer - 1]
        factors = lead + seq[start:] if lead else seq[start:]
        if kind == "W":
            factors = factors + (MatrixSymbol("a%d" % (layer - 1), n[layer - 1], 1).T,)
    return Gradient(net, name, factors, entry)


def check_parameter_name(name) -> str:
    """``name`` if it is a str with one spelling (no surrounding whitespace), else InvalidArgument."""
    if not isinstance(name, str):
        raise InvalidArgument("parameter name must be a str such as 'b1' or 'W2[1,0]', not %r" % (name,))
    if name != name.strip():
        raise InvalidArgument("parameter name %r has surrounding whitespace; write it as %r (one spelling per parameter)" % (name, name.strip()))
    return name
