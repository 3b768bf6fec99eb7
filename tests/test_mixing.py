"""CoSMix (da/algorithms/mixing.py): every point keeps its label through the mix, the
mixes are reproducible, the mean teacher follows by EMA, no target label can enter a
run, and tiny 3D runs (alone and with point-wise DANN) finish with finite losses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from da import checkpoint
from da.algorithms.base import IGNORE_INDEX
from da.algorithms.mixing import CosMix, CosMixConfig, choose_classes, mix_blocks, present_classes
from da.config import load_config
from da.data import build_data
from da.train import train
from data_tools.target_dataset import build_rebar3d
from tests.conftest import tiny_rebar3d_overrides

REPO = Path(__file__).resolve().parent.parent
CONFIGS = [REPO / "experiments/configs/rebar3d.yaml", REPO / "experiments/configs/rebar3d_pointnet.yaml",
           REPO / "experiments/configs/rebar3d_cosmix.yaml"]
OTHER = 100_000  # id offset of the other batch's points


def _blocks(b: int, n: int, offset: int, seed: int) -> dict[str, torch.Tensor]:
    """Point blocks whose feat[..., 0] is a unique point id (offset + flat index)."""
    g = torch.Generator().manual_seed(seed)
    ids = offset + torch.arange(b * n, dtype=torch.float32).view(b, n)
    return {"coord": torch.rand(b, n, 3, generator=g), "feat": torch.stack([ids, -ids], dim=-1),
            "grid": torch.randint(-9, 9, (b, n, 3), generator=g, dtype=torch.int32)}


def _labels(b: int, n: int, seed: int) -> torch.Tensor:
    choices = torch.tensor([0, 1, 2, IGNORE_INDEX])
    return choices[torch.randint(0, 4, (b, n), generator=torch.Generator().manual_seed(seed))]


def _origin(ids: torch.Tensor, n: int, n_other: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(from other?, block, point) of each output id."""
    ids = ids.long()
    other = ids >= OTHER
    flat = torch.where(other, ids - OTHER, ids)
    size = torch.where(other, n_other, n)
    return other, flat // size, flat % size


@pytest.mark.parametrize("n_other", [50, 80])
def test_mix_keeps_every_label_and_input_with_its_point(n_other):
    b, n, k = 6, 50, 3
    base, other = _blocks(b, n, 0, 1), _blocks(b, n_other, OTHER, 2)
    base_y, other_y = _labels(b, n, 3), _labels(b, n_other, 4)
    chosen = torch.rand(b, k, generator=torch.Generator().manual_seed(5)) < 0.5
    mixed, labels, pasted = mix_blocks(base, base_y, other, other_y, chosen, torch.Generator().manual_seed(6))
    assert labels.shape == pasted.shape == (b, n) and mixed["coord"].shape == (b, n, 3)
    assert set(mixed) == {"coord", "feat", "grid"} and mixed["grid"].dtype == torch.int32
    is_other, block, point = _origin(mixed["feat"][..., 0], n, n_other)
    assert (block == torch.arange(b)[:, None]).all()  # block i only mixes with block i
    assert torch.equal(is_other, pasted)
    for name, y_in in (("base", base_y), ("other", other_y)):
        sel = is_other if name == "other" else ~is_other
        src = other if name == "other" else base
        assert torch.equal(labels[sel], y_in[block[sel], point[sel]])  # label travels with its point
        for key in ("coord", "grid", "feat"):
            assert torch.equal(mixed[key][sel], src[key][block[sel], point[sel]])
    # pasted: only labelled points of the classes chosen for their block
    assert (labels[pasted] != IGNORE_INDEX).all()
    assert chosen[block[pasted], labels[pasted]].all()
    ids = mixed["feat"][..., 0]
    assert all(len(torch.unique(row)) == n for row in ids)  # drawn without replacement
    assert pasted.any() and (~pasted).any()


def test_mix_with_nothing_chosen_is_the_base_block_and_draws_are_uniform():
    b, n = 4, 30
    base, other = _blocks(b, n, 0, 1), _blocks(b, n, OTHER, 2)
    base_y, other_y = _labels(b, n, 3), _labels(b, n, 4)
    none = torch.zeros(b, 3, dtype=torch.bool)
    mixed, labels, pasted = mix_blocks(base, base_y, other, other_y, none, torch.Generator().manual_seed(0))
    assert not pasted.any()
    assert torch.equal(mixed["feat"][..., 0].sort(dim=1).values, base["feat"][..., 0])  # every base point
    # all of `other` pasted, as many as the base: each union point kept with chance 1/2
    b, n = 200, 20
    all_zero = torch.zeros(b, n, dtype=torch.long)
    _, _, pasted = mix_blocks(_blocks(b, n, 0, 1), all_zero, _blocks(b, n, OTHER, 2), all_zero,
                              torch.ones(b, 3, dtype=torch.bool), torch.Generator().manual_seed(1))
    assert 0.4 < pasted.float().mean() < 0.6  # 4000 draws: std ~0.01


def test_classes_are_chosen_among_the_present_ones():
    labels = torch.tensor([[0, 0, 255], [2, 1, 1], [255, 255, 255]])
    present = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 0]], dtype=torch.bool)
    assert torch.equal(present_classes(labels, 3), present)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(choose_classes(labels, 3, 1.0, g), present)
    assert not choose_classes(labels, 3, 0.0, g).any()
    many = labels.repeat(1000, 1)
    chosen = choose_classes(many, 3, 0.5, g)
    assert not (chosen & ~present.repeat(1000, 1)).any()
    assert 0.45 < chosen.sum() / present.repeat(1000, 1).sum() < 0.55  # 3000 draws: std ~0.01


class PointFeatures(nn.Module):
    """Per-point features (B, C, N) from coord and feat, with BatchNorm (as point backbones)."""

    num_features = 8

    def __init__(self, channels: int = 5):
        super().__init__()
        self.lin, self.bn = nn.Conv1d(channels, 8, 1), nn.BatchNorm1d(8)

    def forward(self, batch):
        x = torch.cat([batch["coord"], batch["feat"]], dim=-1).transpose(1, 2)
        return torch.relu(self.bn(self.lin(x)))


def _cosmix(seed: int = 0, **cfg) -> CosMix:
    torch.manual_seed(seed)
    return CosMix(PointFeatures(), nn.Conv1d(8, 3, 1), CosMixConfig(**{"ramp": 0.0, **cfg}))


def _point_batches(b: int = 4, n: int = 64) -> tuple[dict, dict]:
    source = {**_blocks(b, n, 0, 1), "label": _labels(b, n, 2)}
    return source, _blocks(b, n, OTHER, 3)


def test_cosmix_mixes_carry_true_and_pseudo_labels_with_their_points():
    alg = _cosmix(min_confidence=0.0, keep_fraction=0.7, class_fraction=0.7)
    source, target = _point_batches()
    pseudo = alg._pseudo(target)
    assert (pseudo == IGNORE_INDEX).any() and (pseudo != IGNORE_INDEX).any()
    mixes = alg.mixes(source, target, pseudo, 3, torch.Generator().manual_seed(0))
    for side in ("target", "source"):
        inputs, labels, pasted = mixes[side]
        assert "label" not in inputs and labels.shape == (4, 64)
        from_target, block, point = _origin(inputs["feat"][..., 0], 64, 64)  # target ids >= OTHER
        assert torch.equal(pasted, from_target if side == "source" else ~from_target)
        expect = torch.where(from_target, pseudo[block, point], source["label"][block, point])
        assert torch.equal(labels, expect)  # true labels and pseudo-labels travel with their points
        assert (labels[from_target & pasted] != IGNORE_INDEX).all()  # only confident target points pasted
        assert pasted.any()


def test_cosmix_mixes_whole_samples_of_per_sample_batches():
    torch.manual_seed(0)
    alg = CosMix(nn.Linear(2, 4), nn.Linear(4, 3), CosMixConfig(min_confidence=0.0, keep_fraction=1.0))
    ids = torch.arange(16, dtype=torch.float32)
    source = {"x": torch.stack([ids, ids], 1), "label": torch.arange(16) % 3}
    target = {"x": torch.stack([ids + OTHER, ids], 1)}
    pseudo = torch.arange(16) % 2
    (t_x, t_y, t_p), (s_x, s_y, s_p) = alg.mixes(source, target, pseudo, 3, torch.Generator().manual_seed(0)).values()
    for x, y, p in ((t_x["x"], t_y, t_p), (s_x["x"], s_y, s_p)):
        assert x.shape == (16, 2) and y.shape == p.shape == (16,)
        other = x[:, 0] >= OTHER
        idx = (x[:, 1]).long()
        assert torch.equal(y, torch.where(other, pseudo[idx], source["label"][idx]))


def test_cosmix_losses_are_reproducible_and_resume_from_the_state_dict():
    alg = _cosmix(min_confidence=0.0, dann_weight=1.0, disc_hidden=[8], domain_rows=50)
    source, target = _point_batches()
    alg.train()
    first = alg.losses(source, target, 0.0)
    expected = {"task", "total", "mix_target", "mix_source", "pasted_target", "pasted_source",
                "pseudo_kept", "pseudo_share_0", "domain", "domain_acc", "lambda", "mix_weight"}
    assert expected <= set(first) and all(torch.isfinite(v).all() for v in first.values())
    first["total"].backward()
    assert all(p.grad is None for p in alg.teacher.parameters())
    assert all(p.grad is not None for p in alg.feature_extractor.parameters())
    assert all(p.grad is not None for p in alg.domain_loss.parameters())
    assert int(alg.mix_step) == 1
    saved = {k: v.clone() for k, v in alg.state_dict().items()}
    second = alg.losses(source, target, 0.5)
    other = _cosmix(seed=1, min_confidence=0.0, dann_weight=1.0, disc_hidden=[8], domain_rows=50)
    assert int(other.mix_seed) != int(alg.mix_seed)  # another run's seed ...
    other.load_state_dict(saved)  # ... resumed from this run's state: the same mixes
    other.train()
    again = other.losses(source, target, 0.5)
    assert all(torch.equal(second[k], again[k]) for k in second)
    assert not torch.equal(first["mix_target"], second["mix_target"])  # another step, another mix


def test_cosmix_teacher_starts_as_student_and_follows_by_ema():
    alg = _cosmix(ema=0.5)
    fe = alg.feature_extractor
    with torch.no_grad():
        fe.lin.weight.add_(1.0)  # as if weights had just been loaded (init_from)
    alg.train()
    source, target = _point_batches()
    out = alg.losses(source, target, 0.0)
    assert torch.equal(alg.teacher["feature_extractor"].lin.weight, fe.lin.weight)  # copied at start
    opt = torch.optim.SGD([p for p in alg.parameters() if p.requires_grad], lr=0.5)
    out["total"].backward()
    before_t = alg.teacher["feature_extractor"].lin.weight.clone()
    opt.step()
    assert not torch.equal(fe.lin.weight, before_t)
    alg.losses(source, target, 0.5)
    torch.testing.assert_close(alg.teacher["feature_extractor"].lin.weight, 0.5 * before_t + 0.5 * fe.lin.weight)
    assert not alg.teacher.training and alg.training


class ImageFeatures(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, batch):
        return self.conv(batch["image"])


def test_cosmix_refuses_image_segmentation():
    torch.manual_seed(0)
    alg = CosMix(ImageFeatures(), nn.Conv2d(4, 3, 1), CosMixConfig())
    source = {"image": torch.rand(2, 3, 8, 8), "label": torch.randint(0, 3, (2, 8, 8))}
    with pytest.raises(ValueError, match="pasting mix"):
        alg.losses(source, {"image": torch.rand(2, 3, 8, 8)}, 0.5)
    with pytest.raises(ValueError, match="class_fraction"):
        CosMixConfig(class_fraction=1.5).validate()


@pytest.fixture(scope="module")
def r3d(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rebar3d_cosmix") / "ds"
    return build_rebar3d(out, scenes=5, mode="fast", preset="typical", seed=2, density=4000,
                         progress=False, image_size=(256, 192), n_views=5, elements=["column", "beam"])


STEPS = ["train.steps=4", "train.eval_every=4", "train.checkpoint_every=4",
         "algorithm.ramp=0", "algorithm.min_confidence=0"]  # mixes at full weight from step 0


def _train_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"] if t.startswith("train/")}


def test_cosmix_and_cosmix_with_dann_train_on_points(r3d, tmp_path):
    for name, extra in [("cosmix", []),
                        ("cosmix_dann", ["algorithm.dann_weight=1", "algorithm.disc_hidden=[16]",
                                         "algorithm.domain_rows=128"])]:
        run = train(load_config(CONFIGS, tiny_rebar3d_overrides(r3d, tmp_path, name, *STEPS, *extra)))
        assert (run / "done").exists()
        scalars = _train_scalars(run)
        terms = {"total", "task", "mix_target", "mix_source"} | ({"domain"} if extra else set())
        assert {f"train/{t}" for t in terms} <= set(scalars)
        assert all(np.isfinite(v) for series in scalars.values() for _, v in series)
        assert max(v for _, v in scalars["train/mix_target"]) > 0  # the mixes were learnt from
        assert max(v for _, v in scalars["train/pasted_source"]) > 0


def _poison(folder: Path) -> None:
    """Every target label on disk (the oracle's and the test's) set to another class."""
    for path in [*(folder / "oracle_labels").glob("*.npy"), *(folder / "target_test").glob("*_labels.npy")]:
        y = np.load(path)
        np.save(path, np.where(y == 255, 0, (y + 1) % 3).astype(y.dtype))


def test_no_target_label_reaches_a_cosmix_run(r3d, tmp_path):
    clean, poisoned = tmp_path / "clean", tmp_path / "poisoned"
    for folder in (clean, poisoned):  # without the voxel caches, which hold labels too
        shutil.copytree(r3d, folder, ignore=shutil.ignore_patterns("prepared-*"))
    _poison(poisoned)
    extra = ["algorithm.dann_weight=1", "algorithm.disc_hidden=[16]", "algorithm.domain_rows=128"]
    runs = [train(load_config(CONFIGS, tiny_rebar3d_overrides(folder, tmp_path, f"run_{folder.name}", *STEPS, *extra)))
            for folder in (clean, poisoned)]
    states = [checkpoint.load(run / "checkpoints" / "last.pt")["model"] for run in runs]
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])  # teacher included
    assert _train_scalars(runs[0]) == _train_scalars(runs[1])
    results = [[json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()] for run in runs]
    untouched = [[{k: v for k, v in r.items() if k.startswith("source_val")} for r in rs] for rs in results]
    assert json.dumps(untouched[0]) == json.dumps(untouched[1]) and untouched[0][0]  # NaN-safe
    # the poison is real: the target-test metrics (which read target labels) moved, and
    # where the oracle reads target labels, they differ
    assert results[0][-1]["target_acc"] != results[1][-1]["target_acc"]
    oracle = [build_data(load_config(CONFIGS, tiny_rebar3d_overrides(f, tmp_path, "oracle", "data.target_labeled=true")).data)
              for f in (clean, poisoned)]
    a, b = (o.source_train.scenes[0].labels for o in oracle)
    assert a.shape == b.shape and (a != b).mean() > 0.5
