"""The ``symgrad`` command line: derive, latex, bounds, check, bad input and atomic output."""

from __future__ import annotations

import os
import shutil

import pytest

import symgrad
from symgrad import cli
from symgrad._io import MARKER, is_symgrad_file, write_atomic


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _has_parser():
    try:
        import symgrad.spec._parse  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


needs_parser = pytest.mark.skipif(not _has_parser(), reason="symgrad.spec._parse (expression-string activations) NOT PRESENT yet")


# --- derive --------------------------------------------------------------------------------------


def test_readme_main_job_derive_verifies_exactly(capsys):
    code, out, err = run(capsys, "derive", "--depth", "4", "--activation", "sigmoid", "--wrt", "b1", "--verify")
    assert code == 0, err
    assert "sigmoid'(z1)*w2*sigmoid'(z2)*w3*sigmoid'(z3)*w4*sigmoid'(z4)*(a4 - y)" in out
    assert "verified against sympy.diff of the composed loss: exact match" in out


@pytest.mark.parametrize("fmt, expected", [("latex", r"\frac{\partial C}{\partial b_{1}}"), ("srepr", "Symbol('w2'"), ("text", "factors (chain order)")])
def test_derive_output_formats(capsys, fmt, expected):
    code, out, _ = run(capsys, "derive", "--depth", "3", "--format", fmt)
    assert code == 0 and expected in out


def test_derive_dense_network(capsys):
    code, out, _ = run(capsys, "derive", "--widths", "2,3,1", "--wrt", "W2[0,1]", "--verify")
    assert code == 0 and "exact match" in out


# --- latex ---------------------------------------------------------------------------------------


def test_latex_to_stdout_is_a_standalone_document(capsys):
    code, out, _ = run(capsys, "latex", "--depth", "4")
    assert code == 0 and out.startswith(MARKER) and r"\begin{document}" in out


def test_latex_fragment_has_no_preamble(capsys):
    code, out, _ = run(capsys, "latex", "--fragment", "--widths", "2,3,1")
    assert code == 0 and r"\documentclass" not in out and r"\delta^{l}" in out


def test_latex_writes_file_with_marker_and_several_gradients(tmp_path, capsys):
    target = tmp_path / "g.tex"
    code, _, err = run(capsys, "latex", "--wrt", "b1,w2", "-o", str(target))
    assert code == 0 and "wrote" in err
    text = target.read_text()
    assert text.startswith(MARKER) and r"\partial C / \partial w_{2}" in text
    assert [p.name for p in tmp_path.iterdir()] == ["g.tex"]  # no temporary file left behind


def test_latex_overwrites_its_own_file_but_not_a_foreign_one(tmp_path, capsys):
    target = tmp_path / "g.tex"
    assert run(capsys, "latex", "-o", str(target))[0] == 0
    assert run(capsys, "latex", "--depth", "3", "-o", str(target))[0] == 0
    foreign = tmp_path / "notes.tex"
    foreign.write_text("my thesis\n")
    code, _, err = run(capsys, "latex", "-o", str(foreign))
    assert code == 2 and "refusing to overwrite" in err and "--force" in err
    assert foreign.read_text() == "my thesis\n"
    assert run(capsys, "latex", "-o", str(foreign), "--force")[0] == 0
    assert foreign.read_text().startswith(MARKER)


def test_latex_pdf_is_compiled_next_to_the_tex(tmp_path, capsys):
    if shutil.which("pdflatex") is None:
        msg = "pdflatex NOT INSTALLED: `symgrad latex --pdf` was not tested"
        pytest.fail(msg) if os.environ.get("CI") else pytest.skip(msg)
    target = tmp_path / "chain.tex"
    code, _, err = run(capsys, "latex", "--depth", "4", "--wrt", "b1", "-o", str(target), "--pdf")
    assert code == 0, err
    pdf = tmp_path / "chain.pdf"
    assert pdf.read_bytes().startswith(b"%PDF") and is_symgrad_file(pdf)
    assert run(capsys, "latex", "--depth", "4", "-o", str(target), "--pdf")[0] == 0  # its own PDF: replaced


# --- bounds --------------------------------------------------------------------------------------


def test_bounds_sigmoid_reports_sup_argmax_range_and_vanishing(capsys):
    code, out, _ = run(capsys, "bounds", "--activation", "sigmoid", "--weight-scale", "1")
    assert code == 0
    assert "1/4" in out and "{0}" in out and "(0, 1/4]" in out and "vanishing" in out and "0.25" in out


@pytest.mark.parametrize("act, scale, regime", [("sigmoid", "8", "exploding"), ("identity", "1", "neither"), ("tanh", "0.5", "vanishing"), ("relu", "2", "exploding")])
def test_bounds_regimes(capsys, act, scale, regime):
    code, out, _ = run(capsys, "bounds", "--activation", act, "--weight-scale", scale)
    assert code == 0 and "regime          %s" % regime in out


def test_bounds_json(capsys):
    import json

    code, out, _ = run(capsys, "bounds", "--activation", "tanh", "--json")
    facts = json.loads(out)
    assert code == 0 and facts["sup_abs_phi_prime"] == "1" and facts["regime"] == "neither"


# --- check ---------------------------------------------------------------------------------------


def _table(out):
    """``{parameter: row fields}`` of the check table."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("parameter"))
    rows = {}
    for line in lines[start + 1:]:
        fields = line.split()
        if len(fields) != 5 or fields[-1] not in ("PASS", "FAIL"):
            break
        rows[fields[0]] = fields[1:]
    return rows


def test_check_depth_4_sigmoid_chain_passes(capsys):
    code, out, err = run(capsys, "check", "--depth", "4", "--activation", "sigmoid")
    assert code == 0, err
    rows = _table(out)
    assert list(rows) == ["w1", "w2", "w3", "w4", "b1", "b2", "b3", "b4"]
    for name, (mag, rel_bp, rel_fd, result) in rows.items():
        assert result == "PASS" and float(mag) > 0 and float(rel_bp) < 1e-12 and float(rel_fd) < 1e-5, (name, out)
    assert "all 8 parameter(s) pass" in out and "batch 8" in out


def test_check_dense_network_passes(capsys):
    code, out, err = run(capsys, "check", "--widths", "2,3,1", "--batch", "4", "--init", "xavier", "--seed", "3")
    assert code == 0, err
    assert list(_table(out)) == ["W1", "W2", "b1", "b2"] and "FAIL" not in out


def test_check_wrt_selects_parameters_in_order_without_repeats(capsys):
    code, out, _ = run(capsys, "check", "--depth", "3", "--activation", "tanh", "--wrt", "b2, w1,b2", "--init", "constant", "--value", "0.5")
    assert code == 0 and list(_table(out)) == ["b2", "w1"]


def test_check_seed_makes_the_table_reproducible(capsys):
    first = run(capsys, "check", "--depth", "2", "--seed", "7")[1]
    assert run(capsys, "check", "--depth", "2", "--seed", "7")[1] == first
    assert run(capsys, "check", "--depth", "2", "--seed", "8")[1] != first


def test_check_mismatch_exits_1_and_names_the_parameter(capsys, monkeypatch):
    import symgrad.numeric

    real = symgrad.numeric.backprop

    def corrupted(net, params, **kw):  # a backprop with a bug in dC/dw2 only
        res = real(net, params, **kw)
        if "w2" in res.grads:
            res.grads["w2"] = res.grads["w2"] * 1.01
        return res

    monkeypatch.setattr(symgrad.numeric, "backprop", corrupted)
    code, out, err = run(capsys, "check", "--depth", "4", "--activation", "sigmoid")
    assert code == 1
    rows = _table(out)
    assert rows["w2"][-1] == "FAIL" and float(rows["w2"][1]) > 1e-3
    assert all(r[-1] == "PASS" for n, r in rows.items() if n != "w2"), out
    assert "1 of 8 parameter(s) FAIL: w2" in out
    assert err.startswith("symgrad: check failed: gradient check failed") and "Traceback" not in err
    assert "backprop: ∂C/∂w2 at batch index" in err and "closed form = " in err and "∂C/∂w1" not in err


def test_check_reports_progress_on_stderr_when_slow(capsys, monkeypatch):
    monkeypatch.setattr(cli, "PROGRESS_AFTER_S", 0.0)
    code, out, err = run(capsys, "check", "--depth", "2")
    assert code == 0 and "symgrad: checking 4 gradient(s)" in err and "done" in err and "symgrad:" not in out


def test_check_inits_match_the_sampler():
    import symgrad.numeric

    assert cli.INITS is symgrad.numeric.sampling.INITS is symgrad.numeric.inits.INITS


# --- help ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["derive", "latex", "bounds", "check", "prove"])
def test_help_shows_a_runnable_example(capsys, tmp_path, monkeypatch, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    example = [line for line in out.splitlines() if line.startswith("example: symgrad %s" % command)]
    assert example, out
    argv = example[0].split()[2:]
    if "--pdf" in argv and shutil.which("pdflatex") is None:
        argv.remove("--pdf")
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    assert code == 0, err


def test_top_level_help(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and all(c in out for c in ("derive", "latex", "bounds", "check", "prove"))


# --- prove ---------------------------------------------------------------------------------------


def test_prove_lists_every_theorem_as_proved(capsys):
    from symgrad.proof import catalogue

    import re

    code, out, _ = run(capsys, "prove", "--no-crosscheck")
    n = len(catalogue.theorems())
    m = re.search(r"(\d+) of (\d+) theorem\(s\) proved outright, (\d+) proved assuming [^\n]*, (\d+) not proved", out)
    assert code == 0 and m, out
    outright, total, assuming, failed = map(int, m.groups())
    assert total == n and outright + assuming == n and failed == 0
    assert out.count("proved") >= n


def test_prove_exits_1_and_names_the_failed_step(capsys, monkeypatch):
    from symgrad.proof import catalogue

    wrong, label = catalogue.false_variants()[0]  # sup σ' = 1/3
    monkeypatch.setattr(catalogue, "theorems", lambda: [wrong])
    code, out, _ = run(capsys, "prove", "--no-crosscheck")
    assert code == 1 and "FAILED" in out and label in out


def test_prove_write_refuses_to_overwrite_a_foreign_file(capsys, tmp_path, monkeypatch):
    from symgrad.proof import catalogue

    first = catalogue.theorems()[:1]  # one theorem keeps the test quick
    monkeypatch.setattr(catalogue, "theorems", lambda: first)
    (tmp_path / "main.tex").write_text("my own notes\n")
    code, _, err = run(capsys, "prove", "--no-crosscheck", "--write", str(tmp_path))
    assert code == 2 and "refusing to overwrite" in err
    assert (tmp_path / "main.tex").read_text() == "my own notes\n"
    code, _, _ = run(capsys, "prove", "--no-crosscheck", "--write", str(tmp_path), "--force")
    assert code == 0 and (tmp_path / "main.tex").read_text().startswith("% generated by symgrad")


# --- bad input: exit 2, one line naming the problem, no traceback -------------------------------

BAD = [
    (["--frobnicate"], "required: COMMAND"),
    (["derive", "extra"], "unrecognized arguments: extra"),
    ([], "required"),
    (["fly"], "invalid choice"),
    (["derive", "--nope"], "unrecognized arguments"),
    (["derive", "--depth", "0"], "not a positive depth"),
    (["derive", "--depth", "-3"], "not a positive depth"),
    (["derive", "--depth", "abc"], "not an integer"),
    (["derive", "--depth", "2.5"], "not an integer"),
    (["derive", "--depth", "2000000"], "exceeds the maximum"),
    (["derive", "--depth"], "expected one argument"),
    (["derive", "--depth", "3", "--widths", "2,1"], "not allowed with"),
    (["derive", "--widths", "2,x,1"], "comma-separated"),
    (["derive", "--widths", "3"], "at least two entries"),
    (["derive", "--widths", "2,0,1"], "positive int"),
    (["derive", "--activation", "sigmoidd"], "unknown activation"),
    (["derive", "--loss", "hinge"], "unknown loss"),
    (["derive", "--wrt", "b9"], "unknown parameter"),
    (["derive", "--wrt", "w0"], "unknown parameter"),
    (["derive", "--wrt", "x1"], "unknown parameter"),
    (["derive", "--widths", "2,3,1", "--wrt", "W5"], "unknown parameter"),
    (["derive", "--widths", "2,3,1", "--wrt", "W2[5,0]"], "out of range"),
    (["derive", "--format", "pdf"], "invalid choice"),
    (["latex", "--wrt", "b1,b7"], "unknown parameter"),
    (["latex", "--wrt", ","], "names no parameter"),
    (["latex", "--pdf"], "--pdf needs -o"),
    (["latex", "-o", "out.pdf"], "give the .tex path"),
    (["latex", "-o", "{tmp}/missing/dir/g.tex"], "does not exist"),
    (["latex", "-o", "{tmp}"], "is a directory"),
    (["latex", "-o", "{tmp}/foreign.tex"], "refusing to overwrite"),
    (["latex", "--frobnicate"], "unrecognized arguments"),
    (["bounds", "--activation", "nope"], "unknown activation"),
    (["bounds", "--weight-scale", "abc"], "not a number"),
    (["bounds", "--weight-scale", "-1"], ">= 0"),
    (["bounds", "--weight-scale", "nan"], ">= 0"),
    (["bounds", "--weight-scale", "inf"], ">= 0"),
    (["bounds", "--depth", "0"], "not a positive depth"),
    (["check", "--batch", "0"], "not a positive batch size"),
    (["check", "--batch", "-1"], "not a positive batch size"),
    (["check", "--batch", "abc"], "not an integer"),
    (["check", "--batch", "2.5"], "not an integer"),
    (["check", "--batch", "10000000"], "exceeds the maximum"),
    (["check", "--batch"], "expected one argument"),
    (["check", "--init", "lecun"], "unknown init"),
    (["check", "--init", "constant"], "needs --value"),
    (["check", "--value", "0.5"], "only used with --init constant"),
    (["check", "--init", "constant", "--value", "nan"], "not a finite number"),
    (["check", "--seed", "-1"], "not a non-negative seed"),
    (["check", "--seed", "x"], "not an integer"),
    (["check", "--wrt", "b9"], "unknown parameter"),
    (["check", "--wrt", "b1,q2"], "unknown parameter 'q2'"),
    (["check", "--wrt", ","], "names no parameter"),
    (["check", "--widths", "2,3,1", "--wrt", "W2[0,1]"], "check compares whole parameters"),
    (["check", "--widths", "2,3,1", "--wrt", "w1"], "unknown parameter"),
    (["check", "--depth", "0"], "not a positive depth"),
    (["check", "--depth", "3", "--widths", "2,1"], "not allowed with"),
    (["check", "--activation", "sigmoidd"], "unknown activation"),
    (["check", "--loss", "hinge"], "unknown loss"),
    (["check", "extra"], "unrecognized arguments: extra"),
    (["prove", "--write", "{tmp}/missing"], "no such directory"),
    (["prove", "--bogus"], "unrecognized arguments: --bogus"),
    # issue 11: conflicts are refused whether or not a value equals the default
    (["derive", "--depth", "4", "--widths", "2,3,1"], "not allowed with"),
    (["check", "--depth", "4", "--widths", "2,3,1"], "not allowed with"),
    (["latex", "--widths", "2,3,1", "--depth", "4"], "not allowed with"),
    # numbers and names are ASCII; Python's int() and float() would take these
    (["derive", "--depth", "４"], "non-ASCII character '４' (U+FF14)"),
    (["derive", "--depth", "1_0"], "not an integer"),
    (["derive", "--depth", "+"], "not an integer"),
    (["derive", "--depth", ""], "not an integer"),
    (["derive", "--depth", "9" * 40], "not an integer"),
    (["derive", "--wrt", "b１"], "non-ASCII character '１' (U+FF11)"),
    (["derive", "--wrt", "b1\x00"], "control character"),
    (["derive", "--wrt", "b" * 5000], "5000 characters long"),
    (["derive", "--wrt", " "], "unknown parameter"),
    (["derive", "--loss", "quadrätic"], "non-ASCII"),
    (["derive", "--loss", ""], "unknown loss"),
    (["derive", "--widths", "2,３,1"], "non-ASCII"),
    (["derive", "--widths", ""], "comma-separated"),
    (["derive", "--widths", "2,,1"], "comma-separated"),
    (["derive", "--widths", "2,3,1,"], "comma-separated"),
    (["derive", "--widths", "2,1e3"], "comma-separated"),
    (["derive", "--widths", "2,200000,1"], "exceeds the maximum width"),
    (["derive", "--activation", ""], "empty"),
    (["derive", "--activation", "σ(z)"], "σ"),
    (["derive", "--activation", "z" * 100000], "unknown activation"),
    (["latex", "--activation", "tanh & co"], "'&'"),
    # --verify composes the network: the documented limit holds, and so does the budget's range
    (["derive", "--depth", "65", "--verify"], "works up to depth 64"),
    (["derive", "--widths", ",".join(["1"] * 66), "--verify"], "works up to depth 64"),
    (["derive", "--verify", "--seconds", "0"], "time budget in seconds"),
    (["derive", "--verify", "--seconds", "-1"], "time budget in seconds"),
    (["derive", "--verify", "--seconds", "1e9"], "time budget in seconds"),
    (["derive", "--verify", "--seconds", "86400.5"], "time budget in seconds"),
    (["derive", "--seconds", "nan"], "not a finite number"),
    (["derive", "--seconds", "1e400"], "overflows float64"),
    # outputs go to regular files or to stdout, and nothing else
    (["latex", "-o", "-", "--pdf"], "--pdf needs -o FILE.tex"),
    (["latex", "-o", "-", "--force"], "--force only applies"),
    (["latex", "--force"], "--force only applies"),
    (["latex", "-o", ""], "give a file name"),
    (["latex", "-o", "."], "give a file name"),
    (["latex", "-o", "{tmp}/"], "give a file name"),
    (["latex", "-o", "{tmp}/a\nb.tex"], "give a file name"),
    (["latex", "-o", "{tmp}/out.PDF"], "give the .tex path"),
    (["latex", "-o", "{tmp}/pipe.tex"], "it is a FIFO"),
    (["latex", "-o", "{tmp}/pipe.tex", "--force"], "it is a FIFO"),
    (["latex", "-o", "{tmp}/link.tex", "--force"], "it is a symbolic link"),
    (["latex", "-o", "/dev/null"], "it is a character device"),
    (["latex", "-o", "{tmp}/foreign.tex/x.tex"], "does not exist"),
    # magnitudes and budgets
    (["bounds", "--weight-scale", "１"], "non-ASCII"),
    (["bounds", "--weight-scale", "1_0"], "not a number"),
    (["bounds", "--weight-scale", "0x10"], "not a number"),
    (["bounds", "--weight-scale", ""], "not a number"),
    (["bounds", "--weight-scale", "1e400"], ">= 0"),
    (["bounds", "--weight-scale=-1e-300"], ">= 0"),
    (["bounds", "--weight-scale=-inf"], ">= 0"),
    (["bounds", "--weight-scale", "-1e-300"], "goes after '='"),
    (["bounds", "--depth", "٣"], "non-ASCII"),
    (["check", "--init", "constant", "--value", "1e999"], "not a finite number"),
    (["check", "--init", "constant", "--value", "inf"], "not a finite number"),
    (["check", "--init", "constant", "--value", "０.5"], "non-ASCII"),
    (["check", "--seed", "1e3"], "not an integer"),
    (["check", "--seed", "٣"], "non-ASCII"),
    (["check", "--batch", "８"], "non-ASCII"),
    (["check", "--init", ""], "unknown init"),
    (["check", "--widths", "100000,100000,1", "--batch", "1"], "memory"),
]
BAD_EXPRESSIONS = [
    (["derive", "--activation", "__import__('os').system('true')"], ""),
    (["derive", "--activation", "z +"], ""),
    (["derive", "--activation", "y*z"], ""),
    (["bounds", "--activation", "z**"], ""),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a) or "<none>" for a, _ in BAD])
def test_bad_input_exits_2_with_one_line_naming_the_problem(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)  # a stray relative output lands here, not in the repository
    (tmp_path / "foreign.tex").write_text("not symgrad's\n")
    os.mkfifo(tmp_path / "pipe.tex")
    (tmp_path / "link.tex").symlink_to(tmp_path / "foreign.tex")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("symgrad: error:") and message in lines[0], lines[0]
    assert len(lines[0]) <= cli.MAX_MESSAGE + 100  # readable, even for a 100,000-character argument
    assert "Traceback" not in err
    assert (tmp_path / "foreign.tex").read_text() == "not symgrad's\n"
    assert sorted(os.listdir(tmp_path)) == ["foreign.tex", "link.tex", "pipe.tex"]  # nothing written


@needs_parser
@pytest.mark.parametrize("argv, message", BAD_EXPRESSIONS, ids=[" ".join(a) for a, _ in BAD_EXPRESSIONS])
def test_bad_activation_strings_exit_2(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unwritable_directory_exits_2(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("running as root: permissions do not stop writes")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, _, err = run(capsys, "latex", "-o", str(ro / "g.tex"))
    finally:
        ro.chmod(0o700)
    assert code == 2 and "not writable" in err


# --- atomic writes and progress -----------------------------------------------------------------


def test_write_atomic_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "x.tex"
    write_atomic(path, MARKER + "\none\n")
    write_atomic(path, MARKER + "\ntwo\n")
    assert path.read_text().endswith("two\n") and os.listdir(tmp_path) == ["x.tex"]


def test_write_atomic_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "x.tex"
    write_atomic(path, MARKER + "\nold\n")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(symgrad.InvalidArgument, match="No space left"):
        write_atomic(path, MARKER + "\nnew\n")
    assert path.read_text().endswith("old\n") and os.listdir(tmp_path) == ["x.tex"]


def test_progress_is_reported_on_stderr_for_slow_steps(capsys, monkeypatch):
    import time

    monkeypatch.setattr(cli, "PROGRESS_AFTER_S", 0.01)
    with cli._progress("thinking"):
        time.sleep(0.1)
    out, err = capsys.readouterr()
    assert out == "" and "symgrad: thinking ..." in err and "done" in err


def test_progress_is_silent_for_quick_steps(capsys):
    with cli._progress("quick"):
        pass
    assert capsys.readouterr().err == ""


def test_write_atomic_keeps_the_umask_and_gives_plain_open_permissions(tmp_path, monkeypatch):
    old = os.umask(0o027)
    try:
        def no_umask(mask):  # the writer must not touch the process-wide umask
            raise AssertionError("os.umask(%o) called while writing" % mask)

        monkeypatch.setattr(os, "umask", no_umask)
        path = write_atomic(tmp_path / "x.tex", MARKER + "\n")
        monkeypatch.undo()
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o640


@pytest.mark.parametrize("kind", ["fifo", "symlink", "device"])
def test_write_atomic_refuses_non_regular_destinations_at_once(tmp_path, monkeypatch, kind):
    def no_replace(src, dst):  # should the check ever break, /dev/null must survive this test
        raise AssertionError("os.replace(%s, %s) reached" % (src, dst))

    monkeypatch.setattr(os, "replace", no_replace)
    target = tmp_path / "f.tex"
    if kind == "fifo":
        os.mkfifo(target)  # opening it to look for the marker would block forever
        expected = "FIFO"
    elif kind == "symlink":
        (tmp_path / "real.tex").write_text(MARKER + "\n")
        target.symlink_to(tmp_path / "real.tex")
        expected = "symbolic link"
    else:
        target = "/dev/null"
        expected = "character device"
    with pytest.raises(symgrad.InvalidArgument, match=expected):
        write_atomic(target, MARKER + "\n", force=kind != "device")
    assert kind == "symlink" or not is_symgrad_file(target)  # answered without reading the FIFO


def test_write_all_atomic_checks_every_target_before_writing_any(tmp_path):
    from symgrad._io import write_all_atomic

    (tmp_path / "c.tex").write_text("a foreign file\n")
    items = [(tmp_path / n, MARKER + "\n" + n) for n in ("a.tex", "b.tex", "c.tex")]
    with pytest.raises(symgrad.InvalidArgument, match="refusing to overwrite .*c.tex"):
        write_all_atomic(items)
    assert sorted(os.listdir(tmp_path)) == ["c.tex"]
    assert [p.name for p in write_all_atomic(items, force=True)] == ["a.tex", "b.tex", "c.tex"]
    assert all(is_symgrad_file(tmp_path / n) for n in ("a.tex", "b.tex", "c.tex"))
    with pytest.raises(symgrad.InvalidArgument, match="twice"):
        write_all_atomic([(tmp_path / "a.tex", "x"), (tmp_path / "." / "a.tex", "y")])


def test_write_all_atomic_failure_midway_replaces_nothing(tmp_path, monkeypatch):
    from symgrad import _io

    _io.write_all_atomic([(tmp_path / "a.tex", MARKER + "\nold a"), (tmp_path / "b.tex", MARKER + "\nold b")])
    real, calls = os.fsync, []

    def fsync_fails_second_time(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync_fails_second_time)
    with pytest.raises(symgrad.InvalidArgument, match="b.tex: No space left"):
        _io.write_all_atomic([(tmp_path / "a.tex", MARKER + "\nnew a"), (tmp_path / "b.tex", MARKER + "\nnew b")])
    assert sorted(os.listdir(tmp_path)) == ["a.tex", "b.tex"]
    assert (tmp_path / "a.tex").read_text().endswith("old a") and (tmp_path / "b.tex").read_text().endswith("old b")


def test_write_atomic_restores_the_sigterm_handler(tmp_path):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    write_atomic(tmp_path / "x.tex", MARKER + "\n")
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_during_a_write_removes_the_temporary_and_ends_the_process(tmp_path):
    import signal
    import subprocess
    import sys

    script = (
        "import os, sys, time\n"
        "from symgrad._io import write_atomic, MARKER\n"
        "def slow(fd):\n"
        "    print('ready', flush=True); time.sleep(60)\n"
        "os.fsync = slow\n"
        "write_atomic(sys.argv[1], MARKER + '\\nnew\\n')\n"
        "print('finished', flush=True)\n")
    target = tmp_path / "x.tex"
    target.write_text(MARKER + "\nold\n")
    with subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout.readline().strip() == "ready"
            assert any(n.endswith(".tmp") for n in os.listdir(tmp_path))  # mid-write: the temporary exists
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == -signal.SIGTERM
        finally:
            proc.kill()
    assert os.listdir(tmp_path) == ["x.tex"] and target.read_text().endswith("old\n")


def test_the_next_write_removes_temporaries_left_by_a_killed_writer(tmp_path):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / (".x.tex.symgrad-%d-0123456789abcdef.tmp" % dead.pid)   # what SIGKILL leaves
    live = tmp_path / (".x.tex.symgrad-%d-0123456789abcdef.tmp" % os.getpid())  # a write in progress
    foreign = tmp_path / ".x.tex.abcd1234.tmp"                                    # not symgrad's pattern
    for p in (stale, live, foreign):
        p.write_text("partial")
    write_atomic(tmp_path / "x.tex", MARKER + "\n")
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, foreign.name, "x.tex"])


# --- issue 11: derive --verify up to the compose limit, unknown and mismatch exit codes ----------


def test_derive_verify_at_depth_37_is_an_exact_match(capsys):
    code, out, err = run(capsys, "derive", "--depth", "37", "--wrt", "b1", "--verify")  # was a RecursionError
    assert code == 0, err
    assert "verified against sympy.diff of the composed loss: exact match (" in out


def test_derive_verify_that_runs_out_of_budget_prints_unknown_and_exits_3(capsys):
    code, out, err = run(capsys, "derive", "--depth", "40", "--activation", "silu", "--verify", "--seconds", "0.3")
    assert code == cli.EXIT_UNKNOWN == 3
    assert "verified against sympy.diff of the composed loss: unknown (" in out and "budget of 0.3 s" in out
    assert "Traceback" not in err


def test_derive_verify_mismatch_exits_1(capsys, monkeypatch):
    import symgrad.symbolic.verify

    real = symgrad.symbolic.verify._references
    monkeypatch.setattr(symgrad.symbolic.verify, "_references", lambda net, g: [2 * r for r in real(net, g)])  # a wrong reference
    code, out, _ = run(capsys, "derive", "--depth", "3", "--verify")
    assert code == 1 and "MISMATCH (at a random rational point" in out


def test_derive_printing_runs_under_the_budget(capsys):
    import gc

    # The budget's SIGALRM must not land in a garbage-collector callback (Hypothesis installs one
    # once its tests have run), where Python ignores exceptions: see symgrad/_budget.py.
    enabled = gc.isenabled()
    gc.disable()
    try:
        code, out, err = run(capsys, "derive", "--depth", "20000", "--seconds", "0.05")
    finally:
        if enabled:
            gc.enable()
    assert code == 3 and out == ""
    assert err.strip().splitlines()[-1] == "symgrad: unknown: deriving and printing dC/db1 ran past its budget of 0.05 s"


def test_memory_error_anywhere_is_exit_2_with_one_line(capsys, monkeypatch):
    import symgrad.numeric

    def no_memory(*a, **k):
        raise MemoryError()

    monkeypatch.setattr(symgrad.numeric, "sample", no_memory)
    code, out, err = run(capsys, "check", "--depth", "2")
    assert code == 2 and err.strip().splitlines() == ["symgrad: error: out of memory; ask for less (a smaller --batch, --widths or --depth)"]


# --- issue 11: bounds in log space ----------------------------------------------------------------


def _mantissa_exponent(text):
    m, e = text.split("e")
    return float(m), int(e)


@pytest.mark.parametrize("scale, depth, act", [("100", "300", "sigmoid"), ("8", "2000", "sigmoid"), ("1e308", "1000000", "tanh"),
                                               ("0.001", "100000", "sigmoid")])
def test_bounds_compounded_factor_is_computed_in_log_space(capsys, scale, depth, act):
    import json

    import mpmath

    sup = {"sigmoid": mpmath.mpf(1) / 4, "tanh": mpmath.mpf(1)}[act]
    exact = int(depth) * mpmath.log10(mpmath.mpf(scale) * sup)  # reference in 30-digit arithmetic
    with mpmath.workdps(30):
        mant = float(mpmath.mpf(10) ** (exact - mpmath.floor(exact)))
    code, out, err = run(capsys, "bounds", "--activation", act, "--weight-scale", scale, "--depth", depth)
    assert code == 0 and "Traceback" not in err
    line = [l for l in out.splitlines() if "bound factor" in l][0]
    m, e = _mantissa_exponent(line.split()[-1])
    assert e == int(mpmath.floor(exact)) and abs(m - mant) <= 5e-4 * mant, (line, exact)
    code, out, _ = run(capsys, "bounds", "--activation", act, "--weight-scale", scale, "--depth", depth, "--json")
    facts = json.loads(out, parse_constant=lambda c: pytest.fail("non-JSON constant %s" % c))
    assert code == 0 and abs(facts["log10_factor_over_depth"] - float(exact)) <= 1e-9 * abs(float(exact))
    assert _mantissa_exponent(facts["factor_over_depth"])[1] == e


def test_bounds_plain_numbers_where_float64_holds_them(capsys):
    code, out, _ = run(capsys, "bounds", "--weight-scale", "1", "--depth", "10")
    assert code == 0 and "bound factor 9.537e-07" in out and "= 0.25" in out


def test_bounds_zero_weight_scale_is_a_zero_factor(capsys):
    import json

    code, out, _ = run(capsys, "bounds", "--weight-scale", "0", "--json")
    facts = json.loads(out)
    assert code == 0 and facts["factor_over_depth"] == "0" and facts["log10_factor_over_depth"] is None and facts["regime"] == "vanishing"


@needs_parser
def test_bounds_unbounded_derivative_says_so_in_text_and_json(capsys):
    import json

    code, out, _ = run(capsys, "bounds", "--activation", "z**2")
    assert code == 0 and "regime          unbounded: |phi'| has no finite sup" in out and "inf" not in out
    code, out, _ = run(capsys, "bounds", "--activation", "z**2", "--json")
    facts = json.loads(out, parse_constant=lambda c: pytest.fail("non-JSON constant %s" % c))
    assert facts["regime"] == "unbounded" and facts["per_layer_factor"] is None


@needs_parser
def test_bounds_sup_out_of_budget_is_unknown_with_the_reason_promptly(capsys, monkeypatch):
    import json

    import symgrad.spec.activations

    monkeypatch.setattr(symgrad.spec.activations, "BOUND_SECONDS", 0.2)  # SymPy needs more for this φ'
    code, out, _ = run(capsys, "bounds", "--activation", "sin(z)*exp(z)")
    assert code == 0
    assert "sup |phi'|      unknown (SymPy's maximum and minimum of φ' ran past its budget of 0.2 s" in out
    assert "regime          unknown" in out
    code, out, _ = run(capsys, "bounds", "--activation", "sin(z)*exp(z)", "--json")
    facts = json.loads(out)
    assert facts["regime"] == "unknown" and facts["sup_abs_phi_prime"] is None and "budget" in facts["note"]


# --- issue 11: outputs go to regular files or stdout -----------------------------------------------


def test_latex_dash_means_stdout_and_writes_no_file(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "latex", "--depth", "2", "-o", "-")
    assert code == 0 and out.startswith(MARKER) and os.listdir(tmp_path) == []


def test_latex_to_a_fifo_returns_at_once(tmp_path):
    import subprocess
    import sys

    os.mkfifo(tmp_path / "f.tex")
    proc = subprocess.run([sys.executable, "-m", "symgrad", "latex", "-o", str(tmp_path / "f.tex")],
                          capture_output=True, text=True, timeout=60)  # used to block forever
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "FIFO" in proc.stderr


def test_derive_budget_accepts_its_bounds(capsys):
    for seconds in ("86400", "1e-3"):  # the largest budget, and a tiny one (then: unknown, exit 3)
        code, out, err = run(capsys, "derive", "--depth", "2", "--verify", "--seconds", seconds)
        assert code in (0, 3) and "Traceback" not in err
        assert code == 0 or "budget of 0.001 s" in out + err
    assert run(capsys, "derive", "--depth", "2", "--verify", "--seconds", "86400")[0] == 0


def test_check_switches_to_directional_differences_when_every_entry_would_be_too_many(capsys, monkeypatch):
    """Differencing every entry costs 8 passes per entry: past FAST_ABOVE layer evaluations the
    check differences along random directions and says so; --fast asks for it directly."""
    code, out, _ = run(capsys, "check", "--depth", "4", "--batch", "2")
    assert code == 0 and "finite differences entry by entry" in out
    monkeypatch.setattr(cli, "FAST_ABOVE", 100.0)  # 8 entries × 4 layers × 2 samples × 8 = 512 > 100
    code, out, _ = run(capsys, "check", "--depth", "4", "--batch", "2")
    assert code == 0 and "along 4 random directions (fast mode: every entry would take 5.1e+02 layer evaluations" in out
    monkeypatch.setattr(cli, "FAST_ABOVE", 1e12)
    code, out, _ = run(capsys, "check", "--depth", "4", "--batch", "2", "--fast")
    assert code == 0 and "along 4 random directions (fast mode)" in out and "all 8 parameter(s) pass" in out


def test_check_reports_a_wrong_closed_form_in_one_call_for_every_parameter(capsys, monkeypatch):
    """The rows come from one check of every parameter; a closed form off in one parameter fails
    that row alone."""
    import symgrad.testing.gradcheck as gc

    real = gc.evaluate_gradients

    def wrong(gradients, inp, **kw):
        vals = real(gradients, inp, **kw)
        return [v * 1.001 if g.wrt == "w2" else v for g, v in zip(gradients, vals)]

    monkeypatch.setattr(gc, "evaluate_gradients", wrong)
    code, out, err = run(capsys, "check", "--depth", "3", "--batch", "2")
    assert code == 1
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line[:1] in "wb" and line.split()[-1] in ("PASS", "FAIL")}
    assert rows == {"w1": "PASS", "w2": "FAIL", "w3": "PASS", "b1": "PASS", "b2": "PASS", "b3": "PASS"}


@pytest.mark.parametrize("kind", ["fifo", "device", "no-block", "missing"])
def test_prove_readme_that_cannot_hold_the_table_is_refused_before_the_catalogue_runs(kind, tmp_path, capsys, monkeypatch):
    """A FIFO blocked the read forever after the whole catalogue had run; now every --readme
    target is checked first, and refused with one line."""
    from symgrad.proof import catalogue

    target = tmp_path / "README.md"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "device":
        target = "/dev/null"
    elif kind == "no-block":
        target.write_text("my own readme\n")
    monkeypatch.setattr(catalogue, "run", lambda **kw: pytest.fail("the catalogue ran before the README was checked"))
    code, out, err = run(capsys, "prove", "--no-crosscheck", "--readme", str(target))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    if kind == "no-block":
        assert target.read_text() == "my own readme\n"


@pytest.mark.parametrize("argv", [
    ["derive", "--depth", "4", "--depth", "5"],
    ["derive", "--wrt", "b1", "--wrt", "b2"],
    ["derive", "--depth=4", "--depth", "4"],
    ["latex", "--depth", "2", "-o", "a.tex", "-o", "b.tex"],
    ["latex", "--depth", "2", "-o", "frag.tex", "--pdf", "--fragment"],
])
def test_repeated_or_conflicting_options_are_refused(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and not out
    assert not list(tmp_path.iterdir())  # nothing written


# --- meanfield, and the typical case of bounds ----------------------------------------------------


def test_meanfield_relu_critical_prints_exact_values(capsys):
    code, out, err = run(capsys, "meanfield", "--activation", "relu", "--sigma-w2", "2", "--depth", "50")
    assert code == 0, err
    lines = dict(line.split(None, 1) for line in out.splitlines() if line and not line.startswith(("gradient", "critical")))
    assert lines["chi1"] == "1" and lines["phase"] == "critical" and lines["xi_grad"] == "∞ (critical)" and lines["q*"] == "1"
    assert "critical sigma_w2 at this sigma_b2  2" in out


def test_meanfield_quadrature_values_carry_their_error(capsys):
    code, out, _ = run(capsys, "meanfield", "--activation", "tanh", "--sigma-w2", "2.7777777777777777", "--depth", "50")
    assert code == 0
    chi = next(line for line in out.splitlines() if line.startswith("chi1"))
    assert chi.startswith("chi1            ≈ 1.2098313") and "± " in chi
    assert "phase           chaotic" in out and "critical sigma_w2 at this sigma_b2  1" in out


def test_meanfield_json_schema(capsys):
    import json

    code, out, _ = run(capsys, "meanfield", "--activation", "relu", "--sigma-w2", "1", "--sigma-b2", "1", "--depth", "10", "--json")
    facts = json.loads(out)
    assert code == 0
    assert {"q_star", "chi1", "xi_grad", "phase", "critical_sigma_w2", "predicted_ratio"} <= set(facts)
    assert facts["chi1"] == {"value": 0.5, "error": 0.0, "exact": "1/2", "text": "1/2"}
    assert facts["q_star"]["exact"] == "2" and facts["phase"] == "ordered"
    assert facts["xi_grad"]["exact"] == "1/log(2)" and facts["critical_sigma_w2"]["value"] == 2.0
    assert facts["predicted_ratio"]["exact"] == "1/512" and facts["predicted_ratio"]["value"] == 1 / 512


def test_meanfield_json_at_criticality_and_without_a_critical_point(capsys):
    import json

    code, out, _ = run(capsys, "meanfield", "--activation", "tanh", "--sigma-w2", "1", "--json")
    facts = json.loads(out)
    assert code == 0 and facts["xi_grad"]["value"] is None and facts["xi_grad"]["exact"] == "oo" and facts["phase"] == "critical"
    code, out, _ = run(capsys, "meanfield", "--activation", "softplus", "--sigma-w2", "0.5", "--sigma-b2", "0.3", "--json")
    facts = json.loads(out)
    assert code == 0 and facts["critical_sigma_w2"] is None and "no critical" in facts["critical_sigma_w2_note"]
    assert facts["chi1"]["exact"] is None and facts["chi1"]["error"] > 0


def test_meanfield_huge_ratio_is_printed_by_its_log10(capsys):
    code, out, _ = run(capsys, "meanfield", "--activation", "relu", "--sigma-w2", "1", "--depth", "5000")
    assert code == 0 and "chi1            1/2" in out


@pytest.mark.parametrize("argv, match", [
    (["meanfield", "--activation", "relu", "--sigma-w2", "3"], "no finite fixed point"),
    (["meanfield", "--sigma-w2=-1"], "must be a variance >= 0"),
    (["meanfield", "--sigma-w2", "1", "--sigma-b2", "inf"], "not a finite number"),
    (["meanfield", "--sigma-w2", "nan"], "not a finite number"),
    (["meanfield", "--sigma-w2", "1", "--depth", "0"], "positive depth"),
    (["meanfield", "--sigma-w2", "1", "--depth", "2.5"], "not an integer"),
    (["meanfield", "--activation", "exp(z**2)", "--sigma-w2", "1"], "Gaussian moments"),
    (["meanfield", "--activation", "nope", "--sigma-w2", "1"], "unknown activation"),
    (["meanfield"], "--sigma-w2"),
    (["meanfield", "--sigma-w2", "1", "--sigma-w2", "2"], "given twice"),
    (["meanfield", "--sigma-w2", "1", "--json", "--format", "latex"], "conflict"),
    (["meanfield", "--sigma-w2", "1", "-o", "x.tex"], "only --format latex"),
])
def test_meanfield_bad_input_exits_2_with_one_line(capsys, argv, match):
    code, out, err = run(capsys, *argv)
    assert code == 2 and match in err and err.count("\n") == 1 and "Traceback" not in err and out == ""


def test_meanfield_monte_carlo_unavailable_is_one_line(capsys, monkeypatch):
    import sys

    import symgrad.theory

    monkeypatch.setitem(sys.modules, "symgrad.theory.montecarlo", None)  # import fails
    # even where an earlier test imported it (looked up in the module's dict: getattr would make
    # the lazy loader import it)
    if "montecarlo" in vars(symgrad.theory):
        monkeypatch.delattr(symgrad.theory, "montecarlo")
    code, _, err = run(capsys, "meanfield", "--sigma-w2", "1", "--monte-carlo")
    assert code == 2 and "not available" in err and err.count("\n") == 1


def test_meanfield_monte_carlo_prints_the_check(capsys, monkeypatch):
    from types import SimpleNamespace

    try:
        from symgrad.theory import montecarlo
    except ImportError:
        pytest.skip("symgrad.theory.montecarlo NOT PRESENT yet")
    calls = []

    def fake(act, w2, b2, **kw):
        calls.append((act.name, w2, b2, kw))
        return SimpleNamespace(ok=False, width=500, depth=kw["depth"], batch=64, summary=lambda: "MC SUMMARY")

    monkeypatch.setattr(montecarlo, "check_wide_network", fake)
    code, out, _ = run(capsys, "meanfield", "--activation", "relu", "--sigma-w2", "1.5", "--depth", "7", "--monte-carlo")
    assert code == 1 and "MC SUMMARY" in out and calls == [("relu", 1.5, 0.0, {"depth": 7})]


def test_meanfield_latex_file_is_written_atomically_and_not_over_a_foreign_file(tmp_path, capsys):
    target = tmp_path / "mf.tex"
    code, _, err = run(capsys, "meanfield", "--activation", "relu", "--sigma-w2", "2", "--format", "latex", "-o", str(target))
    assert code == 0 and is_symgrad_file(target) and r"\chi_1" in target.read_text()
    assert run(capsys, "meanfield", "--sigma-w2", "1", "--format", "latex", "-o", str(target))[0] == 0  # its own: replaced
    foreign = tmp_path / "notes.tex"
    foreign.write_text("mine\n")
    code, _, err = run(capsys, "meanfield", "--sigma-w2", "1", "--format", "latex", "-o", str(foreign))
    assert code == 2 and foreign.read_text() == "mine\n"
    assert run(capsys, "meanfield", "--sigma-w2", "1", "--format", "latex", "-o", str(foreign), "--force")[0] == 0


def test_bounds_keeps_the_worst_case_lines_and_adds_the_typical_case(capsys):
    code, out, _ = run(capsys, "bounds", "--activation", "sigmoid", "--weight-scale", "1")
    lines = out.splitlines()
    assert code == 0 and lines[:9] == [
        "activation      sigmoid", "phi(z)          sigmoid(z)", "phi'(z)         (1 - sigmoid(z))*sigmoid(z)",
        "sup |phi'|      1/4", "attained at     {0}", "range of phi'   (0, 1/4]",
        "per-layer factor |w| * sup|phi'| = 1 * 1/4 = 0.25",
        "regime          vanishing: every layer multiplies the gradient bound by at most 0.25 < 1",
        "over 10 layers  bound factor 9.537e-07"]
    assert lines[9].startswith("typical case    w ~ N(0, 1^2), b ~ N(0, 1)")
    assert "two layers      e^(2 lambda) = 0.0" in out and "(worst case 0.0625)" in out  # Nielsen's 1/16


def test_bounds_json_typical_is_below_the_worst_case_and_agrees_with_growth_rate(capsys):
    import json
    import math

    from symgrad.theory.meanfield import growth_rate

    code, out, _ = run(capsys, "bounds", "--activation", "sigmoid", "--json")
    t = json.loads(out)["typical"]
    lo, hi = t["growth_rate_ci"]
    ref = growth_rate("sigmoid", (1.0, 1.0), samples=20000, layers=100, seed=5)
    # Two independent 99% intervals of the same λ overlap.
    assert code == 0 and lo <= ref.ci[1] and ref.ci[0] <= hi
    assert t["two_layer_factor"] < 1 / 16 and math.isclose(t["per_layer_factor"], math.exp(t["growth_rate"]))


def test_bounds_typical_case_at_zero_weight_scale(capsys):
    code, out, _ = run(capsys, "bounds", "--activation", "relu", "--weight-scale", "0")
    assert code == 0 and "typical case    none" in out
