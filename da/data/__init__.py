"""Datasets by name: every module in this package that registers an entry in DATASETS
(`da.data.base`) is imported here, so a new dataset is one new file in this package.

An entry builds (or reuses) its files with data_tools and returns a DomainData with the
four splits and the name of its task (`da.tasks`). docs/adding_a_dataset.md walks through
one from start to end.
"""

from __future__ import annotations

import importlib
import pkgutil

from da.config_schema import DataConfig
from da.contracts import DomainData
from da.data.base import DATASETS, ArrayDataset, dataset_folder
from da.registry import lookup

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")


def build_data(cfg: DataConfig) -> DomainData:
    return lookup(DATASETS, cfg.name, "dataset").build(cfg)


__all__ = ["DATASETS", "ArrayDataset", "DomainData", "build_data", "dataset_folder"]
