r"""Exact verification of a closed-form gradient against ``sympy.diff`` of the composed loss.

:func:`verify_gradient` decides whether the closed form built from local factors (what
``gradient.explicit()`` composes) equals ``sympy.diff(net.cost(), p)`` (plain differentiation of the whole network) and
answers with a :class:`VerifyResult` whose ``status`` is

* ``"exact match"``: the identity was *proved* — the two expressions are identical after SymPy's
  automatic canonicalisation, or after rewriting both in per-layer symbols (``z_k``, which is
  sound: an identity in free symbols stays one after substituting ``z_k := w_k a_{k-1} + b_k``)
  and comparing their factorisations factor by factor;
* ``"mismatch"``: both sides were evaluated at a random rational point with 60 significant
  digits and differ there by more than 1e-30 relative, which disproves the identity (the values
  are in the reason);
* ``"unknown"``: neither happened within the time budget (``reason`` says what ran out).

Everything runs under :func:`symgrad._budget.within_budget`, which also turns SymPy's deep
recursion on depth-64 compositions into the budget's "unknown" instead of a ``RecursionError``.
Networks deeper than :data:`symgrad.symbolic.MAX_COMPOSE_DEPTH` cannot be composed and raise
:class:`~symgrad.InvalidArgument` before anything is computed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from symgrad._budget import BudgetExceeded, within_budget
from symgrad.errors import InvalidArgument

__all__ = ["VerifyResult", "verify_gradient", "DEFAULT_SECONDS", "STATUSES"]

#: Default time budget of one verification (seconds).
DEFAULT_SECONDS = 60.0
STATUSES = ("exact match", "mismatch", "unknown")


@dataclass(frozen=True)
class VerifyResult:
    """The answer of :func:`verify_gradient`: ``status`` (one of :data:`STATUSES`) and why.

    >>> import symgrad
    >>> r = verify_gradient(symgrad.chain(2), "b1")
    >>> r.ok, r.status
    (True, 'exact match')
    """

    status: str
    reason: str

    @property
    def ok(self) -> bool:
        """True exactly when the identity was proved (``status == "exact match"``).

        >>> VerifyResult("unknown", "budget").ok
        False
        """
        return self.status == "exact match"

    def __str__(self) -> str:
        return "%s (%s)" % (self.status, self.reason)


def verify_gradient(net, gradient, *, seconds: float = DEFAULT_SECONDS, seed: int = 0) -> VerifyResult:
    """Check ``gradient`` (a :class:`symgrad.Gradient` of ``net``, or a parameter name such as
    ``"b1"`` or ``"W2[0,1]"``) exactly against ``sympy.diff`` of ``net``'s composed loss.

    ``seconds`` bounds the whole check (wall clock); ``seed`` picks the rational point of the
    numeric disproof.  Raises :class:`~symgrad.InvalidArgument` for a network deeper than
    ``symgrad.symbolic.MAX_COMPOSE_DEPTH`` or an unknown parameter.

    >>> import symgrad
    >>> verify_gradient(symgrad.chain(3), "b1").status
    'exact match'
    """
    from symgrad.symbolic.derivation import Gradient

    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0 or seconds != seconds:
        raise InvalidArgument("seconds=%r must be a positive number of seconds, e.g. seconds=60" % (seconds,))
    if isinstance(gradient, str):
        gradient = net.gradient(gradient.strip())
    if not isinstance(gradient, Gradient) or gradient.network is not net:
        raise InvalidArgument("verify_gradient needs a Gradient of this network (net.gradient('b1')) or a parameter name, not %r" % (gradient,))
    net._check_compose()  # depth > MAX_COMPOSE_DEPTH: InvalidArgument, before any work
    try:
        return within_budget(lambda: _verify(net, gradient, seed), seconds=seconds, what="the exact verification of dC/d%s" % gradient.wrt)
    except BudgetExceeded as exc:
        return VerifyResult("unknown", exc.reason)


def _references(net, gradient) -> list:
    """``sympy.diff`` of the composed loss: one expression, or one per entry of a matrix parameter."""
    import sympy

    loss = net.cost()
    if gradient.wrt in getattr(net, "arrays", {}) and isinstance(net.arrays[gradient.wrt], sympy.MatrixBase) and gradient._entry is None:
        return [sympy.diff(loss, s) for s in list(net.arrays[gradient.wrt])]
    return [sympy.diff(loss, net.symbols[gradient.wrt])]


def _locals(net, gradient):
    """(closed forms in per-layer symbols, forward z expression → its symbol, z symbol → its
    one-layer definition in the previous layer's symbols)."""
    import sympy

    fwd = net.forward()
    loc = net.local_symbols
    z_of, one_layer, act_of = {}, {}, {}
    prev = {}
    for l in range(1, net.depth + 1):
        act = net.activations[l - 1]
        zs = fwd["z%d" % l]
        entries = list(zs) if isinstance(zs, sympy.MatrixBase) else [zs]
        names = ["z%d[%d]" % (l, i) for i in range(len(entries))] if isinstance(zs, sympy.MatrixBase) else ["z%d" % l]
        this = {}
        for e, n in zip(entries, names):
            sym = loc[n]
            one_layer[sym] = e.xreplace(prev)
            this[e] = sym
        if act.output_only:  # softmax: a_i = e^{z_i}/Σ_k e^{z_k} of the whole layer
            for n, a in zip(names, act.vector([loc[n] for n in names])):
                act_of[loc["a" + n[1:]]] = a
        else:
            alpha = net.residual[l - 1]
            for n in names:
                if alpha is None:
                    act_of[loc["a" + n[1:]]] = act(loc[n])
                else:  # residual: a_l = a_{l−1} + α_l φ(z_l), a_{l−1} itself in per-layer symbols
                    below = n[1:].replace(str(l), str(l - 1), 1)
                    a_below = act_of[loc["a" + below]] if l > 1 else net.symbols["a0" + n[1 + len(str(l)):]]
                    act_of[loc["a" + n[1:]]] = a_below + alpha * act(loc[n])
        z_of.update(this)
        # A residual layer's z_l sees a_{l−1} = a_{l−2} + …, so every earlier layer's z is named.
        prev = {**prev, **this} if net.is_residual else this
    if hasattr(net, "widths"):
        closed = gradient._explicit_matrix(local=True)
        closed = list(closed) if isinstance(closed, sympy.MatrixBase) else [closed]
    else:
        closed = [sympy.Mul(*[f.doit() for f in gradient.factors])]
    return [c.xreplace(act_of) for c in closed], z_of, one_layer


def _factor_match(a, b, one_layer) -> bool:
    """True when ``a`` and ``b`` have the same factorisation, up to constant factors that
    multiply out to exactly 1.  Factors that do not pair up directly are compared after one
    step of substituting their outermost ``z_k`` by its one-layer definition."""
    import sympy

    fa, fb = sympy.factor(a), sympy.factor(b)
    if fa - fb == 0:
        return True
    ratio = fa / fb
    num, den = [], []
    const = sympy.S.One
    for f in sympy.Mul.make_args(ratio):
        base, exp = f.as_base_exp()
        if not f.free_symbols:
            const *= f
        elif exp.is_Integer and exp < 0:
            den.extend([base] * int(-exp))
        elif exp.is_Integer:
            num.extend([base] * int(exp))
        else:
            return False
    for n in num:
        match = None
        for k, d in enumerate(den):
            top = [z for z in one_layer if z in n.free_symbols or z in d.free_symbols][-1:]
            step = {z: one_layer[z] for z in top}  # the outermost layer only
            for x, y in ((n, d), (n.xreplace(step), d.xreplace(step))):
                q = _proportional(x, y)
                if q is not None:
                    match = (k, q)
                    break
            if match:
                break
        if match is None:
            return False
        const *= match[1]
        del den[match[0]]
    if den:
        return False
    return const == 1 or sympy.simplify(const - 1) == 0  # an exact constant: no rounding


def _proportional(x, y):
    """The constant ``k`` with ``x == k*y`` exactly (as polynomials in their symbols and function
    applications, coefficient by coefficient), or None."""
    import sympy

    if x.free_symbols != y.free_symbols:
        return None
    # Generators: the symbols and the function applications that depend on them; constants such
    # as sqrt(pi) stay in the coefficients.
    atoms = (x.atoms(sympy.Symbol) | {f for f in (x.atoms(sympy.Function) | y.atoms(sympy.Function)) if f.free_symbols})
    gens = sorted(atoms, key=sympy.default_sort_key)
    try:
        px = sympy.Poly(x, *gens)
        py = sympy.Poly(y, *gens)
    except (sympy.PolynomialError, sympy.GeneratorsNeeded, sympy.CoercionFailed):
        return None
    if px.monoms() != py.monoms():
        return None
    k = px.LC() / py.LC()
    if k.free_symbols or not all(sympy.expand(a - k * b) == 0 for a, b in zip(px.coeffs(), py.coeffs())):
        return None
    return k


def _softmax_identity(closed, refs, one_layer):
    """Exact match of softmax-output gradients.  Each bias is written through its layer's z
    (b_i := z_i − Σ_j W_ij a_j, a bijective change of variables, so an identity stays one), every
    e^{Σ c_k z_k} becomes Π E_k^{c_k} with E_k = e^{z_k} a positive symbol, and ``cancel`` decides
    the difference of the two sides, now rational functions of the E_k, the weights and the
    hidden layers' function applications (any other e^{f(z)} is one of those): 0 exactly when
    they agree identically.  None when it does not reduce."""
    import sympy

    bias = {}
    for zs, definition in one_layer.items():
        b = [t for t in sympy.Add.make_args(definition) if t.is_Symbol and t.name.startswith("b")]
        if len(b) == 1:
            bias[b[0]] = zs - (definition - b[0])
    zsyms = list(one_layer)
    E = {q: sympy.Dummy("E_%s" % q.name, positive=True) for q in zsyms}

    def rational(e):
        e = e.xreplace(bias)
        out = {}
        for x in e.atoms(sympy.exp):
            arg = sympy.expand(x.args[0])
            if not arg.free_symbols <= set(zsyms):
                continue
            try:
                p = sympy.Poly(arg, *zsyms)
            except sympy.PolynomialError:
                continue  # e^{f(z)} with f not a polynomial (a hidden φ' such as GELU's): a generator as it is
            if p.total_degree() == 1 and p.coeff_monomial(1) == 0 and all(c.is_Integer for c in p.coeffs()):
                out[x] = sympy.Mul(*[E[q] ** p.coeff_monomial(q) for q in zsyms])
        e = sympy.expand_log(e.xreplace(out), force=True)
        if e.has(sympy.Abs):  # |u| = u·sign(u) for every real u: one spelling on both sides
            e = e.replace(sympy.Abs, lambda u: u * sympy.sign(u))
        # A piecewise φ' (ELU, SELU) is one opaque generator, the same on both sides: cancel
        # would otherwise work inside its branches and not reduce.
        # Normalised so that its first branch is 1 (SELU's φ' reads λ·Piecewise((1, z > 0), (αe^z, True))
        # on one side and Piecewise((λ, z > 0), (λαe^z, True)) on the other): P = c·P/c exactly.
        repl = {}
        for pw in e.atoms(sympy.Piecewise):
            c = pw.args[0].expr
            c = c if c.is_Number and c != 0 else sympy.S.One
            norm = sympy.Piecewise(*[(b / c, cond) for b, cond in pw.args])
            repl[pw] = c * opaque.setdefault(norm, sympy.Dummy("P%d" % len(opaque)))
        return e.xreplace(repl)

    opaque: dict = {}

    for c, r in zip(closed, refs):
        if sympy.cancel(sympy.together(rational(c) - rational(r))) != 0:
            return None
    return VerifyResult("exact match", "equal to sympy.diff of the composed loss given Σ_i y_i = 1 (y's last entry eliminated), "
                                       "as rational functions of e^{z^L_k} in per-layer symbols z_k")


def _atoms_cancel(diff) -> bool:
    """True when ``diff`` is identically 0 as a rational function of its symbols and its function
    applications (σ(z_1), erf(z_2/√2), e^{−z_3²/2}, …, each with its argument expanded, so equal
    applications written differently become one generator): an identity in independent
    generators stays one when they take their values, so True proves ``diff == 0``.  False only
    means "not shown"."""
    import sympy

    table: dict = {}

    def canonical(arg):
        return sympy.expand(arg) if sympy.count_ops(arg) <= 40 else arg

    def atomize(e):
        if e.is_Atom:
            return e
        if isinstance(e, sympy.Piecewise):
            # A piecewise φ' (ELU, SELU) is one generator, scaled so that its first branch has
            # coefficient 1: λ·Piecewise((1, z > 0), (α e^z, True)) and Piecewise((λ, z > 0),
            # (λα e^z, True)) are then the same generator times λ (exact rationals).
            c = e.args[0].expr.as_coeff_Mul()[0]
            c = c if c.is_Rational and c != 0 else sympy.S.One
            key = sympy.Piecewise(*[(pc.expr / c, pc.cond) for pc in e.args])
            return c * table.setdefault(key, sympy.Dummy("g%d" % len(table)))
        args = [atomize(a) for a in e.args]
        if isinstance(e, (sympy.Function, sympy.Pow)) and not (isinstance(e, sympy.Pow) and e.exp.is_Integer):
            if isinstance(e, sympy.Pow) and not e.exp.is_Rational:
                key = sympy.exp(canonical(e.exp * sympy.log(args[0])))
            else:
                key = e.func(*[canonical(a) for a in args])
            if key.is_number and key.is_Rational:
                return key
            if key not in table:
                table[key] = sympy.Dummy("g%d" % len(table))
            return table[key]
        return e.func(*args)

    if diff == 0:
        return True
    try:
        return sympy.cancel(sympy.together(atomize(diff))) == 0
    except (AttributeError, TypeError, sympy.PolynomialError):  # a node this rewriting does not know: not shown
        return False


def _compose(e, one_layer):
    """``e`` with every per-layer symbol z_k replaced by its definition, top layer first, so that
    only inputs and parameters remain."""
    for zs in reversed(list(one_layer)):
        e = e.xreplace({zs: one_layer[zs]})
    return e


def _point(net, seed):
    import sympy

    rng = random.Random(seed)
    syms = list(net.symbols.values())
    return {s: sympy.Rational(rng.choice([-1, 1]) * rng.randint(1, 9), rng.randint(2, 9)) for s in syms}


def _disproof(closed, refs, one_layer, net, seed):
    """A reason string when a closed form and its reference differ at a random rational point.

    The point's forward pass is computed layer by layer with 60 significant digits (``one_layer``
    holds each ``z`` in the previous layer's symbols, in layer order), and both sides are
    evaluated from the per-layer values; a relative difference above 1e-30 is far beyond the
    rounding of 60-digit arithmetic over 64 layers."""
    import sympy

    for n in range(2):
        values = _point(net, seed + n)
        for sym, definition in one_layer.items():
            values[sym] = sympy.N(definition.xreplace(values), 60)
        for i, (c, r) in enumerate(zip(closed, refs)):
            cv = sympy.N(c.xreplace(values), 60)
            rv = sympy.N(r.xreplace(values), 60)
            if not (cv.is_number and rv.is_number):
                continue
            scale = max(abs(cv), abs(rv))
            if scale != 0 and abs(cv - rv) > scale * sympy.Float(10) ** -30:
                where = "" if len(closed) == 1 else " (entry %d)" % i
                return "at a random rational point%s the closed form is %s but sympy.diff gives %s" % (
                    where, sympy.N(cv, 12), sympy.N(rv, 12))
    return None


def _target_on_simplex(net):
    """The substitution that writes the closed form's assumption Σ_i y_i = 1 into both sides
    (y_{n−1} := 1 − Σ_{i<n−1} y_i), or None when the gradient assumes nothing about y."""
    if not (net.loss.assumption and net.loss.cancels_with(net.activations[-1]) and hasattr(net, "arrays")):
        return None
    y = list(net.arrays["y"])
    return {y[-1]: 1 - sum(y[:-1])}


def _verify(net, gradient, seed) -> VerifyResult:
    import sympy

    refs = _references(net, gradient)
    closed_local, z_of, one_layer = _locals(net, gradient)
    if len(closed_local) != len(refs):  # pragma: no cover - internal invariant
        raise AssertionError("closed form has %d entries, sympy.diff %d" % (len(closed_local), len(refs)))
    refs_local = [r.xreplace(z_of) for r in refs]
    simplex = _target_on_simplex(net)
    if simplex is not None:
        # The closed form a^L − y is the gradient only for Σ y = 1 (Gradient.assumptions): both
        # sides with y's last entry eliminated, then as rational functions of e^{z^L_k}.
        closed_local = [c.xreplace(simplex) for c in closed_local]
        refs_local = [r.xreplace(simplex) for r in refs_local]
        res = _softmax_identity(closed_local, refs_local, one_layer)
        if res is not None:
            return res
    if all(c - r == 0 for c, r in zip(closed_local, refs_local)):
        return VerifyResult("exact match", "identical to sympy.diff of the composed loss, written in per-layer symbols z_k")
    if any(c.has(sympy.Abs) for c in closed_local + refs_local):
        # |u| = u·sign(u) for every real u (0 included): one spelling on both sides.
        closed_local = [c.replace(sympy.Abs, lambda u: u * sympy.sign(u)) for c in closed_local]
        refs_local = [r.replace(sympy.Abs, lambda u: u * sympy.sign(u)) for r in refs_local]
    if getattr(net, "is_residual", False) and all(_atoms_cancel(c - r) for c, r in zip(closed_local, refs_local)):
        # A residual layer's a_l is a sum over the layers below: factorising both sides (next) is
        # slow, while the difference cancels at once as a rational function of the applications.
        return VerifyResult("exact match", "equal to sympy.diff of the composed loss as rational functions of the function "
                                           "applications, in per-layer symbols z_k")
    if all(c - r == 0 or _factor_match(c, r, one_layer) for c, r in zip(closed_local, refs_local)):
        return VerifyResult("exact match", "equal to sympy.diff of the composed loss, factor by factor in per-layer symbols z_k")
    bad = _disproof(closed_local, refs_local, one_layer, net, seed)
    if bad is not None:
        return VerifyResult("mismatch", bad)
    if all(sympy.expand(c - r) == 0 for c, r in zip(closed_local, refs_local)):
        return VerifyResult("exact match", "the difference from sympy.diff of the composed loss expands to 0 in per-layer symbols z_k")
    if all(_atoms_cancel(c - r) for c, r in zip(closed_local, refs_local)):
        return VerifyResult("exact match", "equal to sympy.diff of the composed loss as rational functions of the function "
                                           "applications, in per-layer symbols z_k")
    # An identity activation lets SymPy distribute z_k into the next layer, so the reference no
    # longer holds z_k as a subexpression: compose both sides back into the parameters.
    composed = [tuple(_compose(e, one_layer) for e in pair) for pair in zip(closed_local, refs_local)]
    if all(_atoms_cancel(c - r) for c, r in composed):
        return VerifyResult("exact match", "equal to sympy.diff of the composed loss as rational functions of the function "
                                           "applications, in the parameters")
    return VerifyResult("unknown", "the closed form and sympy.diff agree to 30 digits at two random rational points, "
                                   "but SymPy could not reduce their difference to 0")
