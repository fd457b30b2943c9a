"""The proof catalogue: every theorem is proved, every false variant fails at its intended
step, and the committed LaTeX in proofs/ is what the code generates."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from symgrad.proof import catalogue

PROOFS = Path(__file__).resolve().parent.parent / "proofs"


@pytest.fixture(scope="module")
def results():
    return {r.theorem.number: r for r in catalogue.run()}


#: What each theorem rests on besides its checked steps: (givens, stated rules), by label.  A change
#: here is a change in what the catalogue claims to have proved, so it is pinned.
RESTS_ON = {
    "1": ((), ()), "2a": ((), ()), "2b": ((), ()), "2c": ((), ()),
    "2d": ((), ("maximum at z*",)), "2e": ((), ("maximum at sqrt 2",)),
    "3": ((), ()), "4": ((), ("bound the product",)), "5": ((), ("bound the product",)), "6": ((), ("unique maximum",)),
    "7": ((), ()), "8": ((), ()), "9": ((), ("updates scale as gradients",)),
    "10": (("operator norm",), ("one layer", "output layer")), "11": ((), ()),
    "12": ((), ("limit of the iterates",)), "13": ((), ()), "14": ((), ()),
    "15": (("independent zero-mean weights",), ()),
    "16a": ((), ("fate of the length map",)), "16b": ((), ()), "16c": ((), ()),
    "16d": ((), ("second moment (Williams)",)), "16e": ((), ("slope of the map at 0", "stability of q* = 0")),
    "17": ((), ()), "18": ((), ("bound the path product",)),
}


@pytest.mark.parametrize("number", [t.number for t in catalogue.theorems()])
def test_theorem_is_checked_and_rests_on_exactly_what_is_listed(results, number):
    r = results[number]
    assert r.checked, str(r)
    givens, rules = RESTS_ON[number]
    assert (tuple(a.label for a in r.givens), tuple(a.label for a in r.rules)) == (givens, rules), str(r)
    assert r.proved == (not givens and not rules)


def _walk(step, discharged):
    """An independent count of what a step rests on: (Given objects, Implies objects, unlinked
    certificate hypotheses), written from the rules, not from the engine's bookkeeping."""
    from symgrad.proof.engine import Certificate, Given, Implies, Induction

    givens, rules, loose = set(), set(), 0
    subs = []
    if isinstance(step, Given):
        if step not in discharged:
            givens.add(step)
    elif isinstance(step, Implies):
        rules.add(step)
        subs = [(p, discharged) for p in step.premises]
    elif isinstance(step, Induction):
        subs = [(p, discharged | set(step.premises)) for p in step.base] + [(p, discharged | set(step.premises) | set(step.ih)) for p in step.step]
    elif isinstance(step, Certificate):
        loose = len(set(step.where) - set(step.by))
        subs = [(p, discharged) for p in step.by.values()]
    for sub, dis in subs:
        g, r, lo = _walk(sub, dis)
        givens |= g
        rules |= r
        loose += lo
    return givens, rules, loose


@pytest.mark.parametrize("number", [t.number for t in catalogue.theorems()])
def test_reported_status_matches_an_independent_count(results, number):
    from symgrad.proof.engine import assuming_text

    r = results[number]
    givens, rules, loose = set(), set(), 0
    for st in r.theorem.steps:
        g, ru, lo = _walk(st, set(r.theorem.hypotheses))
        givens |= g
        rules |= ru
        loose += lo
    assert r.status == assuming_text(len(givens) + loose, len(rules))
    assert catalogue.status_line(r) == r.status
    assert ("| %s |" % r.status) in catalogue.status_table(list(results.values()))


@pytest.mark.parametrize("number", [t.number for t in catalogue.theorems()])
def test_crosscheck_agrees(results, number):
    assert results[number].crosscheck in ("passed", "none"), results[number].crosscheck


def test_catalogue_covers_the_issue():
    numbers = {t.number.rstrip("abcde") for t in catalogue.theorems()}
    assert numbers == {str(i) for i in range(1, 19)}


@pytest.mark.parametrize("variant", catalogue.false_variants(), ids=lambda v: "%s-%s" % (v[0].number, v[1]))
def test_false_variant_fails_at_the_intended_step(variant):
    thm, label = variant
    r = thm.prove(crosscheck=False)
    assert r.status == "failed", "false variant of %s was proved" % thm.number
    assert r.failed_label == label, str(r)


def test_every_theorem_has_a_false_variant():
    assert {t.number for t, _ in catalogue.false_variants()} == {t.number for t in catalogue.theorems()}


def test_status_table_lists_every_theorem(results):
    table = catalogue.status_table(list(results.values()))
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith(("| #", "| ---"))]
    assert len(rows) == len(results)
    outright = sum(not g and not r for g, r in RESTS_ON.values())
    assert table.count("| proved |") == outright < len(results)
    assert "%d of %d theorems proved outright" % (outright, len(results)) in table


def test_status_table_reports_a_failure():
    wrong, label = catalogue.false_variants()[0]
    table = catalogue.status_table([wrong.prove(crosscheck=False)])
    assert "| failed at step" in table and label in table and "0 of 1 theorems proved outright" in table and "1 not proved" in table


def test_committed_latex_is_up_to_date(tmp_path, results):
    """Regenerate into a temporary directory and compare with proofs/ byte for byte."""
    written = catalogue.write_latex(tmp_path, list(results.values()))
    stale = [p.name for p in written if not (PROOFS / p.name).exists() or (PROOFS / p.name).read_bytes() != p.read_bytes()]
    assert not stale, "proofs/ is out of date (%s); run: python -m symgrad.proof.catalogue --write proofs/" % ", ".join(stale)
    for p in written:
        if p.suffix == ".tex":
            assert p.read_text(encoding="utf-8").splitlines()[0] == catalogue.MARKER


def test_no_step_displays_a_tautology():
    # When SymPy evaluates a step's left side on construction (a derivative, an empty product),
    # the display must still state what was computed, not "1 = 1" (it did, in an earlier version).
    bad = []
    for p in sorted(PROOFS.glob("*.tex")):
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            m = re.fullmatch(r"\\\[\\fitmath\{(.*)\}\\\]", line.strip())
            if m:
                sides = m.group(1).split(" = ")
                if len(sides) == 2 and sides[0].strip() == sides[1].strip():
                    bad.append("%s:%d %s" % (p.name, i, m.group(1)[:60]))
    assert not bad, bad


def test_main_document_compiles_without_overfull_lines(tmp_path):
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex is required under CI to compile proofs/main.tex")
        pytest.skip("pdflatex not installed: proofs/main.tex was NOT compiled")
    for p in PROOFS.glob("*.tex"):
        shutil.copy(p, tmp_path / p.name)
    for _ in range(2):  # twice, for the table of contents
        proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "main.tex"],
                              cwd=tmp_path, capture_output=True, timeout=180, stdin=subprocess.DEVNULL)
    log = (tmp_path / "main.log").read_text("latin-1")
    assert proc.returncode == 0, [line for line in log.splitlines() if line.startswith("!")][:3]
    from symgrad.render.latex import overfull_boxes

    assert not overfull_boxes(log), "lines wider than the page: %s" % overfull_boxes(log)


def test_readme_theorem_table_is_the_one_symgrad_prove_writes():
    """The README's status block is generated (`symgrad prove --readme README.md`), not hand-written."""
    from pathlib import Path

    from symgrad.proof import catalogue

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = text.split(catalogue.README_START)[1].split(catalogue.README_END)[0]
    assert block == "\n" + catalogue.status_table(), "README theorem table is stale: run symgrad prove --readme README.md"


def test_update_readme_touches_only_its_block(tmp_path):
    from symgrad import InvalidArgument
    from symgrad.proof import catalogue

    p = tmp_path / "R.md"
    p.write_text("mine\n%s\nold\n%s\nalso mine\n" % (catalogue.README_START, catalogue.README_END))
    first = catalogue.theorems()[:1]
    results = [t.prove(crosscheck=False) for t in first]
    catalogue.update_readme(p, results)
    text = p.read_text()
    assert text.startswith("mine\n") and text.endswith("also mine\n") and "old" not in text
    q = tmp_path / "Q.md"
    q.write_text("no markers\n")
    with pytest.raises(InvalidArgument, match="no status block"):
        catalogue.update_readme(q, results)
    assert q.read_text() == "no markers\n"


def _all_steps():
    from symgrad.proof.engine import Certificate, Implies, Induction

    def walk(st):
        yield st
        if isinstance(st, Induction):
            for x in st.base + st.step:
                yield from walk(x)
        if isinstance(st, Implies):
            for x in st.premises:
                yield from walk(x)
        if isinstance(st, Certificate):
            for x in st.by.values():
                yield from walk(x)

    seen = {}
    for thm in catalogue.theorems():
        for s0 in thm.steps:
            for st in walk(s0):
                seen.setdefault(id(st), (thm.number, st))
    return list(seen.values())


def test_no_step_compares_a_constant_with_itself():
    # The kind of check that cannot fail: both sides are numbers before the checker runs (e.g.
    # Rational(1, 4) * 4 == 1 evaluated by Python); the computation must happen in the check.
    from symgrad.proof.engine import Identity

    bad = ["%s %r: %s = %s" % (num, st, st.lhs, st.rhs) for num, st in _all_steps()
           if isinstance(st, Identity) and st.lhs.is_Number and st.rhs.is_Number]
    assert not bad, bad


def _broken(st):
    """The step with its claim moved just off the truth, or None for composites and givens."""
    from sympy import FiniteSet, Rational, S

    from symgrad.proof.engine import Certificate, CertifiedRoot, Enclosure, ExactValue, Identity, Limit, Solve

    if isinstance(st, ExactValue):
        return ExactValue(st.lhs, st.rhs + Rational(1, 10 ** 6))
    if isinstance(st, Identity):
        return Identity(st.lhs, st.rhs + Rational(1, 10 ** 6), peel=st.peel)
    if isinstance(st, Certificate):
        return Certificate(st.expr - Rational(1, 10 ** 6), st.witness, strict=st.strict, where=st.where, by=st.by)
    if isinstance(st, Solve):  # one point more, or (for intervals, which may hold any point) nothing
        return Solve(st.equation, st.var, st.expected.union(FiniteSet(Rational(12345, 7))) if st.expected.is_FiniteSet else S.EmptySet,
                     domain=st.domain)
    if isinstance(st, Limit):
        return Limit(st.expr, st.var, st.point, st.expected + Rational(1, 10 ** 6) if st.expected.is_finite else S.Zero)
    if isinstance(st, Enclosure):
        width = st.hi - st.lo
        return Enclosure(st.expr, st.hi + width / 10, st.hi + 2 * width, env=st.env)
    if isinstance(st, CertifiedRoot):
        return CertifiedRoot(st.f, st.var, st.hi + (st.hi - st.lo), st.hi + 2 * (st.hi - st.lo), st.digits)
    return None


def test_every_checked_step_can_fail():
    """Each checked step of the catalogue, with its claim moved off the truth, is rejected: no
    step passes whatever it is given."""
    passed = []
    count = 0
    for num, st in _all_steps():
        b = _broken(st)
        if b is None:
            continue
        count += 1
        if b.check().ok:
            passed.append("%s %r" % (num, st))
    assert count > 80 and not passed, passed


def test_no_generated_text_carries_an_escaped_backslash():
    # proofs/15_init.tex printed "400\textbackslash{},000": text that reaches LaTeX is escaped once.
    bad = [p.name for p in PROOFS.glob("*.tex") if "textbackslash" in p.read_text(encoding="utf-8")]
    assert not bad, bad
    assert "400,000 draws" in (PROOFS / "15_init.tex").read_text(encoding="utf-8")


def test_proofs_state_what_they_rest_on(results):
    from symgrad.proof.engine import _escape

    for r in results.values():
        tex = (PROOFS / catalogue._filename(r.theorem)).read_text(encoding="utf-8")
        if r.proved:
            assert "\\emph{Status:} proved: every step checked, nothing assumed." in tex
        else:
            assert "\\emph{Status:} %s; every step checked." % r.status in tex
            assert "\\emph{The proof rests on}" in tex
            for a in r.assumptions:
                assert "``%s''" % _escape(a.label) in tex


def test_prove_write_with_a_foreign_readme_writes_nothing(tmp_path, capsys, monkeypatch):
    from symgrad.cli import main

    first = catalogue.theorems()[:1]
    monkeypatch.setattr(catalogue, "theorems", lambda: first)
    (tmp_path / "README.md").write_text("my own notes\n")
    code = main(["prove", "--no-crosscheck", "--write", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2 and "refusing to overwrite" in err and "README.md" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]
    assert (tmp_path / "README.md").read_text() == "my own notes\n"
    assert "theorem(s) proved" not in out and "Sigmoid" not in out  # refused before the catalogue ran


def test_write_latex_alone_writes_nothing_next_to_a_foreign_file(tmp_path, results):
    # write_latex itself (not only the CLI's early check) is all or nothing.
    from symgrad import InvalidArgument

    (tmp_path / "main.tex").write_text("mine\n")
    with pytest.raises(InvalidArgument, match="refusing to overwrite"):
        catalogue.write_latex(tmp_path, [results["1"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["main.tex"]


def test_prove_reports_proved_outright_and_assuming(capsys):
    from symgrad.cli import main

    n = len(catalogue.theorems())
    outright = sum(not g and not r for g, r in RESTS_ON.values())
    code = main(["prove", "--no-crosscheck"])
    out = capsys.readouterr().out
    assert code == 0
    assert "%d of %d theorem(s) proved outright, %d proved assuming givens or stated rules" % (outright, n, n - outright) in out
    assert "10   Dense layers" in out and "proved assuming 1 given and 2 stated rules (given: operator norm" in out
    assert main(["prove", "--no-crosscheck", "--strict"]) == 1  # not every theorem is proved outright


def test_prove_strict_passes_when_everything_is_proved_outright(capsys, monkeypatch):
    from symgrad.cli import main

    first = catalogue.theorems()[:1]  # Theorem 1 rests on nothing
    monkeypatch.setattr(catalogue, "theorems", lambda: first)
    assert main(["prove", "--no-crosscheck", "--strict"]) == 0
    assert "1 of 1 theorem(s) proved outright, 0 proved assuming" in capsys.readouterr().out


HOSTILE_TEXT = ["50% of #1 & _x_ ~ ^ \\ {}", "$\\input{/etc/hostname}$", "$\\end{document}$", "café ☃ naïve \x00",
                "costs $5", "$\\frac{1}{2$", "$\\immediate\\write18{touch pwned}$"]


def test_escape_keeps_safe_maths_and_neutralises_the_rest():
    from symgrad.proof.engine import _escape

    assert _escape("$\\sigma'(z)$ >= 0") == "$\\sigma'(z)$ $\\ge$ 0"
    assert _escape("$\\begin{matrix}0\\end{matrix}$") == "$\\begin{matrix}0\\end{matrix}$"
    for text in HOSTILE_TEXT:
        out = _escape(text)
        assert "\\input" not in out and "\\end{document}" not in out and "\\write" not in out and "%" not in out.replace("\\%", "")
        assert all(" " <= c <= "~" or c == "\n" for c in out), out


def test_hostile_text_in_a_theorem_compiles(tmp_path):
    """Titles, labels, reasons, sources and cross-check notes reach LaTeX escaped: the document
    compiles, reads no file and runs nothing, with no overfull line."""
    import sympy

    from symgrad.proof.engine import Identity, Theorem

    if shutil.which("pdflatex") is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex is required under CI")
        pytest.skip("pdflatex not installed: the hostile-text document was NOT compiled")
    x = sympy.Symbol("x", real=True)
    evil = sympy.Symbol("\\input{/etc/hostname}")  # sympy.latex prints a symbol's name as it is
    steps = [Identity(x + x, 2 * x, t, t) for t in HOSTILE_TEXT] + [Identity(evil + evil, 2 * evil, "evil symbol")]
    thm = Theorem("T", " ".join(HOSTILE_TEXT[:2]), "A statement.", steps, source=HOSTILE_TEXT[3], crosscheck_doc=HOSTILE_TEXT[4])
    (tmp_path / "main.tex").write_text(catalogue._PREAMBLE + thm.latex() + "\\end{document}\n", encoding="utf-8")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "main.tex"],
                          cwd=tmp_path, capture_output=True, timeout=180, stdin=subprocess.DEVNULL)
    log = (tmp_path / "main.log").read_text("latin-1")
    assert proc.returncode == 0, [line for line in log.splitlines() if line.startswith("!")][:3]
    assert "(/etc/hostname" not in log  # TeX logs "(file" when it reads one
    assert not (tmp_path / "pwned").exists()
    from symgrad.render.latex import overfull_boxes

    assert not overfull_boxes(log), overfull_boxes(log)


def test_prove_exits_3_when_a_step_runs_past_its_budget(capsys, monkeypatch):
    import sympy

    from symgrad.cli import main
    from symgrad.proof.engine import Identity, Theorem

    class Slow(Identity):
        budget_seconds = 0.2

        def _check(self):
            while True:
                pass

    x = sympy.Symbol("x")
    thm = Theorem("T", "slow", "s", [Identity(x, x, "fine"), Slow(x, x, "slow step")])
    monkeypatch.setattr(catalogue, "theorems", lambda: [thm])
    assert main(["prove", "--no-crosscheck"]) == 3
    out = capsys.readouterr().out
    assert "unknown at step 2 (slow step)" in out and "budget" in out and "0 of 1 theorem(s) proved outright" in out
    assert "; UNKNOWN: T" in out and "FAILED" not in out


def test_meanfield_theorems_rest_on_no_given(results):
    """16a–16e prove every Gaussian integral they use (Williams' erf moment included, by its
    derivative and its value at 0); only inference rules are stated, and the numbers agree with
    symgrad.theory.meanfield (the cross-checks)."""
    mf = [r for n, r in results.items() if n.startswith("16")]
    assert [r.theorem.number for r in mf] == ["16a", "16b", "16c", "16d", "16e"]
    for r in mf:
        assert r.checked and not r.givens and r.crosscheck == "passed", str(r)
