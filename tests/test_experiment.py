"""Nielsen's speed-of-learning experiment (symgrad.experiments.speed, `symgrad experiment`).

Tiny runs only (1 epoch, small evaluation batches): the suite's budget is tight.  The speed of
learning is checked against PyTorch autograd (an independent oracle) on the same parameters and
batch, plain and residual; the SGD step against the update written out by hand.
"""

import json
import math
import sys

import numpy as np
import pytest

from symgrad.cli import main
from symgrad.errors import InvalidArgument
from symgrad.experiments import speed
from symgrad.symbolic.build import network

torch = pytest.importorskip("torch")


def _torch_bias_norms(widths, params, x, y, activation="sigmoid", residual=None):
    """‖∂C/∂b^l‖ of the mean cross-entropy over (x, y), by autograd in float64."""
    L = len(widths) - 1
    P = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    a = torch.tensor(x)
    act = torch.sigmoid if activation == "sigmoid" else torch.relu
    for l in range(1, L + 1):
        z = a @ P["W%d" % l].T + P["b%d" % l]
        alpha = None if residual is None else residual[l - 1]
        if l == L:
            a = torch.sigmoid(z)
        elif alpha is None:
            a = act(z)
        else:
            a = a + alpha * act(z)
    yt = torch.tensor(y)
    cost = -(yt * torch.log(a) + (1 - yt) * torch.log(1 - a)).sum(dim=1).mean()
    cost.backward()
    return np.array([float(torch.linalg.norm(P["b%d" % l].grad)) for l in range(1, L)])


# Error analysis for the comparison: both sides sum B·n products of O(1) terms in float64, so
# each gradient entry carries a relative error of at most γ_{B+n} ≈ (B + n)·2^-53 (Higham §3.1)
# of the sum of magnitudes, times the depth's L products; with B = 200, n ≤ 64, L ≤ 5 that is
# ≈ 1.5e-13.  Cancellation can make the sum of magnitudes larger than the sum: allow 1e3×.
RTOL = 1e3 * 5 * (200 + 64) * 2.0 ** -53


@pytest.mark.parametrize("activation,init,alpha", [("sigmoid", "nielsen", None), ("relu", "he", None), ("sigmoid", "nielsen", 1.0),
                                                   ("relu", "he", 0.5)])
def test_bias_norms_agree_with_autograd(activation, init, alpha):
    widths = (64, 30, 30, 30, 10)
    xtr, ytr, _, _ = speed.load_digits_split(0)
    x, y = xtr[:200], ytr[:200]
    res = speed._residual_layers(widths, alpha)
    net = network(list(widths), [activation] * 3 + ["sigmoid"], "cross_entropy", residual=list(res) if alpha is not None else None)
    params = speed._init_params(widths, init, np.random.default_rng(3))
    got = speed._bias_norms(net, params, x, y)
    want = _torch_bias_norms(widths, params, x, y, activation, res if alpha is not None else None)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)


def test_residual_layers_are_the_hidden_layers_of_equal_width_after_the_first():
    assert speed._residual_layers((64, 30, 30, 30, 30, 10), 1.0) == (None, 1.0, 1.0, 1.0, None)
    assert speed._residual_layers((64, 30, 20, 20, 10), 0.5) == (None, None, 0.5, None)
    assert speed._residual_layers((64, 30, 10), 1.0) == (None, None)
    assert speed._residual_layers((64, 64, 64, 10), 1.0) == (None, 1.0, None)  # never the first layer
    assert speed._residual_layers((64, 30, 30, 10), None) == (None, None, None)


def test_init_scales():
    p = speed._init_params((64, 30, 10), "nielsen", np.random.default_rng(0))
    h = speed._init_params((64, 30, 10), "he", np.random.default_rng(0))
    # Same draws: He's weights are √2 times Nielsen's, and its biases are 0.
    np.testing.assert_allclose(h["W1"], math.sqrt(2) * p["W1"], rtol=1e-15)
    assert not h["b1"].any() and p["b1"].std() > 0.5


def test_one_epoch_of_sgd_is_the_update_written_out():
    """One epoch of mini-batch SGD equals p ← p − (η/m) Σ ∂C_x/∂p over the seed's shuffle, batch by batch."""
    widths, eta, m, seed = (64, 30, 10), 0.5, 50, 4
    xtr, ytr, xte, yte = speed.load_digits_split(seed, 1697)  # 100 training images: two batches
    net = network(list(widths), ["sigmoid", "sigmoid"], "cross_entropy")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=widths))
    p = speed._init_params(widths, "nielsen", rng)
    order = rng.permutation(len(xtr))
    for k in (0, m):
        idx = order[k:k + m]
        gs = [speed._grads(net, p, xtr[[i]], ytr[[i]]) for i in idx]  # per image
        p = {n: p[n] - eta / m * sum(g[n] for g in gs) for n in p}
    want = speed._bias_norms(net, p, xtr[:50], ytr[:50])
    r = speed.speed_of_learning([widths], epochs=1, eta=eta, batch_size=m, eval_size=50, seed=seed, test_size=1697)
    # The batch's summed gradient and the sum of per-image ones differ by rounding only (γ_m, m = 50:
    # 6e-15 relative), carried through two steps and the norm's pass: 1e-10 leaves a wide margin.
    np.testing.assert_allclose(r.runs[0].norms[1], want, rtol=1e-10)


@pytest.fixture(scope="module")
def tiny():
    return speed.speed_of_learning([[64, 30, 10], [64, 30, 30, 30, 10]], epochs=1, eval_size=200, seed=0)


def test_tiny_run_shapes_and_reproducibility(tiny):
    assert [r.norms.shape for r in tiny.runs] == [(2, 1), (2, 3)]
    assert all(np.isfinite(r.norms).all() and (r.norms > 0).all() for r in tiny.runs)
    again = speed.speed_of_learning([[64, 30, 30, 30, 10]], epochs=1, eval_size=200, seed=0)
    # A network's numbers do not depend on which networks ran beside it.
    np.testing.assert_array_equal(again.runs[0].norms, tiny.runs[1].norms)
    np.testing.assert_array_equal(again.runs[0].accuracy, tiny.runs[1].accuracy)
    other = speed.speed_of_learning([[64, 30, 30, 30, 10]], epochs=1, eval_size=200, seed=1)
    assert not np.array_equal(other.runs[0].norms, tiny.runs[1].norms)


def test_nielsens_pattern_at_initialisation(tiny):
    """Sigmoid, N(0, 1/n_in) weights, N(0, 1) biases: the first hidden layer is the slowest, by
    more than 10× in [64, 30, 30, 30, 10] (Nielsen's MNIST: 0.012 against 0.283, 24×)."""
    r = tiny.runs[1]
    assert r.order(0) == "1 < 2 < 3"
    assert r.ratio(0) < 0.1
    # A network with one hidden layer trains in one epoch: better than chance (10%) by far.
    assert tiny.runs[0].accuracy[1] > 0.25 > tiny.runs[0].accuracy[0]


def test_relu_and_residual_change_the_pattern(tiny):
    relu = speed.speed_of_learning([[64, 30, 30, 30, 10]], activation="relu", init="he", epochs=0, eval_size=200)
    res = speed.speed_of_learning([[64, 30, 30, 30, 10]], residual=1.0, epochs=0, eval_size=200)
    assert relu.init == "he" and res.runs[0].residual == (None, 1.0, 1.0, None)
    sig = tiny.runs[1].ratio(0)
    # He-initialised ReLU and the skip connections keep the first layer within a few times the last.
    assert relu.runs[0].ratio(0) > 5 * sig and 0.2 < relu.runs[0].ratio(0) < 5
    assert res.runs[0].ratio(0) > 5 * sig and 0.2 < res.runs[0].ratio(0) < 5


def test_table_and_json(tiny):
    t = tiny.table()
    assert "[64,30,30,30,10]" in t and "Nielsen, MNIST [784,30,30,30,10]" in t and "0.283" in t
    assert "1 < 2 < 3" in t
    d = json.loads(json.dumps(tiny.as_dict()))
    assert d["nielsen_mnist"]["init_norms"] == [0.012, 0.060, 0.283]
    assert d["runs"][1]["norms"] == tiny.runs[1].norms.tolist()
    assert tiny.figure_norms() == {1: tiny.runs[1].norms[:, 0].tolist(), 2: tiny.runs[1].norms[:, 1].tolist(),
                                   3: tiny.runs[1].norms[:, 2].tolist()}


@pytest.mark.parametrize("kwargs,needle", [
    ({"networks": []}, "networks"),
    ({"networks": [[784, 30, 10]]}, "64 inputs"),
    ({"networks": [[64, 10]]}, "at least 3"),
    ({"networks": [[64, 0, 10]]}, "positive ints"),
    ({"networks": "64,30,10"}, "networks"),
    ({"epochs": -1}, "epochs"),
    ({"epochs": 1.5}, "epochs"),
    ({"eta": 0.0}, "eta"),
    ({"eta": math.nan}, "eta"),
    ({"batch_size": 0}, "batch_size"),
    ({"eval_size": 5000}, "eval_size"),
    ({"seed": -1}, "seed"),
    ({"init": "xavier"}, "init"),
    ({"residual": math.inf}, "residual"),
    ({"residual": "1"}, "residual"),
    ({"test_size": 0}, "test_size"),
])
def test_bad_arguments(kwargs, needle):
    with pytest.raises(InvalidArgument, match=needle):
        speed.speed_of_learning(**{"networks": [[64, 30, 10]], "epochs": 0, "eval_size": 10, **kwargs})


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(InvalidArgument, match=r"pip install 'symgrad\[experiment\]'"):
        speed.load_digits_split(0)


def test_cli_json_and_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from symgrad.render import plots

    out = tmp_path / "speed.png"
    argv = ["experiment", "speed-of-learning", "--epochs", "1", "--networks", "64,30,10/64,30,30,10", "--eval-size", "100",
            "--json", "-o", str(out)]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert [r["widths"] for r in d["runs"]] == [[64, 30, 10], [64, 30, 30, 10]]
    assert out.read_bytes().startswith(b"\x89PNG")
    # The figure plots the deepest network's norms (read back from the figure's lines).
    res = speed.speed_of_learning([[64, 30, 30, 10]], epochs=1, eval_size=100)
    assert d["runs"][1]["norms"] == res.runs[0].norms.tolist()
    fig = plots.speed_of_learning_figure(res.figure_norms(), title=res.figure_title())
    lines = fig.axes[0].lines
    np.testing.assert_array_equal(lines[0].get_ydata(), res.runs[0].norms[:, 0])
    # Same seed, same table.
    assert main(argv[:-2] + ["--seed", "0"]) == 0
    again = json.loads(capsys.readouterr().out)
    for r in again["runs"] + d["runs"]:
        r.pop("seconds")  # wall-clock time: the one field that is not reproducible
    assert again == d


def test_cli_refuses_a_figure_over_a_file_it_did_not_write_before_training(tmp_path, capsys, monkeypatch):
    f = tmp_path / "mine.png"
    f.write_bytes(b"not symgrad's")
    monkeypatch.setattr(speed, "speed_of_learning", lambda *a, **k: pytest.fail("trained before checking -o"))
    assert main(["experiment", "speed-of-learning", "-o", str(f)]) == 2
    assert "--force" in capsys.readouterr().err and f.read_bytes() == b"not symgrad's"


@pytest.mark.parametrize("argv,needle", [
    (["experiment", "nope"], "invalid choice"),
    (["experiment", "speed-of-learning", "-o", "table.txt"], "FILE.png"),
    (["experiment", "speed-of-learning", "-o", "/no/such/dir/f.png"], "directory does not exist"),
    (["experiment", "speed-of-learning", "--epochs", "-1"], "epochs"),
    (["experiment", "speed-of-learning", "--networks", "64,30,x"], "widths"),
    (["experiment", "speed-of-learning", "--networks", "64,30,10", "--residual", "nan"], "finite"),
])
def test_cli_bad_input_exit_2_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
