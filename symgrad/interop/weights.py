"""Loading a network's weights from a file, without ever unpickling arbitrary objects.

* ``.npz``: ``np.load(path, allow_pickle=False)``: an object array (stored pickled) is refused.
* ``.pt`` / ``.pth``: a PyTorch ``state_dict`` through ``torch.load(path, weights_only=True)``,
  whose restricted unpickler accepts tensors and plain containers only: a file that needs full
  unpickling (one that stores a whole module, or one crafted to run code as it loads) is refused
  with PyTorch's reason, and nothing in it runs.

Either file holds the weights by symgrad name (``W1``, ``b1``, …; ``w1``, ``b1``, … for a chain)
or by ``state_dict`` key (``0.weight``, ``0.bias``, ``2.weight``, …: the ``Linear`` layers in
the order of their module paths, ``0 < 2 < 10``; a layer without ``bias`` gets a zero bias).
``a0`` and ``y`` entries are ignored (a file from ``np.savez(path, **symgrad.sample(net))`` loads).
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
import zlib

import numpy as np

from symgrad.errors import InvalidArgument
from symgrad.interop._common import Parameters, finite_array, torch_module
from symgrad.symbolic.networks import Chain, Network

__all__ = ["load_weights", "read_npz", "weight_widths", "WEIGHT_SUFFIXES"]

#: The file types :func:`load_weights` reads, by suffix.
WEIGHT_SUFFIXES = (".npz", ".pt", ".pth")

_SYMGRAD_NAME = re.compile(r"([Wwb])([1-9][0-9]*)")


_REFUSAL_MARKERS = ("Unsupported global", "Unsupported operand", "Trying to load unsupported", "Unsupported class")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_line(exc: BaseException) -> str:
    """The reason in an exception's message, on one line and at most 300 characters."""
    text = _ANSI.sub("", str(exc)).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # PyTorch's weights-only refusal puts the reason ("Unsupported global: GLOBAL os.system") a few
    # lines down, under a paragraph on what weights_only means: show the reason.
    for ln in lines:
        for marker in _REFUSAL_MARKERS:
            if marker in ln:
                reason = ln[ln.index(marker):]
                return reason.split(". Please use", 1)[0].rstrip(".")[:300]
    first = lines[0] if lines else ""
    if len(first) > 120 and ". " in first:  # PyTorch's zip reader adds paragraphs of advice: keep the diagnosis
        first = first.split(". ", 1)[0]
    return first[:300]


def _why(exc: BaseException) -> str:
    """``Type: reason`` of an exception, on one line."""
    reason = _first_line(exc)
    return "%s: %s" % (type(exc).__name__, reason) if reason else type(exc).__name__


def read_npz(path, *, what: str = "weights file") -> dict:
    """The named arrays of an ``.npz`` file, read with ``allow_pickle=False``: name → ndarray.

    Shared by :func:`load_weights` and the batch of ``symgrad report --data``.  ``what`` names the
    file in messages.  Raises :class:`~symgrad.InvalidArgument` naming the file for a missing
    file, a pickle (refused before NumPy sees it: unpickling can run code), a single ``.npy``
    array, a file that is not a zip archive, a truncated archive, and an object array.

    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "d.npz")
    >>> np.savez(path, inputs=np.zeros((2, 3)))
    >>> read_npz(path, what="data file")["inputs"].shape
    (2, 3)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InvalidArgument("%s %r: no such file" % (what, path))
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head.startswith(b"\x80"):  # a pickle's PROTO opcode: np.load would try to unpickle it
        raise InvalidArgument("%s %r is refused: it is a pickle, and symgrad never unpickles (unpickling can "
                              "run code). Fix: save the weights with np.savez(path, W1=..., b1=...)" % (what, path))
    if head.startswith(b"\x93NUMPY"):
        raise InvalidArgument("%s %r is a single .npy array, not an .npz archive of named arrays. Fix: "
                              "np.savez(path, W1=..., b1=...)" % (what, path))
    if not head.startswith(b"PK"):
        raise InvalidArgument("%s %r is not an .npz archive (a zip file): it does not start as one. Fix: "
                              "np.savez(path, W1=..., b1=...)" % (what, path))
    try:
        # symgrad opens the file, so that it is closed on every path (np.load leaves its own handle
        # open when the zip directory of a truncated archive fails to parse).
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as data:
            out = {}
            for key in data.files:
                try:
                    out[key] = data[key]
                except ValueError as exc:
                    if "pickle" in str(exc):
                        raise InvalidArgument("%s %r is refused: its entry %r is a pickled object array, and "
                                              "symgrad never unpickles (unpickling can run code). Fix: save plain float "
                                              "arrays" % (what, path, key)) from None
                    raise
            return out
    except InvalidArgument:
        raise
    except ValueError as exc:
        raise InvalidArgument("%s %r is not a readable .npz archive (%s)" % (what, path, _why(exc))) from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, zlib.error, RuntimeError) as exc:
        raise InvalidArgument("%s %r is not a readable .npz archive, or is truncated (%s)" % (what, path, _why(exc))) from None



_read_npz = read_npz


def _read_torch(path: str) -> dict:
    with open(path, "rb") as fh:
        head = fh.read(2)
    if not head:
        raise InvalidArgument("weights file %r is empty" % path)
    # torch.save writes a zip archive (legacy files: a pickle, starting with its PROTO opcode).
    # Anything else is no PyTorch file, whatever the weights-only unpickler would make of it.
    if not head.startswith((b"PK", b"\x80")):
        raise InvalidArgument("weights file %r is not a PyTorch file (neither a zip archive nor a pickle). Fix: "
                              "torch.save(model.state_dict(), path)" % path)
    torch = torch_module("reading the PyTorch file %r" % path)
    try:
        with warnings.catch_warnings():  # PyTorch warns about the pickle protocol of a file it then refuses
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _first_line(exc)
        if "Weights only load failed" in str(exc):
            raise InvalidArgument("weights file %r is refused: it needs full unpickling, which can run arbitrary code "
                                  "(torch.load(weights_only=True) says: %s). Fix: save the state_dict only, "
                                  "torch.save(model.state_dict(), path)" % (path, reason)) from None
        raise InvalidArgument("weights file %r is not a readable PyTorch file, or is truncated (%s)" % (path, _why(exc))) from None
    except Exception as exc:  # noqa: BLE001 - torch.load raises RuntimeError, EOFError, ... for a damaged file
        raise InvalidArgument("weights file %r is not a readable PyTorch file, or is truncated (%s)" % (path, _why(exc))) from None
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model_state_dict"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict):
        raise InvalidArgument("weights file %r holds a %s, not a state_dict (a mapping of names to tensors). Fix: "
                              "torch.save(model.state_dict(), path)" % (path, type(obj).__name__))
    out = {}
    for key, t in obj.items():
        if not isinstance(key, str) or not isinstance(t, torch.Tensor):
            raise InvalidArgument("weights file %r: entry %r is a %s, not a tensor; expected a state_dict (names → tensors)"
                                  % (path, key, type(t).__name__))
        if not t.is_floating_point():
            raise InvalidArgument("weights file %r: %r has dtype %s; expected real floating-point weights" % (path, key, t.dtype))
        out[key] = t.detach().to(dtype=torch.float64).numpy()
    return out


def _path_key(prefix: str):
    """Natural order of module paths: ``2`` before ``10``, ``1.0`` before ``1.2``."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in prefix.split(".")]


def _match(entries: dict, net, path: str) -> Parameters:
    """The file's arrays as ``net``'s parameters, checked (names, shapes, finiteness)."""
    where = "weights file %r" % path
    entries = {k: v for k, v in entries.items() if k not in ("a0", "y")}
    if not entries:
        raise InvalidArgument("%s holds no weights" % where)
    L = net.depth
    chain = isinstance(net, Chain)
    base = (lambda k: ()) if chain else net.shape
    values, names = {}, {}
    if all(_SYMGRAD_NAME.fullmatch(k) for k in entries):
        expected = set(net.parameters)
        unknown = sorted(set(entries) - expected)
        missing = [k for k in net.parameters if k not in entries]
        if unknown or missing:
            raise InvalidArgument("%s does not fit %r: %s%s%s" % (
                where, net, "unexpected %s" % unknown if unknown else "", "; " if unknown and missing else "",
                "missing %s" % missing if missing else ""))
        for k in net.parameters:
            arr = np.asarray(entries[k])
            if arr.shape != base(k):
                raise InvalidArgument("%s: %r has shape %s; %r needs %s" % (where, k, arr.shape, net, base(k)))
            values[k], names[k] = finite_array(arr, k, where), k
        return Parameters({k: values[k] for k in net.parameters}, names=names)
    layers: dict = {}
    for k in entries:
        prefix, dot, leaf = k.rpartition(".")
        if not dot or leaf not in ("weight", "bias"):
            raise InvalidArgument("%s: %r is neither a symgrad name (W1, b1, ...) nor a Linear layer's state_dict key "
                                  "('<path>.weight', '<path>.bias'); %r has only Linear layers" % (where, k, net))
        layers.setdefault(prefix, {})[leaf] = k
    order = sorted(layers, key=_path_key)
    if len(order) != L:
        raise InvalidArgument("%s has %d Linear layers (%s) but %r has %d" % (where, len(order), ", ".join(order), net, L))
    wname, n_in = ("w" if chain else "W"), (net.widths if not chain else [1] * (L + 1))
    for l, prefix in enumerate(order, start=1):
        keys = layers[prefix]
        if "weight" not in keys:
            raise InvalidArgument("%s: layer %r has a bias but no weight" % (where, prefix))
        W = finite_array(entries[keys["weight"]], keys["weight"], where)
        want = (n_in[l], n_in[l - 1])
        if W.shape != want:
            raise InvalidArgument("%s: %r has shape %s; layer %d of %r needs (out, in) = %s"
                                  % (where, keys["weight"], W.shape, l, net, want))
        if "bias" in keys:
            b = finite_array(entries[keys["bias"]], keys["bias"], where)
            if b.shape != (want[0],):
                raise InvalidArgument("%s: %r has shape %s; layer %d of %r needs (%d,)" % (where, keys["bias"], b.shape, l, net, want[0]))
        else:
            b = np.zeros(want[0])
        values["%s%d" % (wname, l)] = W.reshape(()) if chain else W
        values["b%d" % l] = b.reshape(()) if chain else b
        names["%s%d" % (wname, l)], names["b%d" % l] = keys["weight"], keys.get("bias")
    return Parameters({k: values[k] for k in net.parameters}, names={k: names[k] for k in net.parameters})


def load_weights(path, net) -> Parameters:
    """``net``'s parameters from the weights file ``path`` (``.npz``, or ``.pt``/``.pth`` with a
    PyTorch ``state_dict``): a :class:`~symgrad.interop.Parameters` dict of float64 arrays
    (``W_l`` (n_l, n_{l−1}), ``b_l`` (n_l,); scalars for a chain) whose ``names`` give each one's
    key in the file.  Never unpickles arbitrary objects (module docstring); reads, never writes.

    Raises :class:`~symgrad.InvalidArgument`, naming the file, for: a missing file or an unknown
    suffix; an unreadable, truncated or garbage file; a file that needs full unpickling (refused
    with the reason); keys, layer counts or shapes that do not fit ``net``; non-float or
    non-finite weights.

    >>> import os, tempfile, numpy as np, symgrad
    >>> net = symgrad.network([2, 3, 1])
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> np.savez(path, **{"0.weight": np.ones((3, 2)), "0.bias": np.zeros(3), "2.weight": np.ones((1, 3)), "2.bias": np.zeros(1)})
    >>> p = load_weights(path, net)
    >>> p["W2"].shape, p.names["W2"]
    ((1, 3), '2.weight')
    """
    if not isinstance(net, (Chain, Network)):
        raise InvalidArgument("load_weights: net must be a symgrad chain or network, not %r" % (net,))
    try:
        p = os.fspath(path)
    except TypeError:
        raise InvalidArgument("load_weights: path=%r must be a file path (str or os.PathLike)" % (path,)) from None
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    suffix = os.path.splitext(p)[1].lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise InvalidArgument("weights file %r: unknown type %r; symgrad reads %s" % (p, suffix or "(no suffix)", ", ".join(WEIGHT_SUFFIXES)))
    if not os.path.isfile(p):
        raise InvalidArgument("weights file %r does not exist or is not a file" % p)
    entries = _read_npz(p) if suffix == ".npz" else _read_torch(p)
    return _match(entries, net, p)


def weight_widths(path) -> list:
    """The layer widths ``[n_0, ..., n_L]`` that the dense weights in ``path`` imply (``.npz`` or a
    ``state_dict`` file, read as :func:`load_weights` reads it: never unpickled), so that a model's
    architecture can come from its weights file (``symgrad report --weights model.pt``).  The layers
    are ``W1..WL`` or the ``Linear`` layers in the order of their module paths; each weight is
    (n_l, n_{l−1}) and consecutive layers must chain.

    Raises :class:`~symgrad.InvalidArgument`, naming the file, for everything :func:`load_weights`
    refuses, for a file without 2-D weights, and for layers whose shapes do not chain.

    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> np.savez(path, **{"0.weight": np.ones((3, 2)), "0.bias": np.zeros(3), "2.weight": np.ones((1, 3))})
    >>> weight_widths(path)
    [2, 3, 1]
    """
    p = os.fspath(path)
    suffix = os.path.splitext(p)[1].lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise InvalidArgument("weights file %r: unknown suffix %r; expected one of %s" % (p, suffix, ", ".join(WEIGHT_SUFFIXES)))
    if not os.path.isfile(p):
        raise InvalidArgument("weights file %r: no such file" % p)
    entries = read_npz(p) if suffix == ".npz" else _read_torch(p)
    entries = {k: v for k, v in entries.items() if k not in ("a0", "y")}
    if entries and all(_SYMGRAD_NAME.fullmatch(k) for k in entries):
        ws = sorted((int(k[1:]), k) for k in entries if k[0] == "W")
        if [i for i, _ in ws] != list(range(1, len(ws) + 1)):
            raise InvalidArgument("weights file %r: W entries %s are not W1..WL" % (p, [k for _, k in ws]))
        keys = [k for _, k in ws]
    else:
        prefixes = {}
        for k in entries:
            prefix, dot, leaf = k.rpartition(".")
            if dot and leaf == "weight":
                prefixes[prefix] = k
        keys = [prefixes[q] for q in sorted(prefixes, key=_path_key)]
    if not keys:
        raise InvalidArgument("weights file %r holds no layer weights (W1.. or '<path>.weight')" % p)
    widths = None
    for k in keys:
        shape = np.shape(entries[k])
        if len(shape) != 2:
            raise InvalidArgument("weights file %r: %r has shape %s; a dense layer's weight is (out, in)" % (p, k, shape))
        if widths is None:
            widths = [int(shape[1])]
        elif shape[1] != widths[-1]:
            raise InvalidArgument("weights file %r: %r takes %d inputs but the layer before gives %d"
                                  % (p, k, shape[1], widths[-1]))
        widths.append(int(shape[0]))
    return widths
