"""The proof catalogue: every theorem is proved, every false variant fails at its intended
step, and the committed LaTeX in proofs/ is what the code generates."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from symgrad import catalogue

PROOFS = Path(__file__).resolve().parent.parent / "proofs"


@pytest.fixture(scope="module")
def results():
    return {r.theorem.number: r for r in catalogue.run()}


@pytest.mark.parametrize("number", [t.number for t in catalogue.theorems()])
def test_theorem_is_proved(results, number):
    r = results[number]
    assert r.proved, str(r)


@pytest.mark.parametrize("number", [t.number for t in catalogue.theorems()])
def test_crosscheck_agrees(results, number):
    assert results[number].crosscheck in ("passed", "none"), results[number].crosscheck


def test_catalogue_covers_the_issue():
    numbers = {t.number.rstrip("abcde") for t in catalogue.theorems()}
    assert numbers == {str(i) for i in range(1, 16)}


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
    assert table.count("| proved |") == len(results)


def test_committed_latex_is_up_to_date(tmp_path, results):
    """Regenerate into a temporary directory and compare with proofs/ byte for byte."""
    written = catalogue.write_latex(tmp_path, list(results.values()))
    stale = [p.name for p in written if not (PROOFS / p.name).exists() or (PROOFS / p.name).read_bytes() != p.read_bytes()]
    assert not stale, "proofs/ is out of date (%s); run: python -m symgrad.catalogue --write proofs/" % ", ".join(stale)
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
    from symgrad.latex import overfull_boxes

    assert not overfull_boxes(log), "lines wider than the page: %s" % overfull_boxes(log)


def test_readme_theorem_table_is_the_one_symgrad_prove_writes():
    """The README's status block is generated (`symgrad prove --readme README.md`), not hand-written."""
    from pathlib import Path

    from symgrad import catalogue

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = text.split(catalogue.README_START)[1].split(catalogue.README_END)[0]
    assert block == "\n" + catalogue.status_table(), "README theorem table is stale: run symgrad prove --readme README.md"


def test_update_readme_touches_only_its_block(tmp_path):
    from symgrad import InvalidArgument, catalogue

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
