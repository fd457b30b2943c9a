"""Sweeps of Monte-Carlo checks on Dask (symgrad.sweep, `symgrad sweep`): the local cluster of 2
workers against the single-process path, resuming from a partial file, seeds per point, and bad
input (grids, outputs, schedulers, a missing dask)."""

import socket
import sys
import time

import pytest

from symgrad import sweep
from symgrad.cli import main
from symgrad.errors import InvalidArgument

SMALL = dict(width=40, batch=4, repeats=3)


def _points():
    return sweep.grid(["tanh", "relu"], [0.5, 1.5], [0.0, 0.1], [3], **SMALL)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "single.csv"
    rows = sweep.run_sweep(_points(), path, seed=7, workers=0)
    return path, rows


def test_single_process_table(reference):
    path, rows = reference
    assert [r["key"] for r in rows] == [p.key for p in _points()]
    assert all(r["error"] == "" and r["ok"] in ("True", "False") for r in rows)
    assert sweep.read_rows(path) == {r["key"]: r for r in rows}
    assert path.read_text().splitlines()[0] == ",".join(sweep.COLUMNS)
    # run_points (no file) gives the same rows.
    assert sweep.run_points(_points(), seed=7) == rows


@pytest.mark.slow
def test_local_cluster_of_two_workers_equals_single_process(reference, tmp_path):
    pytest.importorskip("distributed")
    path, rows = reference
    out = tmp_path / "dask.csv"
    got = sweep.run_sweep(_points(), out, seed=7, workers=2)
    assert got == rows
    assert out.read_bytes() == path.read_bytes()


def test_seed_of_a_point_depends_on_the_point_only():
    pts = _points()
    one = sweep.run_points([pts[3]], seed=7)[0]
    assert one == sweep.run_points(pts, seed=7)[3]
    assert sweep.run_points([pts[3]], seed=8)[0]["seed"] != one["seed"]
    # A different width is a different point, with its own seed.
    other = sweep.grid(["relu"], [0.5], [0.1], [3], width=41, batch=4, repeats=3)[0]
    assert sweep.point_seed(7, other) != int(one["seed"])


def test_resume_skips_finished_points_and_drops_a_partial_line(reference, tmp_path, monkeypatch):
    path, rows = reference
    lines = path.read_text().splitlines(keepends=True)
    partial = tmp_path / "resume.csv"
    # Header, two finished rows, and half of the third (an append cut short).
    partial.write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])
    calls = []
    real = sweep._evaluate
    monkeypatch.setattr(sweep, "_evaluate", lambda p, seed: calls.append(p.key) or real(p, seed))
    got = sweep.run_sweep(_points(), partial, seed=7, workers=0)
    assert got == rows
    assert calls == [p.key for p in _points()[2:]]
    assert partial.read_bytes() == path.read_bytes()
    # Everything done: a rerun computes nothing.
    calls.clear()
    assert sweep.run_sweep(_points(), partial, seed=7, workers=0) == rows and calls == []


def test_a_resume_interrupted_again_leaves_whole_lines(reference, tmp_path, monkeypatch):
    """The partial line is cut off before appending, so a second interruption leaves a table
    of whole rows (not the new row glued to the old fragment)."""
    path, rows = reference
    lines = path.read_text().splitlines(keepends=True)
    partial = tmp_path / "twice.csv"
    partial.write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])
    real, calls = sweep._evaluate, []

    def one_then_interrupt(p, seed):
        if calls:
            raise KeyboardInterrupt
        calls.append(p.key)
        return real(p, seed)

    monkeypatch.setattr(sweep, "_evaluate", one_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(_points(), partial, seed=7, workers=0)
    assert partial.read_text() == "".join(lines[:4])
    assert list(sweep.read_rows(partial).values()) == rows[:3]


def test_resume_with_another_seed_is_refused(reference, tmp_path):
    path, _ = reference
    copy = tmp_path / "copy.csv"
    copy.write_bytes(path.read_bytes())
    with pytest.raises(InvalidArgument, match="another seed"):
        sweep.run_sweep(_points(), copy, seed=8, workers=0)
    assert copy.read_bytes() == path.read_bytes()


def test_a_file_that_is_not_a_sweep_table_is_kept(tmp_path):
    f = tmp_path / "notes.csv"
    f.write_text("my,own,data\n1,2,3\n")
    with pytest.raises(InvalidArgument, match="not a symgrad sweep table"):
        sweep.run_sweep(_points()[:1], f, workers=0)
    assert f.read_text() == "my,own,data\n1,2,3\n"
    with pytest.raises(InvalidArgument, match="directory"):
        sweep.run_sweep(_points()[:1], tmp_path / "no" / "t.csv", workers=0)
    with pytest.raises(InvalidArgument, match="regular file"):
        sweep.run_sweep(_points()[:1], tmp_path, workers=0)
    link = tmp_path / "link.csv"
    link.symlink_to(f)
    with pytest.raises(InvalidArgument, match="regular file"):
        sweep.run_sweep(_points()[:1], link, workers=0)


def test_a_point_that_cannot_run_gets_its_reason_and_the_sweep_goes_on(tmp_path):
    # ReLU at σ_w² = 1e6: q grows 5e5× a layer and leaves float64 by depth 60.
    pts = sweep.grid(["relu"], [1.0, 1e6], [0.0], [60], **SMALL)
    rows = sweep.run_sweep(pts, tmp_path / "t.csv", workers=0)
    assert rows[0]["error"] == "" and rows[0]["ok"] == "True"
    assert "float64" in rows[1]["error"] and rows[1]["ok"] == ""


@pytest.mark.parametrize("kwargs,needle", [
    ({"sigma_w2": []}, "sigma_w2 is empty"),
    ({"sigma_w2": [2.0, 1.0]}, "reversed"),
    ({"sigma_w2": [1.0, 1.0]}, "repeated"),
    ({"sigma_w2": [1.0, float("inf")]}, "non-finite"),
    ({"sigma_w2": [float("nan")]}, "non-finite"),
    ({"sigma_w2": [0.0, 1.0]}, "> 0"),
    ({"sigma_b2": [-0.1]}, "minimum"),
    ({"depths": [0]}, "minimum"),
    ({"depths": [2.5]}, "ints"),
    ({"activations": []}, "activations"),
    ({"activations": ["tanh", "tanh"]}, "twice"),
    ({"activations": ["no_such_unit"]}, "no_such_unit"),
])
def test_bad_grids(kwargs, needle):
    args = {"activations": ["tanh"], "sigma_w2": [1.0], "sigma_b2": [0.0], "depths": [3], **kwargs}
    with pytest.raises(InvalidArgument, match=needle):
        sweep.grid(args["activations"], args["sigma_w2"], args["sigma_b2"], args["depths"], **SMALL)


@pytest.mark.parametrize("text,needle", [("", "empty"), ("2:1:3", "reversed"), ("1:1:3", "empty"), ("1:2:1", "at least 2"),
                                         ("nan", "not a finite"), ("1e999", "overflows"), ("1,,2", "not a finite"),
                                         ("１", "ASCII")])
def test_parse_grid_refusals(text, needle):
    with pytest.raises(InvalidArgument, match=needle):
        sweep.parse_grid("--sigma-w2", text)


def test_missing_dask_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(InvalidArgument, match=r"pip install 'symgrad\[dask\]'"):
        sweep.run_sweep(_points()[:1], tmp_path / "t.csv", workers=2)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_scheduler_is_refused_within_the_timeout(tmp_path):
    pytest.importorskip("distributed")
    start = time.monotonic()
    with pytest.raises(InvalidArgument, match="could not reach the Dask scheduler"):
        sweep.run_sweep(_points()[:1], tmp_path / "t.csv", scheduler="tcp://127.0.0.1:%d" % _closed_port(), timeout=1)
    assert time.monotonic() - start < 15
    with pytest.raises(InvalidArgument, match="not an address"):
        sweep.run_sweep(_points()[:1], tmp_path / "t.csv", scheduler="no address here")


def test_cli_sweep_in_process_and_resume(tmp_path, capsys):
    out = tmp_path / "s.csv"
    argv = ["sweep", "--activation", "tanh", "--sigma-w2", "0.5:1.5:3", "--sigma-b2", "0", "--depth", "3", "--width", "40",
            "--batch", "4", "--repeats", "3", "--workers", "0", "-o", str(out)]
    assert main(argv) == 0
    assert "3 points" in capsys.readouterr().out
    first = out.read_bytes()
    assert main(argv) == 0 and out.read_bytes() == first


@pytest.mark.parametrize("extra,needle", [
    (["--sigma-w2", "2:1:3"], "reversed"),
    (["--sigma-w2", "1,nan"], "not a finite"),
    (["--sigma-w2", ""], "empty"),
    (["--sigma-w2", "1", "--depth", "0"], "minimum"),
    (["--sigma-w2", "1", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "only one"),
    (["--sigma-w2", "1", "--scheduler", "tcp://127.0.0.1:%d" % _closed_port(), "--timeout", "1"], "could not reach"),
    (["--sigma-w2", "1", "-o", "-"], "-o FILE.csv"),
])
def test_cli_bad_input_exit_2_one_line(extra, needle, tmp_path, capsys):
    argv = ["sweep", "--width", "40", "--batch", "4", "--repeats", "3", "-o", str(tmp_path / "t.csv")] + extra
    if "-o" in extra:
        argv = ["sweep", "--width", "40"] + extra
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_parquet_output_from_the_csv_checkpoint(reference, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    _, rows = reference
    out = tmp_path / "t.parquet"
    assert sweep.run_sweep(_points(), out, seed=7, workers=0) == rows
    table = pq.read_table(out)
    assert table.column_names == list(sweep.COLUMNS) and table.num_rows == len(rows)
    assert table.column("key").to_pylist() == [r["key"] for r in rows]
    assert table.column("seed").to_pylist() == [int(r["seed"]) for r in rows]  # all 64 bits
    assert table.column("ok").to_pylist() == [r["ok"] == "True" for r in rows]
    assert table.column("q_last_measured").to_pylist() == [float(r["q_last_measured"]) for r in rows]
    # The CSV beside it is the checkpoint: a rerun computes nothing and rewrites the same table.
    assert (tmp_path / "t.parquet.csv").exists()
    assert sweep.run_sweep(_points(), out, seed=7, workers=0) == rows


def test_parquet_without_pyarrow_names_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(InvalidArgument, match="pip install pyarrow"):
        sweep.run_sweep(_points()[:1], tmp_path / "t.parquet", workers=0)
