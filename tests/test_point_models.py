"""Per-point segmentation backbones (pointnet, pointnet2, dgcnn) and their index helpers.

Small widths and N = 256 keep the whole file to a few seconds on one CPU thread.
"""

from __future__ import annotations

import types

import pytest
import torch

from da.models import MODELS, build_model
from da.models.dgcnn import EdgeConv, knn
from da.models.pointnet import shared_mlp
from da.models.pointnet2 import (
    FeaturePropagation,
    SetAbstraction,
    ball_query,
    farthest_point_sample,
    gather_points,
    square_distance,
    three_nn_weights,
)
from da.registry import lookup

B, N, C, K = 2, 256, 3, 3

SMALL = {
    "pointnet": dict(local=[16, 32], global_width=64, fuse=[32, 16], head_hidden=[16]),
    "pointnet2": dict(npoint=[64, 16], radius=[0.2, 0.4], nsample=[8, 8],
                      sa_mlps=[[16, 16], [32, 32]], fp_mlps=[[32], [16, 16]], head_hidden=[16]),
    "pointnet2_pointwise": dict(npoint=[64, 16], radius=[0.2, 0.4], nsample=[8, 8],
                                sa_mlps=[[16, 16], [32, 32]], fp_mlps=[[32], [16, 16]],
                                head_hidden=[16], sa_mode="pointwise"),
    # knn_chunk 100 does not divide N: exercises the chunked kNN and its last partial chunk.
    "dgcnn": dict(k=8, edge=[16, 16], global_width=32, fuse=[32, 16], head_hidden=[16],
                  knn_chunk=100),
}


def build(name: str, channels: int = 3 + C):
    cfg = lookup(MODELS, name.split("_")[0], "model").config(**SMALL[name])
    return build_model(cfg, types.SimpleNamespace(input_shape=(channels,), num_classes=K))


def cloud(seed: int = 0, n: int = N, c: int = C, dtype=torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    coord = torch.rand(B, n, 3, generator=g, dtype=dtype) * torch.tensor([1.0, 1.0, 4.0], dtype=dtype)
    coord[..., :2] -= 0.5  # block-size units: [-0.5, 0.5]^2 x [0, 4]
    return {"coord": coord, "feat": torch.rand(B, n, c, generator=g, dtype=dtype)}


@pytest.fixture(params=["pointnet", "pointnet2", "pointnet2_pointwise", "dgcnn"])
def name(request) -> str:
    return request.param


def test_shapes_and_gradients(name):
    torch.manual_seed(0)
    parts = build(name)
    batch = cloud()
    feats = parts.feature_extractor(batch)
    logits = parts.task_head(feats)
    assert feats.shape == (B, parts.feature_extractor.num_features, N)
    assert logits.shape == (B, K, N)
    # Cross-entropy on random labels: a plain sum would give BatchNorm'd layers zero grads.
    target = torch.randint(0, K, (B, N), generator=torch.Generator().manual_seed(1))
    torch.nn.functional.cross_entropy(logits, target).backward()
    params = list(parts.feature_extractor.named_parameters()) + list(parts.task_head.named_parameters())
    for pname, p in params:
        assert p.grad is not None, f"{pname}: no gradient"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{pname}: zero or bad gradient"


def test_no_extra_features(name):
    parts = build(name, channels=3)
    batch = cloud(c=0)
    assert batch["feat"].shape == (B, N, 0)
    assert parts.task_head(parts.feature_extractor(batch)).shape == (B, K, N)


@pytest.mark.parametrize("model", ["pointnet", "dgcnn"])
def test_permutation_equivariant(model):
    # pointnet2 is not: farthest-point sampling starts at point 0, so the order matters.
    torch.manual_seed(0)
    parts = build(model)
    net = torch.nn.Sequential(parts.feature_extractor, parts.task_head).double().eval()
    batch = cloud(dtype=torch.float64)  # float64: no rounding near-ties reorder kNN neighbours
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = net(batch)
        out_perm = net({k: v[:, perm] for k, v in batch.items()})
    torch.testing.assert_close(out_perm, out[:, :, perm])


def test_build_rejects_inconsistent_pointnet2_config():
    cfg = lookup(MODELS, "pointnet2", "model").config(radius=[0.1, 0.2])
    with pytest.raises(ValueError, match="one entry per level"):
        cfg.validate()
    with pytest.raises(ValueError):
        build_model(cfg, types.SimpleNamespace(input_shape=(6,), num_classes=K))


# --- index helpers against brute-force references ----------------------------------------


def test_square_distance_and_gather():
    a, b = torch.rand(2, 5, 3, dtype=torch.float64), torch.rand(2, 7, 3, dtype=torch.float64)
    ref = ((a[:, :, None] - b[:, None]) ** 2).sum(-1)
    torch.testing.assert_close(square_distance(a, b), ref.float())
    idx = torch.randint(0, 7, (2, 4, 3))
    got = gather_points(b.transpose(1, 2), idx)  # channels first: (B, C, 4, 3)
    for i in range(2):
        torch.testing.assert_close(got[i], b[i][idx[i]].permute(2, 0, 1))


def test_fps_distinct_and_spread():
    xyz = cloud(seed=3, n=512)["coord"]
    s = 32
    idx = farthest_point_sample(xyz, s)
    assert idx.shape == (B, s)
    for i in range(B):
        assert len(set(idx[i].tolist())) == s
        picks = xyz[i][idx[i]]
        rand = xyz[i][torch.randperm(512, generator=torch.Generator().manual_seed(i))[:s]]
        min_fps = torch.pdist(picks).min()
        assert min_fps >= torch.pdist(rand).min()
        # FPS is a 2-approximation of the best spread: every point lies within its
        # min pick-to-pick distance of some pick.
        assert torch.cdist(xyz[i], picks).min(1).values.max() <= min_fps + 1e-5


def test_fps_distinct_with_duplicate_points():
    xyz = torch.zeros(1, 10, 3)
    xyz[0, 5:] = 1.0  # only two distinct positions
    assert sorted(farthest_point_sample(xyz, 10)[0].tolist()) == list(range(10))


def test_ball_query_matches_loop():
    xyz = cloud(seed=4, n=200, dtype=torch.float64)["coord"] * 0.5
    centre_idx = farthest_point_sample(xyz, 20)
    centres = xyz[torch.arange(B).unsqueeze(1), centre_idx]
    radius, nsample = 0.3, 6
    got = ball_query(xyz, centres, centre_idx, radius, nsample)
    assert got.shape == (B, 20, nsample)
    for b in range(B):
        for s in range(20):
            c = centre_idx[b, s].item()
            inside = [j for j in range(200) if j != c
                      and ((xyz[b, j] - xyz[b, c]) ** 2).sum() <= radius ** 2]
            ref = ([c] + inside)[:nsample]
            ref += [c] * (nsample - len(ref))
            assert got[b, s].tolist() == ref
            assert (xyz[b, got[b, s]] - xyz[b, c]).norm(dim=-1).max() <= radius
    # Padding paths: an isolated centre, and fewer points than group members.
    lone = torch.tensor([[[0.0, 0, 0], [5, 0, 0], [0, 5, 0]]])
    assert ball_query(lone, lone[:, :1], torch.tensor([[0]]), 0.1, 5).tolist() == [[[0] * 5]]


def test_three_nn_interpolation_weights():
    known = torch.rand(B, 10, 3)
    xyz = torch.cat([known[:, :4], torch.rand(B, 6, 3)], dim=1)
    idx, w = three_nn_weights(xyz, known)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, 10))
    # A point that coincides with a known one takes (all but) its value.
    assert (idx[:, :4, 0] == torch.arange(4)).all() and (w[:, :4, 0] > 0.999).all()
    ref = square_distance(xyz, known).argsort(-1)[..., :3]
    assert (idx.sort(-1).values == ref.sort(-1).values).all()


@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_knn_matches_brute_force(chunk):
    x = torch.rand(B, 50, 5, dtype=torch.float64)
    got = knn(x, 6, chunk)
    assert got.shape == (B, 50, 6)
    for b in range(B):
        for i in range(50):
            dist = [((x[b, j] - x[b, i]) ** 2).sum().item() for j in range(50)]
            ref = sorted(range(50), key=dist.__getitem__)[:6]
            assert sorted(got[b, i].tolist()) == sorted(ref)
    assert knn(x[:, :4], 6).shape == (B, 4, 4)  # k capped at N


def test_edgeconv_equals_literal_edge_features():
    # The factored Wa x_j + (Wb - Wa) x_i must equal conv on built [x_j - x_i, x_i] edges.
    torch.manual_seed(0)
    layer = EdgeConv(in_channels=4, width=8, k=5, chunk=16).double()
    x = torch.rand(B, 4, 40, dtype=torch.float64)
    got = layer(x)
    idx = knn(x.transpose(1, 2), 5)
    nbr = torch.stack([x[i][:, idx[i]] for i in range(B)])  # (B, C, N, k), by plain indexing
    centre = x.unsqueeze(3).expand_as(nbr)
    edges = torch.cat([nbr - centre, centre], dim=1)  # (B, 2C, N, k)
    literal = shared_mlp([8], 8).double()
    literal.load_state_dict(layer.mlp.state_dict())
    ref = literal(edges.reshape(B, 8, -1)).view(B, 8, 40, 5).amax(3)
    torch.testing.assert_close(got, ref)


def test_feature_propagation_interpolates_like_the_gathered_reference():
    # The faster path (one gather per neighbour) against the (B, C, N, k) gather reduced
    # over k; float32 sums in another order: agreement to 1e-6 relative.
    g = torch.Generator().manual_seed(3)
    xyz, known = torch.rand(B, 50, 3, generator=g), torch.rand(B, 12, 3, generator=g)
    feats = torch.randn(B, 5, 12, generator=g)
    fp = FeaturePropagation(5, 0, [4]).eval()
    seen = {}
    fp.mlp.register_forward_hook(lambda m, inp, out: seen.update(interp=inp[0]))
    fp(xyz, known, feats, torch.zeros(B, 0, 50))
    idx, w = three_nn_weights(xyz, known)
    want = (gather_points(feats, idx) * w.unsqueeze(1)).sum(dim=3)
    torch.testing.assert_close(seen["interp"], want, rtol=1e-6, atol=1e-6)


def test_pointwise_set_abstraction_is_the_max_over_members_of_mlp_plus_offset():
    # max_j [mlp(x_j, f_j) + P (x_j - c)], built literally per member, in float64.
    torch.manual_seed(0)
    batch = cloud(dtype=torch.float64)
    xyz, feats = batch["coord"], batch["feat"].transpose(1, 2)
    sa = SetAbstraction(32, 0.3, 8, C, [8, 6], mode="pointwise").double().eval()
    centres, out = sa(xyz, feats)
    idx = farthest_point_sample(xyz, 32)
    group = ball_query(xyz, centres, idx, 0.3, 8)
    with torch.no_grad():
        per_point = sa.mlp(torch.cat([xyz.transpose(1, 2), feats], dim=1))  # (B, 6, N)
        for b in range(B):
            for s in range(0, 32, 5):
                members = group[b, s]
                rel = xyz[b, members] - centres[b, s]  # (K, 3)
                values = per_point[b][:, members] + sa.offset.weight[:, :, 0] @ rel.T  # (6, K)
                torch.testing.assert_close(out[b, :, s], values.max(dim=1).values)
    with pytest.raises(ValueError, match="grouped or pointwise"):
        SetAbstraction(8, 0.3, 4, C, [8], mode="pointwize")
