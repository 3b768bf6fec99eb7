"""Algorithms by name. Every module here registers itself on import."""

import importlib
import pkgutil

from da.algorithms.base import ALGORITHMS, Algorithm, build_algorithm

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["ALGORITHMS", "Algorithm", "build_algorithm"]
