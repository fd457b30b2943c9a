"""Sweeps: one Monte-Carlo check of mean field per grid point, on Dask, resumable, reproducible.

A phase diagram checked by Monte Carlo is one run of
:func:`symgrad.theory.montecarlo.check_wide_network` per point of a grid over (activation, σ_w²,
σ_b², depth).  :func:`run_sweep` runs the points on a Dask cluster (``dask.distributed``: a
:class:`~distributed.LocalCluster` by default, or an existing scheduler by address), or in this
process with ``workers=0``, and writes a tidy CSV table, one row per point (:data:`COLUMNS`).

* **Reproducible regardless of the number of workers.**  A point's seed depends only on the
  sweep's seed and the point itself: ``SeedSequence(seed, spawn_key=K)`` with K the SHA-256 of
  the point's key (its activation and parameters, floats written exactly), so the same point
  gets the same networks in any order, on any worker, in any grid that contains it.
* **The output file is the checkpoint.**  Each finished point is appended as one line with a
  single ``write`` on a file opened for appending, and flushed; a run that is interrupted leaves
  whole lines (and at worst one partial last line, which the next run drops).  On start, points
  whose key is already in the file are skipped; when every point is done the file is rewritten
  atomically (:func:`symgrad._io.write_atomic`) in grid order.  A ``.parquet`` output is written
  from the finished CSV checkpoint (``FILE.parquet.csv``, kept for resuming) when pyarrow is installed.
* A point whose check cannot run (its length map leaves float64, for example) gets a row with
  the reason in ``error`` instead of stopping the sweep.

>>> pts = grid(["tanh"], [0.5, 1.5], [0.0], [4], width=40, batch=4, repeats=3)
>>> [p.key for p in pts][:1]
['tanh|0.5|0.0|4|40|4|3|0.99']
>>> rows = run_points(pts, seed=0)
>>> [r["ok"] for r in rows], rows[0]["seed"] == str(point_seed(0, pts[0]))
(['True', 'True'], True)
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import numbers
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from symgrad._io import write_atomic
from symgrad.errors import InvalidArgument, SymgradError
from symgrad.spec.activations import activation as _activation
from symgrad.theory.meanfield import chi1
from symgrad.theory.montecarlo import check_wide_network
from symgrad._progress import progress_bar

__all__ = ["COLUMNS", "INSTALL", "Point", "grid", "parse_grid", "point_seed", "read_rows", "run_points", "run_sweep"]

INSTALL = "pip install 'symgrad[dask]'"
#: The table's columns: the point (activation … level), its derived seed, the verdict and the
#: measured and predicted statistics (q^L; the gradient ratio E‖δ^1‖²/E‖δ^L‖²), χ₁ at q* (empty
#: where the length map has no finite fixed point), the
#: worst layer's excess over its interval half-width, and ``error`` (empty unless the point failed).
COLUMNS = ("key", "activation", "sigma_w2", "sigma_b2", "depth", "width", "batch", "repeats", "level", "seed", "ok",
           "q_last_measured", "q_last_predicted", "ratio_first_measured", "ratio_first_predicted", "chi1",
           "worst", "worst_layer", "worst_excess", "error")
_HEADER = ",".join(COLUMNS) + "\n"


@dataclass(frozen=True)
class Point:
    """One grid point: the arguments of :func:`~symgrad.theory.montecarlo.check_wide_network`."""

    activation: str
    sigma_w2: float
    sigma_b2: float
    depth: int
    width: int
    batch: int
    repeats: int
    level: float = 0.99

    @property
    def key(self) -> str:
        """The point as text, floats exactly (``repr``): the row's identity in the checkpoint."""
        return "|".join((self.activation, repr(self.sigma_w2), repr(self.sigma_b2), str(self.depth), str(self.width),
                         str(self.batch), str(self.repeats), repr(self.level)))


def point_seed(seed: int, point: Point) -> int:
    """The point's own seed (a 64-bit int) from the sweep's ``seed`` and the point alone:
    ``SeedSequence(seed, spawn_key=SHA-256(point.key) as eight 32-bit words)``.

    >>> p = Point("tanh", 1.0, 0.0, 4, 40, 4, 3)
    >>> point_seed(0, p) == point_seed(0, p) != point_seed(1, p)
    True
    """
    digest = hashlib.sha256(point.key.encode("utf-8")).digest()
    words = tuple(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 32, 4))
    return int(np.random.SeedSequence(int(seed), spawn_key=words).generate_state(1, np.uint64)[0])


def _axis(name: str, values, *, minimum: float | None, integer: bool, example: str) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise InvalidArgument("%s must be a list of values, %s" % (name, example))
    if len(values) == 0:
        raise InvalidArgument("%s is empty; give at least one value, %s" % (name, example))
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise InvalidArgument("%s contains %r, not a number; %s" % (name, v, example))
        if not math.isfinite(float(v)):
            raise InvalidArgument("%s contains the non-finite value %r; give finite values, %s" % (name, float(v), example))
        if integer and (not isinstance(v, numbers.Integral)):
            raise InvalidArgument("%s contains %r; give ints, %s" % (name, v, example))
        if minimum is not None and v < minimum:
            raise InvalidArgument("%s contains %r, below the minimum %g; %s" % (name, v, minimum, example))
        out.append(int(v) if integer else float(v))
    for a, b in zip(out, out[1:]):
        if not b > a:
            raise InvalidArgument("%s must be strictly increasing (%r then %r: %s); %s"
                                  % (name, a, b, "reversed" if b < a else "repeated", example))
    return out


def grid(activations, sigma_w2, sigma_b2, depths, *, width: int = 500, batch: int = 64, repeats: int = 12,
         level: float = 0.99) -> list:
    """The points of the grid activations × σ_w² × σ_b² × depths (in that order, the last
    varying fastest), each a :class:`Point`.

    * ``activations``: built-in names or expressions in z (checked now);
    * ``sigma_w2`` (> 0), ``sigma_b2`` (≥ 0): strictly increasing lists of finite variances;
    * ``depths``: strictly increasing positive ints; ``width`` ≥ 2, ``batch`` ≥ 1, ``repeats`` ≥ 3
      and ``level`` as for :func:`~symgrad.theory.montecarlo.check_wide_network`.

    Errors: :class:`~symgrad.InvalidArgument` for an empty, reversed, repeated or non-finite axis
    (naming it and the values), and an unknown activation.

    >>> len(grid(["tanh", "relu"], [1.0, 2.0], [0.0, 0.1, 0.2], [10], width=100, batch=8, repeats=3))
    12
    """
    if isinstance(activations, (str, bytes)) or not isinstance(activations, Sequence) or not activations:
        raise InvalidArgument("activations must be a non-empty list of names, e.g. ['tanh', 'relu']")
    acts = []
    for a in activations:
        if not isinstance(a, str):
            raise InvalidArgument("activations contains %r; give names such as 'tanh'" % (a,))
        _activation(a)  # an unknown name or a bad expression is refused here, not on a worker
        if a in acts:
            raise InvalidArgument("activations lists %r twice; give each once" % a)
        acts.append(a)
    w2 = _axis("sigma_w2", sigma_w2, minimum=None, integer=False, example="e.g. sigma_w2=[0.5, 1.0, 2.0]")
    if w2[0] <= 0:
        raise InvalidArgument("sigma_w2 contains %r; weight variances are > 0, e.g. sigma_w2=[0.5, 1.0, 2.0]" % w2[0])
    b2 = _axis("sigma_b2", sigma_b2, minimum=0.0, integer=False, example="e.g. sigma_b2=[0.0, 0.05]")
    ds = _axis("depths", depths, minimum=1, integer=True, example="e.g. depths=[10, 20]")
    for name, v, lo in (("width", width, 2), ("batch", batch, 1), ("repeats", repeats, 3)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
            raise InvalidArgument("%s=%r must be an int >= %d" % (name, v, lo))
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0.5 < float(level) < 1:
        raise InvalidArgument("level=%r must be in (0.5, 1), e.g. level=0.99" % (level,))
    return [Point(a, w, b, d, int(width), int(batch), int(repeats), float(level)) for a in acts for w in w2 for b in b2 for d in ds]


_NUM = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?"
_RANGE_RE = re.compile(r"(%s):(%s):([0-9]{1,6})\Z" % (_NUM, _NUM))
_NUM_RE = re.compile(_NUM + r"\Z")


def parse_grid(option: str, text: str, *, integer: bool = False) -> list:
    """A command-line axis: ``LO:HI:N`` (N evenly spaced values from LO to HI, N ≥ 2, LO < HI) or
    a comma-separated list ``a,b,c``.  Returns floats (ints with ``integer=True``); the checks
    of :func:`grid` (increasing, finite) follow.  Errors: :class:`~symgrad.InvalidArgument`
    naming ``option`` and the text.

    >>> parse_grid("--sigma-w2", "0.5:1.5:3")
    [0.5, 1.0, 1.5]
    >>> parse_grid("--depth", "10,20", integer=True)
    [10, 20]
    """
    t = text.strip()
    if not t:
        raise InvalidArgument("%s is empty; give LO:HI:N or a list a,b,c, e.g. %s 0.5:2:4" % (option, option))
    if not t.isascii():
        raise InvalidArgument("%s %r is not ASCII; give LO:HI:N or a,b,c" % (option, text[:40]))
    m = _RANGE_RE.match(t)
    if m:
        if integer:
            raise InvalidArgument("%s takes a list of ints, e.g. %s 10,20,30 (not %r)" % (option, option, t))
        lo, hi, n = float(m.group(1)), float(m.group(2)), int(m.group(3))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise InvalidArgument("%s %r has a non-finite end; give finite LO:HI:N" % (option, t))
        if n < 2:
            raise InvalidArgument("%s %r asks for %d point(s); N is at least 2 (or give one value alone)" % (option, t, n))
        if not hi > lo:
            raise InvalidArgument("%s %r is %s: LO must be below HI, e.g. %s 0.5:2:4" % (option, t, "reversed" if hi < lo else "empty", option))
        return [float(v) for v in np.linspace(lo, hi, n)]
    parts = [p.strip() for p in t.split(",")]
    out = []
    for p in parts:
        if integer:
            if not re.fullmatch(r"[0-9]{1,9}", p):
                raise InvalidArgument("%s: %r is not a positive int; give e.g. %s 10,20" % (option, p, option))
            out.append(int(p))
        else:
            if not _NUM_RE.match(p):
                raise InvalidArgument("%s: %r is not a finite number; give LO:HI:N or a,b,c, e.g. %s 0.5,1,2" % (option, p, option))
            v = float(p)
            if not math.isfinite(v):
                raise InvalidArgument("%s: %r overflows float64; give finite values" % (option, p))
            out.append(v)
    return out


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v) if v is not None else ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _evaluate(point: Point, seed: int) -> dict:
    """One point's row (every value a string): the Monte-Carlo check at the point's own seed."""
    s = point_seed(seed, point)
    row = {"key": point.key, "activation": point.activation, "sigma_w2": point.sigma_w2, "sigma_b2": point.sigma_b2,
           "depth": point.depth, "width": point.width, "batch": point.batch, "repeats": point.repeats, "level": point.level,
           "seed": s}
    try:
        c = check_wide_network(point.activation, point.sigma_w2, point.sigma_b2, width=point.width, depth=point.depth,
                               batch=point.batch, seed=s, repeats=point.repeats, level=point.level)
        what, layer, _, _, _, _, excess = c.worst
        row.update(ok=c.ok, q_last_measured=float(c.q_measured[-1]), q_last_predicted=float(c.q_predicted[-1]),
                   ratio_first_measured=float(c.grad_ratio_measured[0]), ratio_first_predicted=float(c.grad_ratio_predicted[0]),
                   chi1=None, worst=what, worst_layer=int(layer), worst_excess=float(excess), error="")
    except SymgradError as exc:
        row.update({k: None for k in COLUMNS if k not in row})
        row["error"] = " ".join(str(exc).split())
    return {k: _fmt(row[k]) for k in COLUMNS}


def _with_chi1(row: dict) -> dict:
    """Fill in χ₁ at q* (:func:`symgrad.theory.meanfield.chi1`) in this process: its SymPy steps
    run under a time budget that forks a child, which a Dask worker (a daemon process) may not.
    Left empty where the length map has no finite fixed point (ReLU with σ_w² > 2, say): the
    Monte-Carlo check at finite depth still stands."""
    if row["error"]:
        return row
    try:
        x = chi1(row["activation"], float(row["sigma_w2"]), float(row["sigma_b2"])).value
    except InvalidArgument:
        return row
    return {**row, "chi1": _fmt(float(x))}


def run_points(points, *, seed: int = 0) -> list:
    """The single-process path: each point's row (:data:`COLUMNS`, values as written to the
    CSV) in the order of ``points``.  See the module docstring for the seeds.

    >>> run_points(grid(["relu"], [2.0], [0.0], [3], width=30, batch=4, repeats=3))[0]["activation"]
    'relu'
    """
    seed = _check_seed(seed)
    return [_with_chi1(_evaluate(p, seed)) for p in points]




def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InvalidArgument("seed=%r must be a non-negative int, e.g. seed=0" % (seed,))
    return int(seed)


def _line(row: dict) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([row[k] for k in COLUMNS])
    return buf.getvalue()


def read_rows(path) -> dict:
    """The finished rows of a sweep's CSV, ``key → row`` (a missing file: ``{}``).  A partial
    last line (an interrupted append) is ignored.  Errors: :class:`~symgrad.InvalidArgument`
    for a file whose header is not a sweep's (it is never overwritten).

    >>> read_rows("no-such-sweep.csv")
    {}
    """
    path = Path(path)
    if not path.exists():
        return {}
    if not path.is_file():
        raise InvalidArgument("%s is not a regular file; give a CSV path for the sweep's table" % path)
    text = path.read_text(encoding="utf-8")
    if not text:
        return {}
    if not text.startswith(_HEADER):
        raise InvalidArgument("%s exists and is not a symgrad sweep table (its first line is not the sweep's header); "
                              "give another -o, or remove the file" % path)
    body = text[len(_HEADER):]
    if body and not body.endswith("\n"):
        body = body[: body.rfind("\n") + 1]  # drop the partial line of an interrupted append
    rows = {}
    for rec in csv.reader(io.StringIO(body)):
        if len(rec) != len(COLUMNS):
            raise InvalidArgument("%s has a line with %d fields, expected %d; the table is damaged" % (path, len(rec), len(COLUMNS)))
        row = dict(zip(COLUMNS, rec))
        rows[row["key"]] = row
    return rows


class _Appender:
    """Appends whole lines to the checkpoint: one ``os.write`` per row on an O_APPEND descriptor."""

    def __init__(self, path: Path):
        self.path = path
        exists = path.exists() and path.stat().st_size > 0
        if exists:
            text = path.read_text(encoding="utf-8")
            if not text.endswith("\n"):  # an interrupted append: cut it back to the last whole line
                with open(path, "r+b") as fh:
                    fh.truncate(len(text[: text.rfind("\n") + 1].encode("utf-8")))
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as exc:
            raise InvalidArgument("cannot write the sweep's table %s: %s" % (path, exc.strerror)) from None
        if not exists:
            self.write(_HEADER)

    def write(self, text: str) -> None:
        os.write(self.fd, text.encode("utf-8"))

    def close(self) -> None:
        os.close(self.fd)


def _connect(scheduler, workers, timeout):
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InvalidArgument("sweeps on Dask need dask.distributed, which is not installed; install it with: %s "
                              "(or pass workers=0 / --workers 0 to run in this process)" % INSTALL) from None
    if scheduler is not None:
        if not isinstance(scheduler, str) or not re.fullmatch(r"(?:[a-z]+://)?[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}", scheduler.strip()):
            raise InvalidArgument("scheduler=%r is not an address; give e.g. tcp://127.0.0.1:8786" % (scheduler,))
        try:
            return Client(scheduler.strip(), timeout="%gs" % timeout), None
        except (OSError, TimeoutError) as exc:
            raise InvalidArgument("could not reach the Dask scheduler at %s within %g s (%s); check the address, or run "
                                  "without a scheduler for a local cluster" % (scheduler, timeout, " ".join(str(exc).split())[:200])) from None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=40)
    return Client(cluster, timeout="%gs" % timeout), cluster


def run_sweep(points, output, *, seed: int = 0, workers: int | None = 2, scheduler: str | None = None, timeout: float = 10.0,
              progress=False) -> list:
    """Run ``points`` (from :func:`grid`) and write their table to ``output`` (CSV, or
    ``.parquet`` with pyarrow), resuming from the rows already there; returns every point's
    row (:data:`COLUMNS`) in grid order.

    * ``workers``: 0 runs in this process (no Dask); n ≥ 1 starts a local Dask cluster of n
      single-threaded worker processes; ignored when ``scheduler`` (an address such as
      ``tcp://10.0.0.5:8786``) names an existing cluster;
    * ``timeout``: seconds to wait for the scheduler (an unreachable one: InvalidArgument);
    * ``progress``: True draws a bar on stderr (tqdm, on a terminal); a callable
      ``progress(done, total)`` is called at the start and after each point; False: nothing.

    Errors: :class:`~symgrad.InvalidArgument` for a missing dask (naming
    ``pip install 'symgrad[dask]'``), an unreachable scheduler, an output that exists and is not
    a sweep table, an unwritable output, and a file whose rows came from another seed.

    >>> import pathlib, tempfile
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "sweep.csv"
    >>> pts = grid(["tanh"], [1.0], [0.0], [3], width=30, batch=4, repeats=3)
    >>> rows = run_sweep(pts, out, workers=0)          # in this process; workers=2: a local Dask cluster
    >>> rows[0]["ok"], list(read_rows(out)) == [pts[0].key]
    ('True', True)
    >>> run_sweep(pts, out, workers=0) == rows          # resumed: nothing left to compute
    True
    """
    seed = _check_seed(seed)
    points = list(points)
    if not points:
        raise InvalidArgument("the grid has no points; give at least one value on each axis")
    if not all(isinstance(p, Point) for p in points):
        raise InvalidArgument("points must come from symgrad.sweep.grid(...)")
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 0:
        raise InvalidArgument("workers=%r must be an int >= 0 (0: in this process)" % (workers,))
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not (0 < float(timeout) <= 3600):
        raise InvalidArgument("timeout=%r must be seconds in (0, 3600], e.g. timeout=10" % (timeout,))
    out = Path(output)
    parquet = out.suffix.lower() == ".parquet"
    if parquet:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InvalidArgument("a .parquet table needs pyarrow, which is not installed; pip install pyarrow, or give a .csv output") from None
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise InvalidArgument("%s is not a regular file; give a file path for the sweep's table" % out)
    if not out.parent.is_dir():
        raise InvalidArgument("the directory of %s does not exist; create it or give another output" % out)
    ckpt = out.with_name(out.name + ".csv") if parquet else out
    done = read_rows(ckpt)
    for p in points:
        row = done.get(p.key)
        if row is not None and row["seed"] != str(point_seed(seed, p)):
            raise InvalidArgument("%s holds point %s computed with another seed; give the same seed to resume, or another output"
                                  % (ckpt, p.key))
    todo = [p for p in points if p.key not in done]
    total = len(points)
    bar = None
    if progress is True:
        bar = progress_bar(total, "sweep")

        def progress(done, total):
            bar.update(done - bar.n)
    elif not progress:
        progress = None
    if progress is not None:
        progress(total - len(todo), total)
    app = _Appender(ckpt)
    try:
        if todo:
            if workers == 0 and scheduler is None:
                for p in todo:
                    row = _with_chi1(_evaluate(p, seed))
                    app.write(_line(row))
                    done[p.key] = row
                    if progress is not None:
                        progress(sum(1 for q in points if q.key in done), total)
            else:
                _run_dask(todo, seed, scheduler, int(workers or 1), float(timeout), app, done, progress, total)
    finally:
        app.close()
        if bar is not None:
            bar.close()
    rows = [done[p.key] for p in points]
    extra = [r for k, r in done.items() if k not in {p.key for p in points}]  # rows of other grids are kept
    text = _HEADER + "".join(_line(r) for r in rows + extra)
    write_atomic(ckpt, text, force=True)
    if parquet:
        _write_parquet(ckpt, out)
    return rows


def _run_dask(todo, seed, scheduler, workers, timeout, app, done, progress, total):
    client, cluster = _connect(scheduler, workers, timeout)
    try:
        from distributed import as_completed

        futures = client.map(_evaluate, todo, seed=seed, pure=False)
        finished = 0
        for fut in as_completed(futures):
            row = _with_chi1(fut.result())
            app.write(_line(row))
            done[row["key"]] = row
            finished += 1
            if progress is not None:
                progress(total - len(todo) + finished, total)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _write_parquet(ckpt: Path, out: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    kinds = {"key": pa.string(), "activation": pa.string(), "worst": pa.string(), "error": pa.string(), "ok": pa.bool_(),
             "seed": pa.uint64(), "depth": pa.int64(), "width": pa.int64(), "batch": pa.int64(), "repeats": pa.int64(),
             "worst_layer": pa.int64()}
    types = {c: kinds.get(c, pa.float64()) for c in COLUMNS}  # the seeds fill 64 bits: not a double
    table = pacsv.read_csv(ckpt, convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True))
    tmp = out.with_name("." + out.name + ".symgrad-%d.tmp" % os.getpid())
    pq.write_table(table, tmp)
    os.replace(tmp, out)
