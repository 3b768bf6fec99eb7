"""DANN beats a plain network on the rotated two-moons target, on the mean over seeds.

One seed's margin after a short training is not a property of the method: another CPU
(BLAS kernels, thread count) changes the last bits and acts like another seed (seed 2 gave
0.770 vs 0.799 on one machine and passed on another). The moons table's protocol (constant
lr 0.2, momentum 0.9, lambda up to 6) is chaotic: float64 instead of float32 moved one
seed's DANN accuracy from 0.93 to 0.69. So the test uses a calmer protocol (the paper's
annealed learning rate from 0.5) and asserts the MEAN over five seeds, with a threshold
far below what every setting gave: experiments/results/moons/moons_test_margin.md (10 seeds, 1
and 2 threads, float32 and float64) reports the smallest mean margin over any 5 seeds.
"""

import torch

from da.config import load_config
from da.data.base import ArrayDataset
from da.run_log import read_results
from da.runs import build_run
from da.train import train
from tests.conftest import moons_configs

SHORT = ["train.eval_every=2000", "train.checkpoint_every=2000", "train.embedding_samples=0",
         "optim.schedule=dann", "optim.lr=0.5"]
SEEDS = [0, 1, 2, 3, 4]
MIN_MARGIN = 0.03  # mean target-accuracy gain asserted; every margin seen was >= 2.4x this


def test_dann_beats_source_only_on_moons_mean_over_seeds(tmp_path, moons_overrides):
    acc = {False: [], True: []}
    for seed in SEEDS:
        for dann in (False, True):
            cfg = load_config(moons_configs(dann), moons_overrides + SHORT + [
                f"seed={seed}", f"run_dir={tmp_path / f'{dann}{seed}'}"])
            acc[dann].append(read_results(train(cfg))[-1]["target_acc"])
    margin = sum(acc[True]) / len(SEEDS) - sum(acc[False]) / len(SEEDS)
    assert margin > MIN_MARGIN, acc


class _Recording(ArrayDataset):
    """An ArrayDataset that notes the index of every example a batch is built from."""

    def __init__(self, inner: ArrayDataset):
        super().__init__(inner.x, inner.y, inner.input_key, inner.prepare, inner.augment)
        self.seen: list[int] = []

    def __getitems__(self, keys):
        self.seen += [k[0] for k in keys]
        return super().__getitems__(keys)


def _source_visits(tmp_path, moons_overrides, order: str) -> tuple[list[int], int]:
    cfg = load_config(moons_configs(True), moons_overrides + [
        "data.per_moon=5", "train.batch_size=1", "train.steps=25", "train.eval_every=25",
        "train.checkpoint_every=25", "train.embedding_samples=0", f"train.source_order={order}",
        f"run_dir={tmp_path / order}"])
    data = build_run(cfg, torch.device("cpu")).data
    data.source_train = _Recording(data.source_train)
    train(cfg, data=data)
    return data.source_train.seen, len(data.source_train)


def test_fixed_source_order_visits_the_examples_in_dataset_order_every_pass(tmp_path, moons_overrides):
    # the DANN authors' per-example script: `for i in range(nb_examples)` in every pass
    seen, n = _source_visits(tmp_path, moons_overrides, "fixed")
    assert n == 10 and seen == [i % n for i in range(25)]
    shuffled, _ = _source_visits(tmp_path, moons_overrides, "shuffled")
    assert sorted(shuffled[:n]) == list(range(n)) and shuffled[:n] != list(range(n))
    assert shuffled[:n] != shuffled[n:2 * n]  # a fresh permutation per pass
