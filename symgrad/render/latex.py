r"""LaTeX derivations: the chain rule written out, not just the final formula.

For a gradient of a chain or a dense network, :func:`derivation` writes

1. the forward definitions (``z_j = w_j a_{j-1} + b_j``, ``a_j = σ(z_j)``, the cost, φ and φ');
2. the chain rule, link by link;
3. each local derivative (``∂a_j/∂z_j = σ'(z_j)``, ``∂z_{j+1}/∂a_j = w_{j+1}``);
4. the collected closed form, in the factor order of :attr:`symgrad.Gradient.factors`;
5. its product form ``σ'(z_j) Π_{k=j+1}^{L} w_k σ'(z_k) ∂C/∂a_L``;
6. the bound that ``sup|φ'|`` implies (sigmoid: each factor ``|w_k σ'(z_k)| ≤ |w_k|/4``).

Everything is set in ``align*`` environments, with long products broken across lines by an
estimate of their printed width, so that a depth-12 chain fits an A4 page; deeper chains elide
their middle layers with ``\cdots`` unless ``full=True``.  The notation is Nielsen's:
``\sigma'(z_1)``, ``w_2``, ``\frac{\partial C}{\partial b_1}`` for chains and ``\delta^l``,
``\Sigma'(z^l)``, ``(W^{l+1})^T`` for dense networks.

:func:`derivation` returns a fragment (it needs ``amsmath`` and ``amssymb``); :func:`document`
a standalone file whose first line is symgrad's marker, and :func:`compile_pdf` runs
``pdflatex`` on it (Debian: ``apt-get install texlive-latex-base``).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import sympy
from sympy import MatrixSymbol

from symgrad._io import MARKER, write_atomic
from symgrad.symbolic.depth import SymbolicGradient
from symgrad.symbolic.derivation import ActivationJacobian, CostGradient, Gradient
from symgrad.errors import InvalidArgument, LatexError

__all__ = [
    "LatexError",
    "PDFLATEX_PACKAGES",
    "compile_pdf",
    "derivation",
    "document",
    "overfull_boxes",
    "pdflatex_available",
]

#: Debian packages that the generated documents need (amsmath and geometry are in
#: texlive-latex-base, amssymb in its dependency texlive-base); poppler-utils renders PNGs.
PDFLATEX_PACKAGES = ("texlive-latex-base",)
#: Chains whose derivative spans more layers than this elide the middle ones (unless full=True).
DEFAULT_MAX_LAYERS = 12
#: Estimated printed width, in "characters" of 11pt math, that one display line may take.
_LINE_BUDGET = 56.0
#: Overfull boxes wider than this (in pt) fail a strict compile: none at all.
OVERFULL_TOLERANCE_PT = 0.0


# ---------------------------------------------------------------------------------------------
# Width estimate and line breaking
# ---------------------------------------------------------------------------------------------

_NO_WIDTH = {"left", "right", "bigl", "bigr", "Bigl", "Bigr", "biggl", "biggr", "displaystyle", "limits", "!", "nonumber"}
_FUNCS = {"tanh", "ln", "log", "exp", "max", "min", "sin", "cos", "sup", "inf", "diag"}
_WIDE = {"quad": 2.0, "qquad": 4.0, ",": 0.3, ";": 0.5, ":": 0.4, "cdots": 2.5, "ldots": 2.5, "dots": 2.5,
         "prod": 2.0, "sum": 2.0, "le": 2.0, "ge": 2.0, "approx": 2.0, "cdot": 1.2, "times": 2.0, "lVert": 0.6,
         "rVert": 0.6, "vdots": 1.0}


def _group(s: str, i: int) -> tuple[str, int]:
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return "", i
    if s[i] != "{":
        if s[i] == "\\":
            m = re.match(r"\\([A-Za-z]+|.)", s[i:])
            return m.group(0), i + m.end()
        return s[i], i + 1
    depth = 0
    for k in range(i, len(s)):
        if s[k] == "{":
            depth += 1
        elif s[k] == "}":
            depth -= 1
            if depth == 0:
                return s[i + 1:k], k + 1
    return s[i + 1:], len(s)


def _width(s: str) -> float:
    """A rough estimate of the printed width of math ``s``, in widths of an italic letter."""
    w, i, n = 0.0, 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            m = re.match(r"\\([A-Za-z]+|.)", s[i:])
            name = m.group(1)
            i += m.end()
            if name in ("frac", "tfrac", "dfrac"):
                a, i = _group(s, i)
                b, i = _group(s, i)
                w += max(_width(a), _width(b)) + 0.4
            elif name in ("operatorname", "text", "mathrm", "texttt"):
                a, i = _group(s, i)
                w += 0.9 * len(a)
            elif name == "sqrt":
                a, i = _group(s, i)
                w += _width(a) + 1.0
            elif name in _FUNCS:
                w += 0.85 * len(name) + 0.3
            elif name in _NO_WIDTH:
                continue
            else:
                w += _WIDE.get(name, 1.0)
        elif c in "_^":
            a, i = _group(s, i + 1)
            w += 0.7 * _width(a)
        elif c in "{} &\n":
            i += 1
        elif c in "+-=<>":
            w += 2.0
            i += 1
        elif c in ",.;":
            w += 0.6
            i += 1
        else:
            w += 1.0
            i += 1
    return w


def _break(items: list[str], budget: float, first_budget: float | None = None) -> list[list[str]]:
    """Split ``items`` greedily into lines whose estimated widths stay within ``budget``."""
    lines: list[list[str]] = [[]]
    room = budget if first_budget is None else first_budget
    used = 0.0
    for item in items:
        w = _width(item) + 0.5
        if lines[-1] and used + w > room:
            lines.append([])
            used, room = 0.0, budget
        lines[-1].append(item)
        used += w
    return lines


def _product_rows(lhs: str, items: list[str], *, rel: str = "=", end: str = ".", first: int = 1) -> list[str]:
    """Align rows for ``lhs rel item item …``, continued on further lines with a ``\\cdot``.

    Lines break only between units: the first ``first`` items, then pairs (one layer each), so
    that ``w_k`` stays with its ``σ'(z_k)``."""
    units = [r"\,".join(items[:first])] if first else []
    rest = items[first:]
    while rest:
        if rest[0] == r"\cdots" or len(rest) == 1:
            units.append(rest[0])
            rest = rest[1:]
        else:
            take = 1 if rest[1] == r"\cdots" else 2
            units.append(r"\,".join(rest[:take]))
            rest = rest[take:]
    lines = _break(units, _LINE_BUDGET - 4, _LINE_BUDGET - _width(lhs) - 2)
    rows = []
    for n, line in enumerate(lines):
        body = r"\,".join(line)
        if n == 0:
            rows.append(r"%s &%s %s" % (lhs, rel, body))
        else:
            rows.append(r"&\qquad \cdot %s" % body)
    rows[-1] += end
    return rows


def _align(rows: list[str]) -> str:
    return "\\begin{align*}\n" + " \\\\[0.6ex]\n".join(rows) + "\n\\end{align*}\n"


def _elide(items: list, head: int, tail: int, gap) -> list:
    if len(items) <= head + tail + 1:
        return list(items)
    return list(items[:head]) + [gap] + list(items[len(items) - tail:])


_GREEK = {
    "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "varepsilon", "ζ": "zeta", "η": "eta", "θ": "theta",
    "ι": "iota", "κ": "kappa", "λ": "lambda", "μ": "mu", "ν": "nu", "ξ": "xi", "π": "pi", "ρ": "rho", "σ": "sigma",
    "ς": "varsigma", "τ": "tau", "υ": "upsilon", "φ": "varphi", "ϕ": "phi", "χ": "chi", "ψ": "psi", "ω": "omega",
    "Γ": "Gamma", "Δ": "Delta", "Θ": "Theta", "Λ": "Lambda", "Ξ": "Xi", "Π": "Pi", "Σ": "Sigma", "Υ": "Upsilon",
    "Φ": "Phi", "Ψ": "Psi", "Ω": "Omega",
}
_MATH = {"≥": r"\ge", "≤": r"\le", "≠": r"\neq", "±": r"\pm", "×": r"\times", "·": r"\cdot", "∞": r"\infty",
         "→": r"\to", "←": r"\leftarrow", "∂": r"\partial", "∑": r"\sum", "∏": r"\prod", "√": r"\surd", "≈": r"\approx",
         "∈": r"\in", "∇": r"\nabla", "°": r"^{\circ}", "−": "-", "′": "'"}
_PUNCT = {"–": "--", "—": "---", "‘": "`", "’": "'", "“": "``", "”": "''", "…": r"\ldots{}", "\u00a0": "~"}
#: Longest run of text without a break opportunity (a long name must not run off the page).
_RUN = 16


def _text(s: str) -> str:
    """Escape plain text for LaTeX: user-supplied names and titles such as ``tanh & co``.

    ASCII specials are escaped, Greek letters and common math symbols are set in math mode
    (``α`` → ``$\\alpha$``), other non-ASCII letters are folded to ASCII where Unicode gives a
    decomposition (``é`` → ``e``, ``１`` → ``1``) and printed as ``?`` otherwise; control characters
    are dropped.  Long runs without spaces get break opportunities, so no line runs off the page.
    """
    import unicodedata

    units = []
    for ch in s:
        if ch in "\t\n\r":
            units.append(" ")
        elif ord(ch) < 128:
            if not ch.isprintable():
                continue
            if ch == "\\":
                units.append(r"\textbackslash{}")
            elif ch in "&%$#_{}":
                units.append("\\" + ch)
            elif ch in "^~":
                units.append(r"\%s{}" % {"^": "textasciicircum", "~": "textasciitilde"}[ch])
            elif ch in "<>|":
                units.append(r"\%s{}" % {"<": "textless", ">": "textgreater", "|": "textbar"}[ch])
            else:
                units.append(ch)
        elif ch in _GREEK:
            units.append(r"\ensuremath{\%s}" % _GREEK[ch])
        elif ch in _MATH:
            units.append(r"\ensuremath{%s}" % _MATH[ch])
        elif ch in _PUNCT:
            units.append(_PUNCT[ch])
        elif unicodedata.category(ch).startswith("C"):
            continue
        else:
            folded = "".join(c for c in unicodedata.normalize("NFKD", ch) if ord(c) < 128 and c.isprintable())
            units.append(_text(folded) if folded else "?")
    out, run = [], 0
    for u in units:
        if u == " ":
            run = 0
        elif run >= _RUN:
            out.append(r"\allowbreak{}")
            run = 0
        run += u != " "
        out.append(u)
    return "".join(out)


class _LazyTex:
    """``[_sym(f) for f in factors]``, printed on access: an elided depth-100,000 chain prints a
    dozen factors, not 200,000."""

    def __init__(self, factors):
        self._factors = factors
        self._cache: dict[int, str] = {}

    def __len__(self):
        return len(self._factors)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        if i not in self._cache:
            self._cache[i] = _sym(self._factors[i])
        return self._cache[i]


def _sym(e) -> str:
    s = sympy.latex(e)
    return r"\left(%s\right)" % s if isinstance(e, (sympy.Add, sympy.MatAdd)) else s


# ---------------------------------------------------------------------------------------------
# Activations: φ and φ' in readable form
# ---------------------------------------------------------------------------------------------


def _activation_rows(act) -> list[str]:
    """Align rows defining φ(z) and φ'(z) for one activation."""
    p = act.latex_name
    if act.latex_formula is not None and act.latex_derivative is not None:  # the literature's form, from the activation
        return [r"%s(z) &= %s," % (p, act.latex_formula), r"%s'(z) &= %s." % (p, act.latex_derivative)]
    rows = [r"%s(z) &= %s," % (p, sympy.latex(act.expr))]
    rows += _sum_rows(r"%s'(z)" % p, act.derivative)
    return rows


def _sum_rows(lhs: str, expr) -> list[str]:
    """``lhs = expr`` with a long sum broken after its terms."""
    full = sympy.latex(expr)
    if not isinstance(expr, sympy.Add) or _width(full) + _width(lhs) < _LINE_BUDGET:
        return [r"%s &= %s." % (lhs, full)]
    terms = [sympy.latex(t) for t in sympy.Add.make_args(expr)]
    lines = _break(terms, _LINE_BUDGET - 6, _LINE_BUDGET - _width(lhs) - 2)
    rows = []
    for n, line in enumerate(lines):
        body = " + ".join(line).replace("+ -", "- ")
        rows.append((r"%s &= %s" % (lhs, body)) if n == 0 else (r"&\qquad + %s" % body).replace("+ -", "- "))
    rows[-1] += "."
    return rows


def _bound_facts(act) -> tuple[str | None, bool]:
    """(LaTeX of sup|φ'| or None, whether sup|φ'| ≥ 1)."""
    b = act.bound
    if b.sup is None:
        return None, False
    sup = sympy.sympify(b.sup)
    # A certified numeric sup is rounded *up*, so that every bound written with it still holds.
    tex = sympy.latex(sup) if b.exact else "%.5f" % (math.ceil(float(sup) * 1e5) / 1e5)
    return tex, bool(sup >= 1)


def _scaled(sup_tex: str, act, what: str) -> str:
    """``s·what`` written readably: ``\\frac{|w_k|}{4}`` for s = 1/4, ``|w_k|`` for s = 1."""
    sup = sympy.sympify(act.bound.sup)
    if act.bound.exact and sup == 1:
        return what
    if not act.bound.exact:
        return r"%s\,%s" % (sup_tex, what)
    if act.bound.exact and sup.is_Rational and sup.p == 1:
        return r"\frac{%s}{%s}" % (what, sup.q)
    return r"%s\,%s" % (sup_tex, what)


# ---------------------------------------------------------------------------------------------
# Chains
# ---------------------------------------------------------------------------------------------


def _d(num: str, den: str) -> str:
    return r"\frac{\partial %s}{\partial %s}" % (num, den)


def _chain_derivation(g: Gradient, full: bool, max_layers: int) -> str:
    net = g.network
    L = net.depth
    acts = net.activations
    uniform = all(a == acts[0] for a in acts)
    act = acts[0]
    phi = act.latex_name if uniform else r"\varphi_{k}"
    cost = net.loss
    cancels = cost.cancels_with(acts[-1])
    m = re.fullmatch(r"([wb])(\d+)|a0", g.wrt)
    kind = m.group(1) if m.group(1) else "a"
    j = int(m.group(2)) if m.group(2) else 1
    wrt = {"a": "a_{0}", "w": "w_{%d}" % j, "b": "b_{%d}" % j}[kind]
    lhs = _d("C", wrt)
    out = []

    # 1. Forward pass.
    out.append(r"\paragraph{Forward pass.} A chain of $L = %d$ single-neuron layers with input $a_{0}$ and target $y$:" % L)
    act_def = r"a_{k} &= %s(z_{k})" % (act.latex_name if uniform else r"\varphi_{k}")
    cost_tex = cost.latex_chain % {"L": L} if cost.latex_chain else sympy.latex(cost.cost(sympy.Symbol("a_%d" % L), sympy.Symbol("y")))
    out.append(_align([r"z_{k} &= w_{k}\, a_{k-1} + b_{k}, & %s, &\quad k &= 1, \dots, %d," % (act_def, L),
                       r"C &= %s," % cost_tex]))
    if uniform:
        out.append("with the activation")
        out.append(_align(_activation_rows(act)))
    else:
        out.append(r"with per-layer activations $\varphi_{k}$: %s." % ", ".join(r"$\varphi_{%d} = %s$" % (k, a.latex_name) for k, a in enumerate(acts, 1)))

    # 2. Chain rule.  links[i] is the symbolic link whose value is g.factors[i].
    links = []
    if kind == "w":
        links.append((_d("z_{%d}" % j, "w_{%d}" % j), None))
    elif kind == "a":
        links.append((_d("z_{1}", "a_{0}"), None))
    for k in range(j, L):
        links.append((_d("a_{%d}" % k, "z_{%d}" % k), k))
        links.append((_d("z_{%d}" % (k + 1), "a_{%d}" % k), k))
    if cancels:
        links.append((_d("C", "z_{%d}" % L), L))
    else:
        links.append((_d("a_{%d}" % L, "z_{%d}" % L), L))
        links.append((_d("C", "a_{%d}" % L), L))
    factors = _LazyTex(g.factors)  # only the factors shown are printed: deep chains elide the rest
    assert len(factors) == len(links), (len(factors), len(links))
    prefix = 1 if kind in "wa" else 0
    chain_links = ([_d("z_{%d}" % j, "b_{%d}" % j)] if kind == "b" else []) + [l for l, _ in links]
    layers = L - j + 1
    elide = not full and layers > max_layers
    head, tail = (1 if kind == "b" else prefix) + 4, 4
    shown_links = _elide(chain_links, head, tail, r"\cdots") if elide else chain_links
    shown_factors = _elide(factors, prefix + 4, tail, r"\cdots") if elide else factors
    out.append(r"\paragraph{Chain rule.} The path from $%s$ to $C$ passes through every later layer" % wrt)
    out[-1] += (r" (layers %d to %d are elided below; ask for the full derivation to see them):" % (j + 2, L - 2)) if elide else ":"
    out.append(_align(_product_rows(lhs, shown_links, first=2)))

    # 3. Local derivatives.
    out.append(r"\paragraph{Local derivatives.} Each link is a derivative of one forward definition:")
    rows = []
    if kind == "b":
        rows.append(r"%s &= 1" % _d("z_{%d}" % j, "b_{%d}" % j))
    elif kind == "w":
        rows.append(r"%s &= %s" % (links[0][0], factors[0]))
    else:
        rows.append(r"%s &= %s" % (links[0][0], factors[0]))
    gap = r"&\;\;\vdots & &\;\;\vdots"
    starts = list(range(prefix, len(links) - (1 if cancels else 2), 2))
    if elide:
        starts = _elide(starts, 2, 1, gap)
    rows += [i if i == gap else r"%s &= %s, & %s &= %s" % (links[i][0], factors[i], links[i + 1][0], factors[i + 1]) for i in starts]
    if cancels:
        aL = "a_{%d}" % L
        rows.append(r"%s &= %s(z_{%d}) = %s(1 - %s), & %s &= \frac{%s - y}{%s(1 - %s)}" % (
            _d(aL, "z_{%d}" % L), acts[-1].latex_name + "'", L, aL, aL, _d("C", aL), aL, aL, aL))
        rows.append(r"%s &= %s\,%s = %s" % (_d("C", "z_{%d}" % L), _d(aL, "z_{%d}" % L), _d("C", aL), factors[-1]))
    else:
        rows.append(r"%s &= %s, & %s &= %s" % (links[-2][0], factors[-2], links[-1][0], factors[-1]))
    rows[-1] += "."
    out.append(_align([r if r.endswith(".") or "vdots" in r else r + "," for r in rows]))

    # 4. Collected closed form.
    out.append(r"\paragraph{Closed form.} Substituting the local derivatives into the chain rule:")
    out.append(_align(_product_rows(lhs, shown_factors, first=prefix + 1)))

    # 5. Product form.
    n_pairs = L - j - (1 if cancels else 0)
    head_tex = {"b": "", "w": r"a_{%d}\," % (j - 1) if j > 1 else r"a_{0}\,", "a": r"w_{1}\,"}[kind]
    first = r"%s'(z_{%d})" % (phi.replace("_{k}", "_{%d}" % j), j)
    last = (r"w_{%d}\,(a_{%d} - y)" % (L, L)) if cancels else _sym(g.factors[-1])
    top = L - 1 if cancels else L
    prod = r"\prod_{k=%d}^{%d} w_{k}\, %s'(z_{k})" % (j + 1, top, phi) if n_pairs > 0 else ""
    gen_top = "L-1" if cancels else "L"
    gen_head = {"b": "", "w": r"a_{j-1}\,", "a": r"w_{1}\,"}[kind]
    gen_wrt = {"b": "b_{j}", "w": "w_{j}", "a": "a_{0}"}[kind]
    gen_j = "j" if kind != "a" else "1"
    gen_lo = "j+1" if kind != "a" else "2"
    gen_last = r"w_{L}\,(a_{L} - y)" if cancels else _d("C", "a_{L}")
    out.append(r"\paragraph{Product form.} In general, for a chain of depth $L$,")
    out.append(_align([r"%s &= %s%s'(z_{%s}) \prod_{k=%s}^{%s} w_{k}\, %s'(z_{k}) \; %s," % (
        _d("C", gen_wrt), gen_head, phi.replace("_{k}", "_{%s}" % gen_j), gen_j, gen_lo, gen_top, phi, gen_last),
        r"%s &= %s%s \; %s\; %s." % (lhs, head_tex, first, prod, last)]))

    # 6. Bound.
    out.append(_chain_bound(g, acts, uniform, kind, j, L, n_pairs, cancels, lhs, head_tex, last))
    return "\n".join(out)


def _chain_bound(g, acts, uniform, kind, j, L, n_pairs, cancels, lhs, head_tex, last) -> str:
    if not uniform:
        sups = [a.bound.sup for a in acts]
        if any(s is None for s in sups):
            return r"\paragraph{Bound.} $\sup|\varphi_{k}'|$ is not known for every layer, so no bound on the gradient follows."
        return (r"\paragraph{Bound.} With $s = \max_{k} \sup|\varphi_{k}'| = %s$, each factor obeys "
                r"$|w_{k}\,\varphi_{k}'(z_{k})| \le s\,|w_{k}|$." % sympy.latex(sympy.Max(*sups)))
    act = acts[0]
    p = act.latex_name
    sup_tex, big = _bound_facts(act)
    if sup_tex is None:
        return (r"\paragraph{Bound.} symgrad could not determine $\sup_{z} |%s'(z)|$ for this activation, "
                r"so no bound on the gradient follows from the derivative alone." % p)
    abs_head = {"b": "", "w": r"|a_{%d}|\," % (j - 1), "a": r"|w_{1}|\,"}[kind]
    abs_last = (r"|w_{%d}|\,|a_{%d} - y|" % (L, L)) if cancels else r"\left|%s\right|" % sympy.latex(g.factors[-1])
    lead = "" if act.bound.exact and act.bound.sup == 1 else sup_tex + r"\,"
    rel = r"\le" if act.bound.exact else "<"
    text = [r"\paragraph{Bound.} Since $\sup_{z} |%s'(z)| %s %s$, each factor obeys $|w_{k}\, %s'(z_{k})| \le %s$, so" % (
        p, "=" if act.bound.exact else "<", sup_tex, p, _scaled(sup_tex, act, "|w_{k}|"))]
    rows = []
    if n_pairs > 0:
        top = L - 1 if cancels else L
        rows.append(r"\left|%s\right| &\le %s%s\prod_{k=%d}^{%d} %s \; %s" % (
            lhs, abs_head, lead, j + 1, top, _scaled(sup_tex, act, "|w_{k}|"), abs_last))
        power = r"\Bigl(%s\Bigr)%s" % (_scaled(sup_tex, act, r"\max_{k} |w_{k}|"), "^{%d}" % n_pairs if n_pairs > 1 else "")
        rows.append(r"&\le %s%s%s\; %s." % (abs_head, lead, power, abs_last))
    else:
        rows.append(r"\left|%s\right| &\le %s%s%s." % (lhs, abs_head, lead, abs_last))
    text.append(_align(rows))
    if n_pairs == 0:
        text.append("No later layer multiplies this gradient, so depth does not shrink it.")
    elif not big:
        text.append(r"The gradient shrinks at least as fast as $\bigl(%s\bigr)^{%d}$, one factor per later layer: "
                    r"it vanishes with depth whenever $\max_{k}|w_{k}| < %s$." % (
                        _scaled(sup_tex, act, r"\max_{k}|w_{k}|"), n_pairs, sympy.latex(1 / sympy.sympify(act.bound.sup)) if act.bound.exact else r"1/%s" % sup_tex))
    else:
        text.append(r"Because $\sup|%s'| = %s \ge 1$, no vanishing follows from this bound: it decays with depth only "
                    r"when $\max_{k}|w_{k}| < %s$, and whether the gradient vanishes otherwise depends on where the $z_{k}$ fall." % (
                        p, sup_tex, "1" if act.bound.exact and act.bound.sup == 1 else r"1/%s" % sup_tex))
    return "\n".join(text)


# ---------------------------------------------------------------------------------------------
# Dense networks
# ---------------------------------------------------------------------------------------------


def _dense_tex(f) -> str:
    if isinstance(f, ActivationJacobian):
        return r"\Sigma'(z^{%s})" % f.args[0].name[1:]
    if isinstance(f, sympy.Transpose) and isinstance(f.arg, MatrixSymbol):
        base, layer = f.arg.name[0], f.arg.name[1:]
        return r"(%s^{%s})^{T}" % (base, layer)
    if isinstance(f, MatrixSymbol):
        return "%s^{%s}" % (f.name[0], f.name[1:]) if f.name != "y" else "y"
    if isinstance(f, CostGradient):
        return r"\nabla_{a} C"
    if isinstance(f, sympy.MatAdd):
        terms = sorted(f.args, key=lambda t: isinstance(t, sympy.MatMul))
        s = " + ".join(_dense_tex(t) for t in terms)
        return "(%s)" % s.replace("+ -", "- ")
    if isinstance(f, sympy.MatMul):
        coeff, mats = f.as_coeff_matrices()
        s = " ".join(_dense_tex(t) for t in mats)
        return ("-" + s) if coeff == -1 else (sympy.latex(coeff) + " " + s)
    return sympy.latex(f)  # pragma: no cover - internal invariant


def _dense_derivation(g: Gradient, full: bool, max_layers: int) -> str:
    net = g.network
    L = net.depth
    acts = net.activations
    vector_out = acts[-1].output_only  # softmax: a^L couples the output units (not elementwise)
    elementwise = acts[:-1] if vector_out else acts
    uniform = bool(elementwise) and all(a == elementwise[0] for a in elementwise)
    act = elementwise[0] if elementwise else acts[-1]
    cost = net.loss
    cancels = cost.cancels_with(acts[-1])
    m = re.fullmatch(r"(W|b|a)(\d+)(?:\[(\d+)(?:,(\d+))?\])?", g.wrt)
    kind, l = m.group(1), int(m.group(2))
    entry = g._entry
    base = {"W": "W^{%d}" % l, "b": "b^{%d}" % l, "a": "a^{0}"}[kind]
    if entry is not None:
        idx = "%d" % entry[0] if kind != "W" else "%d,%d" % entry
        wrt = "%s_{%s}" % (base.replace("^", "^", 1), idx)
    else:
        wrt = base
    lhs = _d("C", wrt)
    widths = ", ".join(str(n) for n in net.widths)
    out = [r"\paragraph{Forward pass.} A dense network with widths $(n_{0}, \dots, n_{%d}) = (%s)$; "
           r"$W^{l} \in \mathbb{R}^{n_{l} \times n_{l-1}}$ and $b^{l} \in \mathbb{R}^{n_{l}}$:" % (L, widths)]
    phi = act.latex_name if uniform else r"\varphi_{l}"
    cost_tex = cost.latex_dense % {"L": L} if cost.latex_dense else r"C(a^{%d}, y)" % L
    if vector_out:
        # Nielsen ch. 3 eqs. 78-80: the softmax output and the log-likelihood cost
        out_act = acts[-1]
        fwd = [r"z^{l} &= W^{l} a^{l-1} + b^{l}, & a^{l} &= %s(z^{l}) \text{ (elementwise)}, &\quad l &= 1, \dots, %d," % (phi, L - 1)] if L > 1 else []
        fwd += [r"z^{%d} &= W^{%d} a^{%d} + b^{%d}, & a^{%d} &= %s(z^{%d}), &\quad a^{%d}_{i} &= %s," % (
                    L, L, L - 1, L, L, out_act.latex_name, L, L, out_act.latex_formula.replace("z_{", "z^{%d}_{" % L)),
                r"C &= %s," % cost_tex]
        out.append(_align(fwd))
    else:
        out.append(_align([r"z^{l} &= W^{l} a^{l-1} + b^{l}, & a^{l} &= %s(z^{l}) \text{ (elementwise)}, &\quad l &= 1, \dots, %d," % (phi, L),
                           r"C &= %s," % cost_tex]))
    if uniform:
        out.append("with the activation")
        out.append(_align(_activation_rows(act)))
    if vector_out:
        hidden = (r"the diagonal Jacobian $\Sigma'(z^{l}) = \partial a^{l} / \partial z^{l} = \operatorname{diag}\bigl(%s'(z^{l}_{1}), \dots, "
                  r"%s'(z^{l}_{n_{l}})\bigr)$ of the hidden layers, " % (phi, phi)) if L > 1 else ""
        out.append(r"\paragraph{Backpropagation.} With the error $\delta^{l} = \partial C / \partial z^{l}$, %s"
                   r"the %s Jacobian $\Sigma'(z^{%d}) = \partial a^{%d} / \partial z^{%d} = %s$ (symmetric: $\partial a^{%d}_{i} / \partial z^{%d}_{j} "
                   r"= a^{%d}_{i}(\delta_{ij} - a^{%d}_{j})$) and $\nabla_{a} C = (-y_{i} / a^{%d}_{i})_{i}$, "
                   r"the chain rule through $\partial z^{l+1} / \partial a^{l} = W^{l+1}$ gives, for a target with $%s$," % (
                       hidden, _text(acts[-1].name), L, L, L, acts[-1].latex_derivative.replace("(a)", "(a^{%d})" % L).replace(
                           r"a\,a^{\mathsf{T}}", r"a^{%d} (a^{%d})^{\mathsf{T}}" % (L, L)), L, L, L, L, L, r"\sum_{i} y_{i} = 1"))
    else:
        out.append(r"\paragraph{Backpropagation.} With the error $\delta^{l} = \partial C / \partial z^{l}$ and the diagonal Jacobian "
                   r"$\Sigma'(z^{l}) = \partial a^{l} / \partial z^{l} = \operatorname{diag}\bigl(%s'(z^{l}_{1}), \dots, %s'(z^{l}_{n_{l}})\bigr)$, "
                   r"the chain rule through $\partial z^{l+1} / \partial a^{l} = W^{l+1}$ gives" % (phi, phi))
    grad_c = r"\nabla_{a} C = a^{%d} - y" % L if cost.dcost_is_residual or cancels else \
        r"\nabla_{a} C = \Bigl(\frac{a^{%d}_{i} - y_{i}}{a^{%d}_{i}(1 - a^{%d}_{i})}\Bigr)_{i}" % (L, L, L)
    rows = []
    if cancels and vector_out:
        rows.append(r"\delta^{%d} &= \Sigma'(z^{%d})^{T}\, \nabla_{a} C = -y + a^{%d} \textstyle\sum_{i} y_{i} = a^{%d} - y, "
                    r"&&\text{since } \textstyle\sum_{i} y_{i} = 1" % (L, L, L, L))
    elif cancels:
        rows.append(r"\delta^{%d} &= \Sigma'(z^{%d})\, \nabla_{a} C = a^{%d} - y, &&\text{since } \sigma'(z^{%d}_{i}) = a^{%d}_{i}(1 - a^{%d}_{i})" % (L, L, L, L, L, L))
    else:
        rows.append(r"\delta^{%d} &= \Sigma'(z^{%d})\, \nabla_{a} C, && %s" % (L, L, grad_c))
    rows.append(r"\delta^{l} &= \Sigma'(z^{l})\, (W^{l+1})^{T} \delta^{l+1}, && l = %d, \dots, 1" % (L - 1) if L > 1 else r"\delta^{1} &= \Sigma'(z^{1})\,\nabla_{a} C")
    rows.append(r"\frac{\partial C}{\partial b^{l}} &= \delta^{l}, & \frac{\partial C}{\partial W^{l}} &= \delta^{l} (a^{l-1})^{T}, \quad \frac{\partial C}{\partial a^{0}} = (W^{1})^{T} \delta^{1}.")
    out.append(_align([r if r.endswith(".") else r + "," for r in rows]))

    factors = [_dense_tex(f) for f in g.factors]
    layers = L - l + 1
    if not full and layers > max_layers:
        factors = _elide(factors, 4 + (1 if kind == "a" else 0), 4, r"\cdots")
    out.append(r"\paragraph{Closed form.} Unrolling the recursion:")
    if entry is not None:
        body = _product_rows(r"%s" % lhs, [r"\Bigl[" + factors[0]] + factors[1:-1] + [factors[-1] + r"\Bigr]_{%s}" % (
            "%d" % entry[0] if kind != "W" else "%d,%d" % entry)])
    else:
        body = _product_rows(lhs, factors)
    out.append(_align(body))

    out.append(r"\paragraph{Product form.} As an ordered product ($k$ increasing from left to right):")
    last = r"(a^{%d} - y)" % L if cancels else r"\Sigma'(z^{%d})\, \nabla_{a} C" % L
    top = L - 1
    prod = r"\Biggl[\prod_{k=%s}^{%s} \Sigma'(z^{k})\, (W^{k+1})^{T}\Biggr] " % ("l", "L-1")
    rows = [r"\delta^{l} &= %s%s," % (prod, r"\delta^{L}")]
    if kind != "a":
        if l <= top:
            rows.append(r"\delta^{%d} &= \Biggl[\prod_{k=%d}^{%d} \Sigma'(z^{k})\, (W^{k+1})^{T}\Biggr] %s." % (l, l, top, last))
        else:
            rows.append(r"\delta^{%d} &= %s." % (l, last))
    else:
        rows[-1] = rows[-1][:-1] + "."
    out.append(_align(rows))

    sup_tex, big = _bound_facts(act) if uniform else (None, False)
    if vector_out and L == l and kind != "a":
        out.append(r"\paragraph{Bound.} $\lVert \delta^{%d} \rVert = \lVert a^{%d} - y \rVert \le \sqrt{2}$, since "
                   r"$\lVert a - y \rVert^{2} \le \lVert a \rVert^{2} + \lVert y \rVert^{2} \le 2$ for probability vectors $a, y$." % (L, L))
    elif sup_tex is None:
        out.append(r"\paragraph{Bound.} No bound on $\sup|\varphi'|$ is known for every layer, so no bound on the gradient follows.")
    else:
        n = L - l
        lead = "" if act.bound.exact and act.bound.sup == 1 else sup_tex + r"\,"
        out.append(r"\paragraph{Bound.} In the spectral norm, $\lVert \Sigma'(z^{k}) \rVert_{2} = \max_{i} |%s'(z^{k}_{i})| %s %s$, so" % (
            act.latex_name, r"\le" if act.bound.exact else "<", sup_tex))
        scaled = _scaled(sup_tex, act, r"\max_{k} \lVert W^{k} \rVert_{2}")
        if cancels:
            pairs = max(n - 1, 0)
            end = (r"\lVert W^{%d} \rVert_{2}\, \lVert a^{%d} - y \rVert" % (L, L)) if n > 0 else r"\lVert a^{%d} - y \rVert" % L
            lead = lead if n > 0 else ""
        else:
            pairs = n
            end = r"\lVert \nabla_{a} C \rVert"
        power = "" if pairs == 0 else r"\Bigl(%s\Bigr)%s\, " % (scaled, "^{%d}" % pairs if pairs > 1 else "")
        rows = [r"\lVert \delta^{%d} \rVert &\le %s%s%s" % (l, lead, power, end)]
        if kind == "W":
            rows.append(r"\Bigl\lVert %s \Bigr\rVert &\le \lVert \delta^{%d} \rVert\, \lVert a^{%d} \rVert" % (_d("C", "W^{%d}" % l), l, l - 1))
        elif kind == "a":
            rows.append(r"\Bigl\lVert %s \Bigr\rVert &\le \lVert W^{1} \rVert_{2}\, \lVert \delta^{1} \rVert" % _d("C", "a^{0}"))
        out.append(_align([r + "," for r in rows[:-1]] + [rows[-1] + "."]))
        if pairs > 0 and not big:
            out.append(r"It shrinks at least geometrically with the number of later layers whenever $\max_{k}\lVert W^{k}\rVert_{2} < %s$." % (
                sympy.latex(1 / sympy.sympify(act.bound.sup)) if act.bound.exact else r"1/%s" % sup_tex))
        elif pairs > 0:
            out.append(r"Because $\sup|%s'| %s %s$ is not below 1, no vanishing follows from this bound unless $\max_{k}\lVert W^{k}\rVert_{2} < %s$." % (
                act.latex_name, "=" if act.bound.exact else r"\approx", sup_tex, "1" if act.bound.exact and act.bound.sup == 1 else r"1/%s" % sup_tex))
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Symbolic depth
# ---------------------------------------------------------------------------------------------


def _ordered_sum(f) -> str:
    """``a_L - y`` rather than SymPy's ``- y + a_L``: positive terms first."""
    terms = sorted(sympy.Add.make_args(f), key=lambda t: t.could_extract_minus_sign())
    s = " + ".join(sympy.latex(t) for t in terms)
    return s.replace("+ -", "- ")


def _symbolic_derivation(g: SymbolicGradient) -> str:
    sc = g.chain
    act, cost = sc.activation, sc.loss
    p = act.latex_name
    L = sympy.latex(sc.L)
    j = sympy.latex(g.layer)
    wrt = "%s_{%s}" % (g.kind, j)
    lhs = _d("C", wrt)
    cancels = cost.cancels_with(act)
    out = [r"\paragraph{Forward pass.} A chain of symbolic depth $%s$:" % L,
           _align([r"z_{k} &= w_{k}\, a_{k-1} + b_{k}, & a_{k} &= %s(z_{k}), &\quad k &= 1, \dots, %s," % (p, L),
                   r"C &= C(a_{%s}, y)," % L]),
           "with the activation", _align(_activation_rows(act))]
    head = r"\frac{\partial z_{%s}}{\partial %s}\," % (j, wrt)
    out.append(r"\paragraph{Chain rule and local derivatives.}")
    out.append(_align([
        r"%s &= %s %s %s \cdots %s %s," % (lhs, head, _d("a_{%s}" % j, "z_{%s}" % j), _d("z_{%s+1}" % j, "a_{%s}" % j),
                                           _d("a_{%s}" % L, "z_{%s}" % L), _d("C", "a_{%s}" % L)),
        r"%s &= %s," % (_d("z_{%s}" % j, wrt), "1" if g.kind == "b" else "a_{%s - 1}" % j),
        r"%s &= %s'(z_{k}), & %s &= w_{k+1}." % (_d("a_{k}", "z_{k}"), p, _d("z_{k+1}", "a_{k}"))]))
    out.append(r"\paragraph{Closed form.}")
    parts = []
    for f in g.factors:
        if isinstance(f, sympy.Product):
            (k, lo, hi), = f.limits
            # Below a cancelling output (cross-entropy with σ) the product pairs φ'(z_k) with w_{k+1}.
            body = r"%s'(z_{k})\, w_{k+1}" % p if cancels else r"w_{k}\, %s'(z_{k})" % p
            parts.append(r"\prod_{k=%s}^{%s} %s" % (sympy.latex(lo), sympy.latex(hi), body))
        elif isinstance(f, sympy.Add):
            parts.append(r"\left(%s\right)" % _ordered_sum(f))
        else:
            parts.append(sympy.latex(f))
    closed = re.sub(r"\{([A-Za-z])\}_", r"\1_", r"\;".join(parts))
    out.append(_align([r"%s &= %s." % (lhs, re.sub(" +", " ", closed))]))
    sup_tex, big = _bound_facts(act)
    if sup_tex is not None:
        if cancels:
            out.append(r"\paragraph{Bound.} Each factor obeys $|%s'(z_{k})\, w_{k+1}| \le %s$, so the product over $k = %s, \dots, %s - 1$ "
                       r"is at most $\bigl(%s\bigr)^{%s - %s}$%s." % (
                           p, _scaled(sup_tex, act, "|w_{k+1}|"), j, L,
                           _scaled(sup_tex, act, r"\max_{k}|w_{k}|"), L, j,
                           "" if big else ": it vanishes with depth when the weights are small"))
        else:
            out.append(r"\paragraph{Bound.} Each factor obeys $|w_{k}\, %s'(z_{k})| \le %s$, so the product over $k = %s+1, \dots, %s$ "
                       r"is at most $\bigl(%s\bigr)^{%s - %s}$%s." % (
                           p, _scaled(sup_tex, act, "|w_{k}|"), j, L,
                           _scaled(sup_tex, act, r"\max_{k}|w_{k}|"), L, j,
                           "" if big else ": it vanishes with depth when the weights are small"))
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Residual networks: a_k = a_{k−1} + α_k φ(z_k)
# ---------------------------------------------------------------------------------------------


def _alpha_tex(alpha) -> str:
    return "" if alpha == 1 else sympy.latex(alpha) + r"\,"


def _residual_layers_tex(net, dense: bool) -> str:
    """The forward definition of each kind of layer, and which layers are residual with which α."""
    res = net.residual
    sup = "^{k}" if dense else "_{k}"
    sub = "^{k-1}" if dense else "_{k-1}"
    acts = net.activations
    uniform_act = all(a == acts[0] for a in acts)
    phi = acts[0].latex_name if uniform_act else r"\varphi_{k}"
    resid = [k for k, r in enumerate(res, start=1) if r is not None]
    if len(resid) == len(res) and all(r == res[0] for r in res):
        return r"a%s &= a%s + %s%s(z%s), &\quad k &= 1, \dots, %d" % (sup, sub, _alpha_tex(res[0]), phi, sup, net.depth), ""
    values = ", ".join(r"$\alpha_{%d} = %s$" % (k, sympy.latex(res[k - 1])) for k in resid)
    text = (r"Layers %s are residual, with %s; the others are plain, $a%s = %s(z%s)$." % (
        ", ".join(str(k) for k in resid), values, sup, phi, sup))
    return r"a%s &= a%s + \alpha_{k}\, %s(z%s) \text{ (residual)}, &\quad k &= 1, \dots, %d" % (sup, sub, phi, sup, net.depth), text


def _unit_rows(lhs: str, units: list[str]) -> list[str]:
    """Align rows for ``lhs = unit unit …``, broken between units (one layer each)."""
    lines = _break(units, _LINE_BUDGET - 4, _LINE_BUDGET - _width(lhs) - 2)
    rows = [(r"%s &= %s" % (lhs, r"\,".join(line))) if n == 0 else (r"&\qquad \cdot %s" % r"\,".join(line)) for n, line in enumerate(lines)]
    rows[-1] += "."
    return rows


def _chain_units(g) -> list[str]:
    """The closed form's factors in chain order, a plain layer's ``w_k φ'(z_k)`` kept together."""
    fs = g.factors
    units, i = [], 0
    while i < len(fs):
        f = fs[i]
        if isinstance(f, sympy.Symbol) and f.name.startswith("w") and i + 1 < len(fs):
            units.append(_sym(f) + r"\," + _sym(fs[i + 1]))
            i += 2
        else:
            units.append(r"\left(%s\right)" % _ordered_sum(f) if isinstance(f, sympy.Add) else _sym(f))  # 1 + α w φ', a − y
            i += 1
    return units


def _residual_chain_derivation(g: Gradient, full: bool, max_layers: int) -> str:
    net = g.network
    L, acts, res = net.depth, net.activations, net.residual
    uniform_act = all(a == acts[0] for a in acts)
    act = acts[0]
    phi = act.latex_name if uniform_act else r"\varphi_{k}"
    cost = net.loss
    cancels = res[-1] is None and cost.cancels_with(acts[-1])
    m = re.fullmatch(r"([wb])(\d+)|a0", g.wrt)
    kind = m.group(1) if m.group(1) else "a"
    j = int(m.group(2)) if m.group(2) else 0
    wrt = {"a": "a_{0}", "w": "w_{%d}" % j, "b": "b_{%d}" % j}[kind]
    lhs = _d("C", wrt)
    out = [r"\paragraph{Forward pass.} A residual chain of $L = %d$ single-neuron layers with input $a_{0}$ and target $y$:" % L]
    layer_row, layer_text = _residual_layers_tex(net, dense=False)
    cost_tex = cost.latex_chain % {"L": L} if cost.latex_chain else sympy.latex(cost.cost(sympy.Symbol("a_%d" % L), sympy.Symbol("y")))
    out.append(_align([r"z_{k} &= w_{k}\, a_{k-1} + b_{k}, & %s," % layer_row, r"C &= %s," % cost_tex]))
    if layer_text:
        out.append(layer_text)
    if uniform_act:
        out.append("with the activation")
        out.append(_align(_activation_rows(act)))
    else:
        out.append(r"with per-layer activations $\varphi_{k}$: %s." % ", ".join(r"$\varphi_{%d} = %s$" % (k, a.latex_name) for k, a in enumerate(acts, 1)))

    out.append(r"\paragraph{Chain rule.} The path from $%s$ to $C$ passes through every later layer:" % wrt)
    head = {"b": r"%s %s" % (_d("z_{%d}" % j, "b_{%d}" % j), _d("a_{%d}" % j, "z_{%d}" % j)),
            "w": r"%s %s" % (_d("z_{%d}" % j, "w_{%d}" % j), _d("a_{%d}" % j, "z_{%d}" % j)), "a": ""}[kind]
    lo = j + 1
    prod = (r"\prod_{k=%d}^{%d} %s" % (lo, L, _d("a_{k}", "a_{k-1}"))) if lo <= L else ""
    out.append(_align([r"%s &= %s\, %s\; %s." % (lhs, head, prod, _d("C", "a_{%d}" % L))]))

    out.append(r"\paragraph{Local derivatives.} A residual layer's skip connection adds the identity to its step:")
    rows = [r"%s &= \alpha_{k}\, %s'(z_{k}), & %s &= 1 + \alpha_{k}\, w_{k}\, %s'(z_{k}) \quad \text{(residual } k\text{)}" % (
                _d("a_{k}", "z_{k}"), phi, _d("a_{k}", "a_{k-1}"), phi)]
    if any(r is None for r in res):
        rows.append(r"%s &= %s'(z_{k}), & %s &= w_{k}\, %s'(z_{k}) \quad \text{(plain } k\text{)}" % (
            _d("a_{k}", "z_{k}"), phi, _d("a_{k}", "a_{k-1}"), phi))
    if kind == "b":
        rows.append(r"%s &= 1" % _d("z_{%d}" % j, "b_{%d}" % j))
    elif kind == "w":
        rows.append(r"%s &= a_{%d}" % (_d("z_{%d}" % j, "w_{%d}" % j), j - 1))
    if cancels:
        rows.append(r"%s\, %s &= %s'(z_{%d})\, %s = a_{%d} - y" % (_d("a_{%d}" % L, "z_{%d}" % L), _d("C", "a_{%d}" % L),
                                                                acts[-1].latex_name, L, _d("C", "a_{%d}" % L), L))
    else:
        rows.append(r"%s &= %s" % (_d("C", "a_{%d}" % L), sympy.latex(g.factors[-1])))
    out.append(_align([r + "," for r in rows[:-1]] + [rows[-1] + "."]))

    out.append(r"\paragraph{Closed form.} Substituting the local derivatives into the chain rule:")
    units = _chain_units(g)
    if not full and len(units) > max_layers:
        units = _elide(units, 4, 3, r"\cdots")
    out.append(_align(_unit_rows(lhs, units)))

    uniform_res = all(r is not None and r == res[0] for r in res)
    gen_head = {"b": r"\alpha\, %s'(z_{j})" % phi, "w": r"a_{j-1}\, \alpha\, %s'(z_{j})" % phi, "a": ""}[kind]
    gen_lo = {"b": "j+1", "w": "j+1", "a": "1"}[kind]
    if uniform_res:
        here = "" if isinstance(res[0], sympy.Symbol) else r" (here $\alpha = %s$)" % sympy.latex(res[0])
        out.append(r"\paragraph{Product form.} With the path product $P_{j} = \prod_{k=j+1}^{L} (1 + \alpha\, w_{k}\, %s'(z_{k}))$"
                   r"%s, for a residual chain of depth $L$" % (phi, here))
        out.append(_align([r"%s &= %s \prod_{k=%s}^{L} \bigl(1 + \alpha\, w_{k}\, %s'(z_{k})\bigr)\; %s." % (
            _d("C", {"b": "b_{j}", "w": "w_{j}", "a": "a_{0}"}[kind]), gen_head, gen_lo, phi, _d("C", "a_{L}"))]))
    else:
        out.append(r"\paragraph{Product form.} Each later layer contributes its step $s_{k} = \partial a_{k} / \partial a_{k-1}$: "
                   r"$1 + \alpha_{k} w_{k} %s'(z_{k})$ for a residual layer, $w_{k} %s'(z_{k})$ for a plain one, so "
                   r"$%s = %s\prod_{k=%d}^{%d} s_{k}\; %s$." % (
                       phi, phi, lhs, head + (r"\, " if head else ""), lo, L, _d("C", "a_{%d}" % L)))

    later = [k for k in range(lo, L + 1) if res[k - 1] is not None]
    sup_tex, _ = _bound_facts(act) if uniform_act else (None, False)
    if not later:
        out.append(r"\paragraph{Bound.} No residual layer follows layer %d, so no skip connection carries this gradient; "
                   r"the factors after it are those of a plain chain." % j)
        return "\n".join(out)
    text = [r"\paragraph{Bound.} If every later residual factor obeys $|\alpha_{k} w_{k}\, %s'(z_{k})| \le r < 1$, each step "
            r"$1 + \alpha_{k} w_{k} %s'(z_{k})$ lies in $[1 - r, 1 + r]$, so (Theorem 18 of symgrad's catalogue) the %d residual "
            r"step%s after layer %d multiply to" % (phi, phi, len(later), "" if len(later) == 1 else "s", j)]
    n = len(later)
    text.append(_align([r"(1 - r)^{%d} \le \Bigl|\prod_{k} \bigl(1 + \alpha_{k} w_{k}\, %s'(z_{k})\bigr)\Bigr| \le (1 + r)^{%d}." % (n, phi, n)]))
    text.append(r"The path through the skip connections cannot shrink faster than $(1 - r)^{%d}$, where a plain chain's "
                r"$\prod_{k} w_{k}\, %s'(z_{k})$ can be $r^{%d}$." % (n, phi, n))
    if sup_tex is not None:
        text.append(r"Since $\sup_{z}|%s'(z)| %s %s$, $r = %s$ will do when it is below 1." % (
            act.latex_name, "=" if act.bound.exact else "<", sup_tex,
            _scaled(sup_tex, act, r"\max_{k} |\alpha_{k} w_{k}|")))
    out.append("\n".join(text))
    return "\n".join(out)


def _residual_dense_tex(f) -> str:
    """A residual dense factor: ``(I + α (W^k)^T Σ'(z^k))`` and ``α Σ'(z^k)``; others as plain."""
    if isinstance(f, sympy.MatAdd) and any(isinstance(t, sympy.Identity) for t in f.args):
        rest = [t for t in f.args if not isinstance(t, sympy.Identity)]
        return r"\bigl(I + %s\bigr)" % " + ".join(_residual_dense_tex(t) for t in rest)
    if isinstance(f, sympy.MatMul):
        coeff, mats = f.as_coeff_matrices()
        s = r"\, ".join(_dense_tex(t) for t in mats)
        return s if coeff == 1 else r"%s\, %s" % (sympy.latex(coeff), s)
    return _dense_tex(f)


def _residual_dense_derivation(g: Gradient, full: bool, max_layers: int) -> str:
    net = g.network
    L, acts, res = net.depth, net.activations, net.residual
    uniform_act = all(a == acts[0] for a in acts)
    act = acts[0]
    phi = act.latex_name if uniform_act else r"\varphi_{l}"
    cost = net.loss
    cancels = res[-1] is None and cost.cancels_with(acts[-1])
    m = re.fullmatch(r"(W|b|a)(\d+)(?:\[(\d+)(?:,(\d+))?\])?", g.wrt)
    kind, l = m.group(1), int(m.group(2))
    entry = g._entry
    base = {"W": "W^{%d}" % l, "b": "b^{%d}" % l, "a": "a^{0}"}[kind]
    wrt = base if entry is None else "%s_{%s}" % (base, "%d" % entry[0] if kind != "W" else "%d,%d" % entry)
    lhs = _d("C", wrt)
    widths = ", ".join(str(x) for x in net.widths)
    out = [r"\paragraph{Forward pass.} A residual dense network with widths $(n_{0}, \dots, n_{%d}) = (%s)$; "
           r"$W^{k} \in \mathbb{R}^{n_{k} \times n_{k-1}}$, $b^{k} \in \mathbb{R}^{n_{k}}$, and a residual layer keeps its width "
           r"($n_{k} = n_{k-1}$):" % (L, widths)]
    layer_row, layer_text = _residual_layers_tex(net, dense=True)
    cost_tex = cost.latex_dense % {"L": L} if cost.latex_dense else r"C(a^{%d}, y)" % L
    out.append(_align([r"z^{k} &= W^{k} a^{k-1} + b^{k}, & %s," % layer_row, r"C &= %s," % cost_tex]))
    out.append(((layer_text + " ") if layer_text else "") + r"The activation applies elementwise.")
    if uniform_act:
        out.append("with the activation")
        out.append(_align(_activation_rows(act)))
    out.append(r"\paragraph{Backpropagation.} With $g^{k} = \partial C / \partial a^{k}$ (a column vector) and the diagonal Jacobian "
               r"$\Sigma'(z^{k}) = \operatorname{diag}\bigl(%s'(z^{k}_{1}), \dots, %s'(z^{k}_{n_{k}})\bigr)$, the skip connection "
               r"adds the identity to a residual layer's backward step:" % (phi, phi))
    grad_c = r"a^{%d} - y" % L if cost.dcost_is_residual or cancels else \
        r"\Bigl(\frac{a^{%d}_{i} - y_{i}}{a^{%d}_{i}(1 - a^{%d}_{i})}\Bigr)_{i}" % (L, L, L)
    rows = [r"g^{k-1} &= \bigl(I + \alpha_{k} (W^{k})^{T} \Sigma'(z^{k})\bigr)\, g^{k}, & \frac{\partial C}{\partial b^{k}} &= \alpha_{k}\, \Sigma'(z^{k})\, g^{k} \quad \text{(residual } k\text{)}"]
    if any(r is None for r in res):
        rows.append(r"g^{k-1} &= (W^{k})^{T} \Sigma'(z^{k})\, g^{k}, & \frac{\partial C}{\partial b^{k}} &= \Sigma'(z^{k})\, g^{k} \quad \text{(plain } k\text{)}")
    if cancels:
        rows.append(r"\frac{\partial C}{\partial z^{%d}} &= \Sigma'(z^{%d})\, g^{%d} = a^{%d} - y \quad \text{(} \sigma' \text{ cancels)}" % (L, L, L, L))
    else:
        rows.append(r"g^{%d} &= \nabla_{a} C = %s" % (L, grad_c))
    rows.append(r"\frac{\partial C}{\partial W^{k}} &= \frac{\partial C}{\partial b^{k}}\, (a^{k-1})^{T}, & \frac{\partial C}{\partial a^{0}} &= g^{0}")
    out.append(_align([r + "," for r in rows[:-1]] + [rows[-1] + "."]))

    factors = [_residual_dense_tex(f) for f in g.factors]
    if not full and len(factors) > max_layers:
        factors = _elide(factors, 4, 3, r"\cdots")
    out.append(r"\paragraph{Closed form.} Unrolling the recursion:")
    if entry is not None:
        idx = "%d" % entry[0] if kind != "W" else "%d,%d" % entry
        factors = [r"\Bigl[" + factors[0]] + factors[1:-1] + [factors[-1] + r"\Bigr]_{%s}" % idx] if len(factors) > 1 else \
            [r"\Bigl[%s\Bigr]_{%s}" % (factors[0], idx)]
    out.append(_align(_unit_rows(lhs, factors)))

    lo = l + 1 if kind != "a" else 1
    later = [k for k in range(lo, L + 1) if res[k - 1] is not None]
    n = len(later)
    after = "layer %d" % l if kind != "a" else "the input"
    if not later:
        out.append(r"\paragraph{Bound.} No residual layer follows %s, so no skip connection carries this gradient; "
                   r"the factors after it are those of a plain network." % after)
        return "\n".join(out)
    text = [r"\paragraph{Bound.} The singular values of $I + A$ lie in $[1 - \lVert A \rVert_{2}, 1 + \lVert A \rVert_{2}]$. "
            r"So if every later residual layer has $\lVert \alpha_{k} (W^{k})^{T} \Sigma'(z^{k}) \rVert_{2} \le r < 1$, its step "
            r"shrinks or stretches $g$ by a factor in $[1 - r, 1 + r]$."]
    if n == L - lo + 1:
        text.append(r"Over the %d residual layer%s after %s," % (n, "" if n == 1 else "s", after))
        text.append(_align([r"(1 - r)^{%d}\, \lVert g^{%d} \rVert \le \lVert g^{%d} \rVert \le (1 + r)^{%d}\, \lVert g^{%d} \rVert." % (
            n, L, lo - 1, n, L)]))
        text.append(r"The gradient through the skip connections cannot vanish faster than $(1 - r)^{%d}$, where %d plain layers "
                    r"with $\lVert (W^{k})^{T} \Sigma'(z^{k}) \rVert_{2} \le r$ can shrink it as $r^{%d}$." % (n, n, n))
    else:
        n_plain = L - lo + 1 - n
        text.append(r"The %d plain layer%s after %s multipl%s $\lVert g \rVert$ by at most $\lVert (W^{k})^{T} \Sigma'(z^{k}) \rVert_{2}$ each, "
                    r"as in a plain network, and the %d residual layer%s by a factor in $[1 - r, 1 + r]$ each." % (
                        n_plain, "" if n_plain == 1 else "s", after, "ies" if n_plain == 1 else "y", n, "" if n == 1 else "s"))
    sup_tex, _ = _bound_facts(act) if uniform_act else (None, False)
    if sup_tex is not None:
        text.append(r"Since $\lVert \Sigma'(z^{k}) \rVert_{2} %s %s$, $r = %s$ will do when it is below 1." % (
            r"\le" if act.bound.exact else "<", sup_tex, _scaled(sup_tex, act, r"\max_{k} |\alpha_{k}|\, \lVert W^{k} \rVert_{2}")))
    out.append("\n".join(text))
    return "\n".join(out)


def _residual_symbolic_derivation(g: SymbolicGradient) -> str:
    sc = g.chain
    act, alpha = sc.activation, sc.alpha
    p = act.latex_name
    L = sympy.latex(sc.L)
    j = sympy.latex(g.layer)
    wrt = "%s_{%s}" % (g.kind, j)
    lhs = _d("C", wrt)
    head = r"a_{%s - 1}\, " % j if g.kind == "w" else ""
    out = [r"\paragraph{Forward pass.} A residual chain of symbolic depth $%s$:" % L,
           _align([r"z_{k} &= w_{k}\, a_{k-1} + b_{k}, & a_{k} &= a_{k-1} + %s%s(z_{k}), &\quad k &= 1, \dots, %s," % (_alpha_tex(alpha), p, L),
                   r"C &= C(a_{%s}, y)," % L]),
           "with the activation", _align(_activation_rows(act)),
           r"\paragraph{Chain rule and local derivatives.}",
           _align([r"%s &= %s %s \prod_{k=%s+1}^{%s} %s \; %s," % (lhs, _d("z_{%s}" % j, wrt), _d("a_{%s}" % j, "z_{%s}" % j), j, L,
                                                                   _d("a_{k}", "a_{k-1}"), _d("C", "a_{%s}" % L)),
                   r"%s &= %s%s'(z_{k}), & %s &= 1 + %sw_{k}\, %s'(z_{k})." % (_d("a_{k}", "z_{k}"), _alpha_tex(alpha), p,
                                                                            _d("a_{k}", "a_{k-1}"), _alpha_tex(alpha), p)]),
           r"\paragraph{Closed form.}",
           _align([re.sub(r"\{([A-Za-z])\}_", r"\1_", r"%s &= %s%s%s'(z_{%s}) \prod_{k=%s+1}^{%s} \bigl(1 + %sw_{k}\, %s'(z_{k})\bigr)\; \left(%s\right)." % (
               lhs, head, _alpha_tex(alpha), p, j, j, L, _alpha_tex(alpha), p, _ordered_sum(g.factors[-1])))]),
           r"\paragraph{Bound.} If every $|%sw_{k}\, %s'(z_{k})| \le r < 1$, the product lies between $(1 - r)^{%s - %s}$ and "
           r"$(1 + r)^{%s - %s}$ (Theorem 18 of symgrad's catalogue): it cannot vanish faster than $(1 - r)^{%s - %s}$." % (
               _alpha_tex(alpha), p, L, j, L, j, L, j)]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def _describe(g) -> str:
    if isinstance(g, SymbolicGradient):
        sc = g.chain
        return r"$\partial C / \partial %s_{%s}$ for a chain of depth $%s$" % (g.kind, sympy.latex(g.layer), sympy.latex(sc.L))
    net = g.network
    acts = {a.name for a in net.activations}
    act = net.activations[0]
    act_tex = ("$%s$" % act.latex_name if act.builtin else r"$%s(z) = %s$" % (act.latex_name, sympy.latex(act.expr))) if len(acts) == 1 else "mixed activations"
    shape = ("depth-%d chain" % net.depth) if not hasattr(net, "widths") else r"dense network $(%s)$" % ", ".join(map(str, net.widths))
    return r"$\partial C / \partial %s$: %s, %s, %s cost" % (
        _wrt_tex(g), shape, act_tex, _text(net.loss.name.replace("_", " ")))


def _wrt_tex(g) -> str:
    m = re.fullmatch(r"([A-Za-z])(\d+)(?:\[(\d+)(?:,(\d+))?\])?", g.wrt)
    base, layer, i, k = m.groups()
    if hasattr(g.network, "widths"):
        s = "%s^{%s}" % (base, layer)
        if i is not None:
            s += "_{%s}" % (i if k is None else i + "," + k)
        return s
    return "%s_{%s}" % (base, layer)


def derivation(gradient, *, full: bool = False, max_layers: int = DEFAULT_MAX_LAYERS) -> str:
    r"""The derivation of ``gradient`` as a LaTeX fragment (paragraphs and ``align*`` blocks).

    * ``gradient``: a :class:`symgrad.Gradient` of a chain or dense network, or a
      :class:`symgrad.symbolic.SymbolicGradient` (symbolic depth).
    * ``full``: write every layer even when the derivative spans more than ``max_layers``
      layers (otherwise the middle ones are elided with ``\cdots``).  The output grows linearly
      with depth; a full depth-1000 derivation is a few pages.
    * ``max_layers``: the most layers shown before eliding (default 12).

    The fragment needs ``\usepackage{amsmath,amssymb}``.

    >>> import symgrad
    >>> print(derivation(symgrad.chain(2).gradient("b1")))  # doctest: +ELLIPSIS
    \paragraph{Forward pass.} ...
    """
    if isinstance(max_layers, bool) or not isinstance(max_layers, int) or max_layers < 4:
        raise InvalidArgument("max_layers=%r must be an int ≥ 4, e.g. max_layers=12" % (max_layers,))
    if isinstance(gradient, SymbolicGradient):
        if getattr(gradient.chain, "alpha", None) is not None:
            return _residual_symbolic_derivation(gradient)
        return _symbolic_derivation(gradient)
    if not isinstance(gradient, Gradient):
        raise InvalidArgument("derivation() needs a symgrad Gradient (net.gradient('b1')), not %r" % (gradient,))
    residual = getattr(gradient.network, "is_residual", False)
    if hasattr(gradient.network, "widths"):
        return (_residual_dense_derivation if residual else _dense_derivation)(gradient, full, max_layers)
    return (_residual_chain_derivation if residual else _chain_derivation)(gradient, full, max_layers)


def document(gradients, *, title: str = "Gradient derivations", full: bool = False, max_layers: int = DEFAULT_MAX_LAYERS) -> str:
    r"""A standalone LaTeX document with the derivation of each gradient, one section each.

    * ``gradients``: one gradient or a list of them (see :func:`derivation`).
    * ``title``: the document title (plain text; LaTeX specials are escaped).

    Its first line is symgrad's marker ``% generated by symgrad``, so symgrad may later
    overwrite the file; it compiles with ``pdflatex`` from Debian's ``texlive-latex-base``.
    """
    if isinstance(gradients, (Gradient, SymbolicGradient)):
        gradients = [gradients]
    gradients = list(gradients)
    if not gradients:
        raise InvalidArgument("document() needs at least one gradient")
    if not isinstance(title, str):
        raise InvalidArgument("title=%r must be a str" % (title,))
    parts = _preamble(title)
    for g in gradients:
        parts.append(r"\section*{%s}" % _describe(g))
        parts.append(derivation(g, full=full, max_layers=max_layers))
    parts.append(r"\end{document}")
    return "\n".join(parts) + "\n"


def _preamble(title: str) -> list[str]:
    """The lines of a standalone document up to ``\\maketitle`` (marker first), shared by every
    document symgrad writes (gradient derivations here, mean field in :mod:`symgrad.render.meanfield`)."""
    from symgrad._version import __version__

    return [
        "%s %s -- regenerate it rather than editing it" % (MARKER, __version__),
        r"\documentclass[11pt]{article}",
        r"\usepackage[a4paper,margin=2.5cm]{geometry}",
        r"\usepackage{amsmath,amssymb}",
        r"\allowdisplaybreaks",
        r"\setlength{\parindent}{0pt}",
        r"\setlength{\parskip}{0.5ex}",
        # Inline formulas do not break inside; let TeX stretch the spaces of such a line instead
        # of setting it past the margin (no document may have an overfull box).
        r"\setlength{\emergencystretch}{3em}",
        r"\sloppy",
        # An uncompressed document-information dictionary lets symgrad recognise its own PDFs.
        r"\ifdefined\pdfobjcompresslevel\pdfobjcompresslevel=0\fi",
        r"\ifdefined\pdfinfo\pdfinfo{/Creator (symgrad) /Keywords (generated by symgrad)}\fi",
        r"\title{%s}" % _text(title),
        r"\date{}",
        r"\begin{document}",
        r"\maketitle",
    ]


def pdflatex_available() -> bool:
    """True when a ``pdflatex`` executable is on the PATH."""
    return shutil.which("pdflatex") is not None


def overfull_boxes(log: str, *, tolerance_pt: float = OVERFULL_TOLERANCE_PT) -> list[float]:
    r"""Sizes (pt) of the ``Overfull \hbox`` (too wide) and ``Overfull \vbox`` (too high) reports in
    a pdflatex log larger than ``tolerance_pt`` (default 0: every one)."""
    return [float(w) for w in re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too (?:wide|high)\)", log) if float(w) > tolerance_pt]


def compile_pdf(tex_path, *, pdf_path=None, force: bool = False, strict: bool = True, timeout: float = 120.0) -> Path:
    """Compile ``tex_path`` with ``pdflatex`` in a temporary directory; return the PDF's path.

    * ``pdf_path``: where the PDF goes (default: next to ``tex_path``, suffix ``.pdf``).  It is
      written atomically and, unless ``force=True``, only over a PDF that symgrad wrote.
    * ``strict``: raise :class:`LatexError` when a line is set wider than the page by more than
      ``OVERFULL_TOLERANCE_PT`` (otherwise such a document still yields its PDF).

    Raises :class:`LatexError` when pdflatex is missing or reports an error (with the first
    error line of its log).
    """
    tex_path = Path(tex_path)
    if not tex_path.is_file():
        raise InvalidArgument("cannot compile %s: no such file" % tex_path)
    pdf_path = Path(pdf_path) if pdf_path is not None else tex_path.with_suffix(".pdf")
    exe = shutil.which("pdflatex")
    if exe is None:
        raise LatexError("pdflatex not found; install it with 'apt-get install --no-install-recommends %s'" % " ".join(PDFLATEX_PACKAGES))
    with tempfile.TemporaryDirectory(prefix="symgrad-tex-") as tmp:
        src = Path(tmp) / "doc.tex"
        shutil.copyfile(tex_path, src)
        try:
            proc = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "doc.tex"],
                                  cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LatexError("pdflatex took longer than %g s on %s" % (timeout, tex_path)) from None
        log_file = Path(tmp) / "doc.log"
        log = log_file.read_text("latin-1") if log_file.exists() else proc.stdout.decode("latin-1", "replace")
        pdf = Path(tmp) / "doc.pdf"
        if proc.returncode != 0 or not pdf.exists():
            errors = [line for line in log.splitlines() if line.startswith("!")]
            raise LatexError("pdflatex failed on %s: %s" % (tex_path, errors[0] if errors else "exit code %d" % proc.returncode))
        wide = overfull_boxes(log)
        if wide and strict:
            raise LatexError("%s sets %d line(s) wider than the page (by up to %.1fpt)" % (tex_path, len(wide), max(wide)))
        write_atomic(pdf_path, pdf.read_bytes(), force=force)
    return pdf_path
