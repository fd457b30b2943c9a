"""A progress bar on stderr for long runs (``symgrad experiment``, ``symgrad sweep``): tqdm where it is
installed (drawn only on a terminal), else one line per step.

>>> bar = progress_bar(2, "points")
>>> bar.update(2); bar.close()  # doctest: +SKIP
"""

from __future__ import annotations

import sys

__all__ = ["progress_bar"]


def progress_bar(total: int, what: str):
    """An object with ``update(k=1)`` and ``close()`` that reports ``what`` out of ``total`` steps."""
    try:
        from tqdm import tqdm
    except ImportError:
        class _Lines:
            n = 0

            def update(self, k=1):
                self.n += k
                print("symgrad: %s %d/%d" % (what, self.n, total), file=sys.stderr, flush=True)

            def close(self):
                pass

        return _Lines()
    return tqdm(total=total, desc=what, file=sys.stderr, disable=None, leave=False)
