"""Hostile input (issue 14): every reader either loads a sane result or raises its clear
DatasetFileError naming the file; wrong config values raise ConfigError. A few cases per
reader here (bounded: the suite stays fast); experiments/fuzz_readers.py runs >= 1,000."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from da.config import ConfigError, load_config, to_flat_dict
from tests.conftest import moons_configs
from tests.fuzzing import READERS, check, mutate, seed_bytes

SEEDS = {}


def seed_of(name: str) -> bytes:
    if name not in SEEDS:
        SEEDS[name] = seed_bytes(READERS[name])
    return SEEDS[name]


@pytest.mark.parametrize("name", sorted(READERS))
def test_the_valid_seed_file_loads(name, tmp_path):
    assert check(READERS[name], seed_of(name), tmp_path) == ("loaded", "")


@pytest.mark.parametrize("name", sorted(READERS))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.integers(0, 2**32 - 1))
def test_mutated_files_load_or_raise_the_clear_error(name, case):
    kind, data = mutate(seed_of(name), np.random.default_rng(case))
    with tempfile.TemporaryDirectory() as tmp:
        outcome, detail = check(READERS[name], data, Path(tmp))
    assert outcome in ("loaded", "clear_error"), f"{name} / {kind}: {outcome}: {detail}"


@pytest.mark.parametrize("name", ["ply", "pcd", "npy", "ifc", "coco"])
@settings(max_examples=8, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_raise_the_clear_error(name, data):
    with tempfile.TemporaryDirectory() as tmp:
        outcome, detail = check(READERS[name], data, Path(tmp))
    assert outcome in ("loaded", "clear_error"), f"{name}: {outcome}: {detail}"


def test_the_harness_catches_a_reader_that_breaks_its_contract(tmp_path):
    """The check itself can fail: a reader raising another error, or returning an empty
    cloud, is reported - not passed."""
    from dataclasses import replace

    bad = replace(READERS["ply"], read=lambda p: int("x"))
    assert check(bad, seed_of("ply"), tmp_path / "a")[0] == "other_error"
    empty = replace(READERS["ply"], sane=lambda c: False)
    assert check(empty, seed_of("ply"), tmp_path / "b")[0] == "garbage"


VALUES = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=8), st.booleans(), st.lists(st.integers(-3, 3), max_size=3), st.none())


@settings(max_examples=60, deadline=None)
@given(key_index=st.integers(0, 10**6), value=VALUES)
def test_wrong_config_values_give_config_errors(key_index, value):
    keys = sorted(k for k in to_flat_dict(load_config(moons_configs(dann=True))) if k not in ("name", "run_dir"))
    key = keys[key_index % len(keys)]
    text = "null" if value is None else repr(value) if not isinstance(value, str) else repr(value)
    with contextlib.suppress(ConfigError):  # the clear error; any other exception fails
        load_config(moons_configs(dann=True), [f"{key}={text}"])


@pytest.mark.parametrize("override", ["train.steps=-5", "train.batch_size=0", "optim.lr=-1", "optim.lr=nan",
                                      "train.num_workers=-1", "optim.amp_dtype=int8", "train.steps=abc",
                                      "algorithm.lambda_max=[1]", "train.nonsense=1", "device=tpu9"])
def test_known_bad_values_are_refused_with_the_key(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as err:
        cfg = load_config(moons_configs(dann=True), [override])
        from da.runs import resolve_device

        resolve_device(cfg.device)
    assert key.split(".")[-1] in str(err.value) or "device" in str(err.value)
