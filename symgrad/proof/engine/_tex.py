"""LaTeX for the proof steps: escaping of plain text, the TeX-safety check of caller-given LaTeX
(no file access, definitions or shell; balanced braces) and the display helpers."""

from __future__ import annotations

import re
import unicodedata

import sympy

from symgrad.errors import InvalidArgument
from symgrad.proof.engine._values import _show


def _tex(e) -> str:
    if isinstance(e, str):
        return e
    out = sympy.latex(e)
    if _UNSAFE_MATH.search(out) or not _balanced(out):  # a symbol or function named like a TeX command
        return r"\text{%s}" % _text(str(e))
    return out


def _check_tex(tex, what: str):
    """LaTeX given by the caller (a statement, a display): refused when it reads or writes files,
    defines commands, or has unbalanced braces, since symgrad's documents do none of that."""
    if tex is None:
        return None
    if not isinstance(tex, str):
        raise InvalidArgument("%s must be LaTeX text, not %s" % (what, _show(tex)))
    bad = _UNSAFE_MATH.search(tex)
    if bad:
        raise InvalidArgument("%s uses %s; symgrad's LaTeX reads no file and defines no command" % (what, bad.group(0)))
    if not _balanced(tex.replace(r"\%", "").replace(r"\#", "")):
        raise InvalidArgument("%s has unbalanced braces or a bare %% or #: %s" % (what, _show(tex)))
    return tex


_TEXT_MAP = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "^": r"\^{}", "~": r"\~{}", "−": "$-$", "∈": r"$\in$", "σ": r"$\sigma$", "φ": r"$\varphi$", "≥": r"$\ge$",
    "≤": r"$\le$", "Π": r"$\Pi$", "→": r"$\to$", "≈": r"$\approx$", "·": r"$\cdot$", "′": "'", "δ": r"$\delta$",
    "∂": r"$\partial$", "λ": r"$\lambda$", "η": r"$\eta$", "α": r"$\alpha$", "Σ": r"$\Sigma$", "‖": r"$\|$",
    "—": "---", "–": "--", "×": r"$\times$", ">": "$>$", "<": "$<$", "|": "$|$", "$": r"\$",
}


#: TeX commands a ``$…$`` span of a label may not use (file access, definitions, shell): such a span is printed as text.
_UNSAFE_MATH = re.compile(r"\\(input|include|openin|openout|read|readline|write|immediate|catcode|def|edef|gdef|xdef|let|futurelet|"
                          r"csname|special|newcommand|renewcommand|providecommand|usepackage|documentclass|endinput|"
                          r"makeatletter|makeatother|expandafter|directlua|jobname|outer|long|global)(?![A-Za-z])"
                          r"|\\(begin|end)(?![A-Za-z])(?!\{(p|b|v|V|B|small)?matrix\}|\{cases\}|\{array\}|\{aligned\})")


def _balanced(tex: str) -> bool:
    depth, i = 0, 0
    while i < len(tex):
        c = tex[i]
        if c == "\\":
            i += 2
            continue
        if c in "%#":  # a comment would swallow the closing $; a parameter has no meaning here
            return False
        depth += (c == "{") - (c == "}")
        if depth < 0:
            return False
        i += 1
    return depth == 0


def _text(p: str) -> str:
    p = p.replace(">=", "≥").replace("<=", "≤").replace("->", "→")
    out = []
    for c in p:
        if c in _TEXT_MAP:
            out.append(_TEXT_MAP[c])
        elif c < " " or c == "\x7f":
            out.append(" ")
        elif c > "~":  # other non-ASCII: transliterate (é → e), or a visible placeholder
            folded = unicodedata.normalize("NFKD", c).encode("ascii", "ignore").decode("ascii")
            out.append("".join(_TEXT_MAP.get(x, x) for x in folded) if folded.strip() else "?")
        else:
            out.append(c)
    return "".join(out)


def _escape(text: str) -> str:
    """Plain text to LaTeX text: every special character is escaped and other Unicode is
    transliterated; ``$…$`` spans are kept as maths when they are balanced and use no file,
    definition or shell command (otherwise they are printed as text, dollars included)."""
    out, pos = [], 0
    for m in re.finditer(r"\$([^$]*)\$", text):
        out.append(_text(text[pos:m.start()]))
        body = m.group(1)
        if body and not _UNSAFE_MATH.search(body) and _balanced(body) and all(" " <= c <= "~" for c in body):
            out.append("$" + body + "$")
        else:
            out.append(r"\$" + _text(body) + r"\$")
        pos = m.end()
    out.append(_text(text[pos:]))
    return "".join(out)


def _display(tex: str) -> str:
    return "\\[\\fitmath{%s}\\]" % tex


def _itemize(steps) -> str:
    if not steps:
        return ""
    items = "\n".join(r"\item %s" % s.latex() for s in steps)
    return "\\begin{itemize}\n%s\n\\end{itemize}" % items
