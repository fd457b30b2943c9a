"""The worst case over every input: the per-layer bound |w|·sup|φ'| and its power over depth.

Backpropagation multiplies the gradient by ``w_l φ'(z_l)`` at each layer of a chain (Nielsen,
*Neural Networks and Deep Learning*, ch. 5, "What's causing the vanishing gradient problem?"), so
``|∂C/∂b_1| ≤ (|w|·sup|φ'|)^(L−1) · |∂C/∂a_L|·sup|φ'|`` for weights of magnitude ``|w|``.  The
per-layer factor ``|w|·sup|φ'|`` classifies the worst case:

* ``< 1``: *vanishing* — every layer shrinks the bound, geometrically in depth;
* ``> 1``: *exploding* — somewhere near the sup of |φ'| each layer can grow the gradient (and if
  ``|w|·inf|φ'| > 1`` every layer does);
* ``= 1``: *neither*; ``unknown`` where no bound on |φ'| is known, ``unbounded`` where |φ'| has no
  finite sup.

Magnitudes that compound over depth are carried by their log10 and never formed
(``0.25^100000`` is printed ``1.002e-60206``, not 0).  :func:`chain_bound` computes the facts,
``symgrad bounds`` prints them.

>>> from symgrad.theory.worst_case import chain_bound
>>> b = chain_bound("sigmoid", 1.0, 10)
>>> b.regime, b.per_layer_factor, b.factor_over_depth
('vanishing', '0.25', '9.537e-07')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from symgrad.errors import InvalidArgument

__all__ = ["REGIMES", "ChainBound", "chain_bound", "format_log10"]

#: The answers of :func:`chain_bound`.
REGIMES = ("vanishing", "exploding", "neither", "unknown", "unbounded")


def format_log10(lg: float) -> str:
    """A positive magnitude given by its log10, printed without ever forming it: ``1.2e+600``.

    ``-inf`` (the magnitude 0) prints ``0``; within float64's comfortable range (|lg| < 300) the
    plain number is printed with 4 significant digits.

    >>> format_log10(600.0791812460476), format_log10(-0.6020599913279624), format_log10(float("-inf"))
    ('1.2e+600', '0.25', '0')
    """
    if lg == -math.inf:
        return "0"
    if -300.0 < lg < 300.0:
        return "%.4g" % 10.0 ** lg  # well inside float64: the plain number
    e = math.floor(lg)
    m = 10.0 ** (lg - e)
    if float("%.4g" % m) >= 10.0:
        m, e = m / 10.0, e + 1
    return "%.4ge%+03d" % (m, e)


def _log10(x: float) -> float:
    return -math.inf if x == 0 else math.log10(x)


@dataclass(frozen=True)
class ChainBound:
    """The worst-case facts for one activation, weight magnitude and depth (:func:`chain_bound`).

    * ``activation``: the :class:`~symgrad.spec.activations.Activation`; ``weight_scale`` (|w|,
      dimensionless, ≥ 0) and ``depth`` (L ≥ 1) as given;
    * ``sup``: sup|φ'| (a SymPy number, or None when unknown), ``sup_exact`` (True: proved
      symbolically; False: certified numerically), ``attained_at`` and ``range`` (SymPy sets or
      None) and ``note`` — all from ``activation.bound``;
    * ``regime``: one of :data:`REGIMES`; ``why``: one sentence saying why;
    * ``log10_per_layer_factor``: log10(|w|·sup|φ'|) and ``log10_factor_over_depth``: L times it
      (None where unknown or unbounded; −inf where the factor is 0);
    * ``per_layer_factor`` and ``factor_over_depth``: the same magnitudes as strings
      (:func:`format_log10`), never overflowing.

    >>> chain_bound("tanh", 2.0, 3).regime
    'exploding'
    """

    activation: object
    weight_scale: float
    depth: int
    sup: object
    sup_exact: bool
    attained_at: object
    range: object
    note: str
    regime: str
    why: str
    log10_per_layer_factor: float | None = None
    log10_factor_over_depth: float | None = None

    @property
    def per_layer_factor(self) -> str | None:
        """|w|·sup|φ'| as a string (None where unknown or unbounded).

        >>> chain_bound("tanh", 0.5, 3).per_layer_factor
        '0.5'
        """
        return None if self.log10_per_layer_factor is None else format_log10(self.log10_per_layer_factor)

    @property
    def factor_over_depth(self) -> str | None:
        """(|w|·sup|φ'|)^L as a string (None where unknown or unbounded).

        >>> chain_bound("tanh", 10.0, 400).factor_over_depth
        '1e+400'
        """
        return None if self.log10_factor_over_depth is None else format_log10(self.log10_factor_over_depth)


def chain_bound(activation, weight_scale: float, depth: int) -> ChainBound:
    """Classify the worst-case gradient of a depth-``depth`` chain with weights of magnitude
    ``weight_scale``: vanishing if |w|·sup|φ'| < 1, exploding if > 1 (module docstring).

    * ``activation``: an :class:`~symgrad.spec.activations.Activation` or a name/expression that
      :func:`symgrad.activation` accepts;
    * ``weight_scale``: |w|, a finite real ≥ 0; ``depth``: an int ≥ 1.

    Raises :class:`~symgrad.InvalidArgument` for a negative, non-finite or non-real
    ``weight_scale``, a ``depth`` that is not a positive int, or an unknown activation.

    >>> b = chain_bound("relu", 1.0, 50)
    >>> b.regime, b.why
    ('neither', 'the per-layer factor bound is exactly 1')
    >>> chain_bound("sigmoid", 4.0, 1000).factor_over_depth
    '1'
    """
    import sympy

    from symgrad.spec.activations import Activation
    from symgrad.spec.activations import activation as _activation

    act = activation if isinstance(activation, Activation) else _activation(activation)
    if isinstance(weight_scale, bool) or not isinstance(weight_scale, (int, float)) or not math.isfinite(weight_scale) or weight_scale < 0:
        raise InvalidArgument("weight_scale=%r must be a finite real |w| >= 0, e.g. weight_scale=1.0" % (weight_scale,))
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise InvalidArgument("depth=%r must be a positive int, e.g. depth=10" % (depth,))
    scale = float(weight_scale)
    b = act.bound
    note = b.note[len("unknown: "):] if b.sup is None and b.note.startswith("unknown: ") else b.note
    common = dict(activation=act, weight_scale=weight_scale, depth=depth, sup=b.sup, sup_exact=b.exact,
                  attained_at=b.attained_at, range=b.range, note=note)
    if b.sup is None:
        return ChainBound(**common, regime="unknown", why="no bound on |phi'| is known (%s)" % note)
    try:
        sup = float(b.sup)
    except (TypeError, ValueError):
        return ChainBound(**common, regime="unknown", why="sup |phi'| = %s is not a real number" % sympy.sstr(b.sup))
    if not math.isfinite(sup):
        return ChainBound(**common, regime="unbounded",
                          why="|phi'| has no finite sup, so no per-layer bound and no bound on the gradient follows")
    # log10 of the per-layer factor |w|·sup|φ'| and of its depth-th power: never the power itself.
    lg = _log10(scale) + _log10(sup) if scale > 0 and sup > 0 else -math.inf
    lg_depth = lg * depth if lg != -math.inf else -math.inf
    inf = None
    if b.range is not None:
        try:
            lo, hi = float(b.range.inf), float(b.range.sup)
            inf = lo if lo > 0 else (-hi if hi < 0 else 0.0)
        except (TypeError, ValueError):
            inf = None
    factor_s = format_log10(lg)
    if lg < 0:
        regime = "vanishing"
        why = "every layer multiplies the gradient bound by at most %s < 1" % factor_s
    elif lg > 0:
        regime = "exploding"
        lg_inf = _log10(scale) + _log10(inf) if inf is not None and inf > 0 and scale > 0 else -math.inf
        if lg_inf > 0:
            why = "every layer multiplies the gradient by at least %s > 1" % format_log10(lg_inf)
        else:
            why = "where |phi'(z)| is near its sup, each layer multiplies the gradient by up to %s > 1" % factor_s
    else:
        regime = "neither"
        why = "the per-layer factor bound is exactly 1"
    return ChainBound(**common, regime=regime, why=why, log10_per_layer_factor=lg, log10_factor_over_depth=lg_depth)
