"""Build a folder under a temporary name and publish it in one rename.

A killed build never leaves a half-written dataset under the final name.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_folder(out_dir: str | Path) -> Iterator[Path]:
    """Yield an empty temporary sibling of `out_dir`; on success it replaces `out_dir`,
    on error it is removed and `out_dir` is left as it was."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
