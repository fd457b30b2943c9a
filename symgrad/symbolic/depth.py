"""Symbolic depth: the closed form of ∂C/∂b_j and ∂C/∂w_j for a chain of symbolic depth ``L`` at a
symbolic layer ``j``, with indexed symbols and an unevaluated ``Product`` (Nielsen, ch. 2 eq. BP2, ch. 5).
"""

from __future__ import annotations

import sympy
from sympy import Mul

from symgrad.errors import InvalidArgument
from symgrad.spec.activations import activation as _activation
from symgrad.spec.losses import loss as _loss
from symgrad.symbolic.networks import Chain, _alpha, _check_depth, _check_residual

__all__ = ["SymbolicChain", "SymbolicGradient"]


# ---------------------------------------------------------------------------------------------
# Symbolic depth
# ---------------------------------------------------------------------------------------------


class SymbolicGradient:
    """``∂C/∂b_j = φ'(z_j) · Π_{k=j+1}^{L} w_k φ'(z_k) · ∂C/∂a_L`` (and ``a_{j-1}`` · that for ``w_j``)
    for a symbolic depth ``L`` and layer ``j``, with indexed symbols (Nielsen, ch. 2 BP1–BP4
    unrolled; ch. 5 for the product over layers).  Made by :meth:`SymbolicChain.gradient`.

    >>> import sympy, symgrad
    >>> L = sympy.Symbol("L", integer=True, positive=True)
    >>> symgrad.chain(L).gradient("b")
    SymbolicGradient(∂C/∂b_j = (-y + a[L])*sigmoid'(z[j])*Product(sigmoid'(z[k])*w[k], (k, j + 1, L)))
    """

    def __init__(self, chain: "SymbolicChain", kind: str, layer, factors: tuple):
        self.chain, self.kind, self.layer = chain, kind, layer
        #: The factors in chain order: [a_{j-1},] φ'(z_j), Π w_k φ'(z_k), ∂C/∂a_L.
        self.factors = factors
        #: Their product (SymPy's canonical form).
        self.expr = Mul(*factors)

    def __repr__(self):
        return "SymbolicGradient(∂C/∂%s_%s = %s)" % (self.kind, self.layer, self.expr)

    def at(self, depth: int, layer: int | None = None) -> sympy.Expr:
        """Substitute a concrete depth (and layer, if symbolic) and expand the product, in the
        symbols of ``symgrad.chain(depth, ...)``.  Equals ``Mul(*chain(depth).gradient(name).factors)``.

        * ``depth``: a positive int (≤ ``symgrad.symbolic.MAX_DEPTH``);
        * ``layer``: an int in ``1..depth``; needed when the gradient is for a symbolic layer ``j``,
          and refused when the layer is already concrete.

        Raises :class:`~symgrad.InvalidArgument` for a layer outside ``1..depth`` or a non-int.

        >>> import sympy, symgrad
        >>> L = sympy.Symbol("L", integer=True, positive=True)
        >>> symgrad.chain(L).gradient("b").at(2, layer=2)
        (a2 - y)*sigmoid'(z2)
        """
        depth = _check_depth(depth)
        sc = self.chain
        subs = {sc.L: depth}
        if isinstance(self.layer, sympy.Symbol):
            if layer is None:
                raise InvalidArgument("this gradient is for a symbolic layer %s; pass layer=… to at(), an int in 1..%d" % (self.layer, depth))
            subs[self.layer] = _check_layer(layer, depth)
        else:
            if layer is not None:
                raise InvalidArgument("this gradient is already for layer %s; call at(%d) without layer=%r" % (self.layer, depth, layer))
            _check_layer(int(self.layer), depth)
        expr = self.expr.xreplace(subs)
        expr = expr.replace(lambda e: isinstance(e, sympy.Product), _expand_product)
        net = Chain(depth, activation=sc.activation, loss=sc.loss, residual=sc.alpha)
        mapping = {}
        for base, table in ((sc.w, net.symbols), (sc.b, net.symbols), (sc.z, net.local_symbols), (sc.a, net.local_symbols)):
            for idx in range(0, depth + 1):
                key = "%s%d" % (base.name, idx)
                if key in table:
                    mapping[base[idx]] = table[key]
        mapping[sc.a[0]] = net.symbols["a0"]
        mapping[sc.y] = net.symbols["y"]
        return expr.xreplace(mapping)

    def latex(self) -> str:
        r"""``\frac{\partial C}{\partial b_{j}} = …`` with the factors in chain order.

        >>> import sympy, symgrad
        >>> L = sympy.Symbol("L", integer=True, positive=True)
        >>> symgrad.chain(L).gradient("b").latex().startswith(r"\frac{\partial C}{\partial b_{j}} =")
        True
        """
        lhs = r"\frac{\partial C}{\partial %s_{%s}}" % (self.kind, sympy.latex(self.layer))
        parts = [r"\left(%s\right)" % sympy.latex(f, order="none") if isinstance(f, sympy.Add) else sympy.latex(f, order="none") for f in self.factors]
        return "%s = %s" % (lhs, " ".join(parts))

    def _repr_latex_(self):
        return "$\\displaystyle %s$" % self.latex()


def _expand_product(p: sympy.Product) -> sympy.Expr:
    (k, lo, hi), = p.limits
    if not (lo.is_Integer and hi.is_Integer):
        raise InvalidArgument("product limits %s..%s are not concrete" % (lo, hi))
    return Mul(*[p.function.xreplace({k: sympy.Integer(i)}) for i in range(int(lo), int(hi) + 1)])


class SymbolicChain:
    """A chain of symbolic depth ``L`` (make one with ``symgrad.chain(sympy.Symbol('L'))``).

    ``depth`` must be a SymPy Symbol not declared non-integer or non-positive (else
    :class:`~symgrad.InvalidArgument`); ``activation`` and ``loss`` as for :func:`symgrad.chain`.

    >>> import sympy, symgrad
    >>> symgrad.chain(sympy.Symbol("L", integer=True, positive=True))
    SymbolicChain(depth=L, activation='sigmoid', loss='quadratic')
    """

    def __init__(self, depth, activation="sigmoid", loss="quadratic", residual=None):
        if not isinstance(depth, sympy.Symbol):
            raise InvalidArgument("symbolic depth must be a SymPy Symbol such as sympy.Symbol('L', integer=True, positive=True), not %r" % (depth,))
        if depth.is_integer is False or depth.is_positive is False:
            raise InvalidArgument("symbolic depth %s is declared non-integer or non-positive; a depth is a positive integer: "
                                  "use sympy.Symbol('%s', integer=True, positive=True)" % (depth, depth.name))
        self.L = depth
        self.activation = _activation(activation)
        self.loss = _loss(loss)
        if isinstance(residual, (list, tuple)):
            raise InvalidArgument("symbolic depth %s takes one residual α for every layer, not a per-layer list; "
                                  "e.g. residual=sympy.Symbol('alpha', real=True)" % depth)
        #: The residual scale α of every layer (``a_k = a_{k−1} + α φ(z_k)``), or None.
        self.alpha = _alpha(residual, 1, "chain")
        if self.alpha is not None:
            if depth in self.alpha.free_symbols or str(self.alpha) == str(depth):  # the same symbol, or one spelled alike
                raise InvalidArgument("residual=%s is the depth symbol; name α differently, e.g. sympy.Symbol('alpha', real=True)" % self.alpha)
            _check_residual((self.alpha,), (self.activation,), self.loss, "chain")
        self.w, self.b, self.z, self.a = (sympy.IndexedBase(s, real=True) for s in ("w", "b", "z", "a"))
        self.y = sympy.Symbol("y", real=True)
        self.k = sympy.Symbol("k", integer=True, positive=True)

    def __repr__(self):
        res = "" if self.alpha is None else ", residual=%s" % self.alpha
        return "SymbolicChain(depth=%s, activation=%r, loss=%r%s)" % (self.L, self.activation.name, self.loss.name, res)

    def gradient(self, kind: str, layer=None) -> SymbolicGradient:
        """``gradient('b')`` for ∂C/∂b_j at a symbolic layer j (or ``layer=1``), likewise ``'w'``.

        * ``kind``: ``'b'`` or ``'w'``;
        * ``layer``: ``None`` (a symbolic layer ``j``), a positive int, or a SymPy integer symbol.
          Strings are refused: nothing here is parsed or evaluated.

        For every loss the form is valid at every layer ``1 ≤ j ≤ L``:
        ``φ'(z_j) · Π_{k=j+1}^{L} w_k φ'(z_k) · ∂C/∂a_L``.  With cross-entropy and a sigmoid output,
        σ'(z_L) · ∂C/∂a_L = a_L − y, so the product is written ``Π_{k=j}^{L-1} φ'(z_k) w_{k+1} ·
        (a_L − y)``, which is also valid at j = L (an empty product).  Source: Nielsen, *Neural
        Networks and Deep Learning*, ch. 2 (eq. BP2) and ch. 5.

        >>> import sympy, symgrad
        >>> L = sympy.Symbol("L", integer=True, positive=True)
        >>> symgrad.chain(L).gradient("b")
        SymbolicGradient(∂C/∂b_j = (-y + a[L])*sigmoid'(z[j])*Product(sigmoid'(z[k])*w[k], (k, j + 1, L)))
        """
        if not isinstance(kind, str) or kind not in ("w", "b"):
            raise InvalidArgument("kind=%r must be 'w' or 'b'" % (kind,))
        j = sympy.Symbol("j", integer=True, positive=True) if layer is None else _symbolic_layer(layer)
        k, L = self.k, self.L
        prime = self.activation.prime
        w, z = self.w, self.z
        alpha = self.alpha
        if alpha is not None:
            # Residual: ∂a_k/∂a_{k−1} = 1 + α w_k φ'(z_k) and ∂a_j/∂b_j = α φ'(z_j), so
            # ∂C/∂b_j = α φ'(z_j) · Π_{k=j+1}^{L} (1 + α w_k φ'(z_k)) · ∂C/∂a_L.
            term = sympy.Add(1, Mul(alpha, w[k], prime(z[k])))
            lead = (prime(z[j]),) if alpha == 1 else (alpha, prime(z[j]))
            factors = lead + (sympy.Product(term, (k, j + 1, L)), self.loss.dcost(self.a[L], self.y))
        elif self.loss.cancels_with(self.activation):
            # δ^L = σ'(z_L) · ∂C/∂a_L = a_L − y; the factors below the output pair φ'(z_k) with
            # the weight w_{k+1} that follows it, so the form holds for every j ≤ L.
            term = Mul(prime(z[k]), w[k + 1], evaluate=False)
            factors = (sympy.Product(term, (k, j, L - 1)), self.a[L] - self.y)
        else:
            term = Mul(w[k], prime(z[k]), evaluate=False)  # w_k φ'(z_k), kept in the literature's order
            factors = (prime(z[j]), sympy.Product(term, (k, j + 1, L)), self.loss.dcost(self.a[L], self.y))
        # Same objects, but printed as the literature writes them (j + 1, a_L − y).
        pretty = {self.a[L] - self.y: sympy.Add(self.a[L], -self.y, evaluate=False)}
        if isinstance(j, sympy.Symbol):
            pretty[j + 1] = sympy.Add(j, 1, evaluate=False)
        factors = tuple(f.xreplace(pretty) for f in factors)
        if kind == "w":
            factors = (self.a[j - 1],) + factors
        return SymbolicGradient(self, kind, j, factors)


def _check_layer(layer, depth: int) -> int:
    """A concrete layer index: an int (or SymPy Integer) in ``1..depth``."""
    if isinstance(layer, bool) or not isinstance(layer, (int, sympy.Integer)):
        raise InvalidArgument("layer=%r must be an int in 1..%d (the layer whose parameter is differentiated), e.g. layer=1" % (layer, depth))
    layer = int(layer)
    if not 1 <= layer <= depth:
        raise InvalidArgument("layer=%d is outside 1..%d: a depth-%d chain has layers 1 to %d" % (layer, depth, depth, depth))
    return layer


def _symbolic_layer(layer):
    """``layer`` for :meth:`SymbolicChain.gradient`: a positive int, or a SymPy symbol that is not
    known to be non-positive or non-integer.  Never a string (no parsing, no ``sympify``)."""
    if isinstance(layer, bool):
        raise InvalidArgument("layer=%r must be a positive int or a SymPy integer symbol, not a bool" % (layer,))
    if isinstance(layer, (int, sympy.Integer)):
        if int(layer) < 1:
            raise InvalidArgument("layer=%d must be at least 1 (layers are numbered 1..L), e.g. layer=1" % int(layer))
        return sympy.Integer(int(layer))
    if isinstance(layer, sympy.Symbol):
        if layer.is_integer is False or layer.is_positive is False:
            raise InvalidArgument("layer=%s must be a positive integer symbol, e.g. sympy.Symbol('j', integer=True, positive=True)" % layer)
        return layer
    raise InvalidArgument(
        "layer=%r must be a positive int or a SymPy integer symbol such as sympy.Symbol('j', integer=True, positive=True); "
        "strings are not parsed" % (layer,))
