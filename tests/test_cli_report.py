"""``symgrad report``: the gradient-flow report from the command line (text, JSON, LaTeX), with
weights and a batch from files that are never unpickled, and one-line refusals of bad input."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from symgrad import cli
from symgrad._io import is_symgrad_file


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_default_report_is_a_table_and_a_verdict(capsys):
    code, out, err = run(capsys, "report", "--widths", "8,16,16,16,2", "--activation", "sigmoid", "--batch", "32")
    assert code == 0, err
    assert out.startswith("gradient-flow report: Network(widths=[8, 16, 16, 16, 2]")
    assert "verdict: " in out and "criteria: " in out
    assert len([l for l in out.splitlines() if l.strip().startswith(("1 ", "2 ", "3 ", "4 "))]) == 4


def test_json_has_every_layer_and_the_verdict(capsys):
    code, out, _ = run(capsys, "report", "--widths", "4,8,3", "--activation", "relu", "--format", "json", "--seed", "3")
    assert code == 0
    d = json.loads(out)
    assert d["verdict"] in ("healthy", "vanishing", "exploding", "vanishing and exploding", "exploding and vanishing", "undetermined")
    assert [r["layer"] for r in d["layers"]] == [1, 2] and d["batch"] == 256


def test_weights_and_data_files_give_the_library_report(capsys, tmp_path):
    import symgrad

    rng = np.random.default_rng(0)
    W1, b1, W2, b2 = rng.normal(size=(5, 3)), rng.normal(size=5), rng.normal(size=(2, 5)), rng.normal(size=2)
    np.savez(tmp_path / "w.npz", **{"0.weight": W1, "0.bias": b1, "2.weight": W2, "2.bias": b2})
    x, y = rng.normal(size=(11, 3)), rng.uniform(size=(11, 2))
    np.savez(tmp_path / "d.npz", inputs=x, targets=y)
    code, out, err = run(capsys, "report", "--widths", "3,5,2", "--activation", "tanh", "--output-activation", "sigmoid",
                         "--weights", str(tmp_path / "w.npz"), "--data", str(tmp_path / "d.npz"), "--format", "json")
    assert code == 0, err
    net = symgrad.network([3, 5, 2], ["tanh", "sigmoid"])
    want = symgrad.report(net, {"W1": W1, "b1": b1, "W2": W2, "b2": b2}, inputs=x, targets=y)
    assert json.loads(out) == json.loads(want.to_json())


def test_latex_file_is_written_atomically_and_foreign_files_are_kept(capsys, tmp_path):
    target = tmp_path / "r.tex"
    code, _, err = run(capsys, "report", "--widths", "3,4,2", "--format", "latex", "-o", str(target))
    assert code == 0, err
    assert is_symgrad_file(target) and r"\begin{tabular}" in target.read_text()
    code, _, _ = run(capsys, "report", "--widths", "3,4,2", "--format", "latex", "-o", str(target))
    assert code == 0  # symgrad's own file may be replaced
    mine = tmp_path / "mine.tex"
    mine.write_text("my notes\n")
    code, _, err = run(capsys, "report", "--widths", "3,4,2", "--format", "latex", "-o", str(mine))
    assert code == 2 and mine.read_text() == "my notes\n" and "--force" in err
    code, _, _ = run(capsys, "report", "--widths", "3,4,2", "--format", "latex", "-o", str(mine), "--force")
    assert code == 0 and is_symgrad_file(mine)


class _Boom:
    def __reduce__(self):
        import os
        return (os.system, ("touch pwned",))


def _bad_files(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    truncated = tmp_path / "trunc.npz"
    np.savez(truncated, inputs=np.zeros((4, 3)), targets=np.zeros((4, 2)))
    truncated.write_bytes(truncated.read_bytes()[:60])
    pickled = tmp_path / "p.npz"
    pickled.write_bytes(pickle.dumps(_Boom()))
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((4, 3)))
    obj = tmp_path / "obj.npz"
    np.savez(obj, inputs=np.array([_Boom()], dtype=object), targets=np.zeros((1, 2)))
    return {"garbage": garbage, "truncated": truncated, "pickled": pickled, "wrong": wrong, "obj": obj}


@pytest.mark.parametrize("which, words", [("garbage", "not an .npz"), ("truncated", "npz"), ("pickled", "unpickl"),
                                          ("wrong", "'inputs'"), ("obj", "unpickl"), ("missing", "no such")])
def test_bad_data_files_are_refused_in_one_line(capsys, tmp_path, monkeypatch, which, words):
    monkeypatch.chdir(tmp_path)
    files = _bad_files(tmp_path)
    path = files.get(which, tmp_path / "missing.npz")
    code, out, err = run(capsys, "report", "--widths", "3,4,2", "--data", str(path))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and words in err, err
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("argv, words", [
    (["--widths", "3"], "at least two"),
    (["--widths", "3,0,2"], "positive"),
    (["--widths", "3,4,2", "--threshold", "1"], "above 1"),
    (["--widths", "3,4,2", "-o", "x.tex"], "--format latex"),
    (["--widths", "3,4,2", "--force"], "--force"),
    (["--widths", "3,4,2", "--activation", "softmax"], "softmax"),
])
def test_bad_options_exit_2_with_one_line(capsys, tmp_path, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "report", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and words in err, err


def test_batch_and_data_conflict(capsys, tmp_path):
    np.savez(tmp_path / "d.npz", inputs=np.zeros((4, 3)), targets=np.zeros((4, 2)))
    code, _, err = run(capsys, "report", "--widths", "3,4,2", "--data", str(tmp_path / "d.npz"), "--batch", "4")
    assert code == 2 and "conflict" in err


def test_widths_come_from_a_state_dict_file(capsys, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    torch.save(model.state_dict(), tmp_path / "m.pt")
    code, out, err = run(capsys, "report", "--weights", str(tmp_path / "m.pt"), "--activation", "relu",
                         "--output-activation", "identity", "--format", "json", "--batch", "9")
    assert code == 0, err
    d = json.loads(out)
    assert d["network"].startswith("Network(widths=[5, 7, 7, 3]") and d["batch"] == 9
    # The same numbers as the library on the module itself.
    import symgrad

    # the CLI draws x, then y, from one generator seeded with --seed (default 0)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((9, 5)), rng.uniform(size=(9, 3))
    want = symgrad.report(model.double(), inputs=x, targets=y)
    assert d["layers"] == json.loads(want.to_json())["layers"]


def test_residual_option(capsys):
    code, out, err = run(capsys, "report", "--widths", "6,6,6,6,2", "--activation", "tanh", "--residual", "0.5", "--format", "json")
    assert code == 0, err
    assert "residual=[1/2, 1/2, 1/2, None]" in json.loads(out)["network"]
    code, out, err = run(capsys, "report", "--widths", "6,6,6,2", "--residual", "none,-1.5,none", "--format", "json")
    assert code == 0, err
    assert "residual=[None, -3/2, None]" in json.loads(out)["network"]
    for bad, words in (("x", "not a number"), ("none,1", "entries"), ("nan", "finite")):
        code, out, err = run(capsys, "report", "--widths", "6,6,6,2", "--residual", bad)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch pwned",))


def test_hostile_truncated_and_mismatched_weight_files_exit_2(capsys, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    torch.save({"0.weight": _Evil()}, tmp_path / "evil.pt")
    good = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    torch.save(good.state_dict(), tmp_path / "good.pt")
    (tmp_path / "trunc.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:100])
    np.savez(tmp_path / "nan.npz", W1=np.full((4, 3), np.nan), b1=np.zeros(4), W2=np.zeros((2, 4)), b2=np.zeros(2))
    cases = [("evil.pt", []), ("trunc.pt", []), ("good.pt", ["--widths", "3,5,2"]), ("nan.npz", ["--widths", "3,4,2"]),
             ("missing.pt", [])]
    for name, extra in cases:
        code, out, err = run(capsys, "report", "--weights", str(tmp_path / name), *extra)
        assert code == 2 and out == "", (name, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (name, err)
        assert name in err or "missing" in name, (name, err)
    assert not (tmp_path / "pwned").exists()
