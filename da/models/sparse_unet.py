"""A sparse-voxel U-Net in plain PyTorch: 3x3x3 convolutions over every occupied voxel.

Why not spconv: its CPU wheel (spconv 2.3.x + cumm) installs, but its CPU path is the
same gather-matmul-scatter this file does, it brings a second native toolchain whose
wheels must match the CUDA of each machine, and it would be the one backbone the tests
cannot run everywhere. This module needs nothing beyond torch, runs unchanged on CPU and
CUDA, and is small enough to read.

Input: a point batch with "grid" (B, N, 3) integer voxel coordinates (the block loader
computes them from the block's metric coordinates and the dataset's voxel size) besides
"coord" (B, N, 3) and "feat" (B, N, C). Points falling in the same voxel (duplicates
that pad a small block, or several points per voxel) become one sparse site whose input
is their mean, plus a constant occupancy channel; the output features of a site go back to each of its points, so the
model keeps the (B, C, N) contract of every point backbone.

Structure (MinkUNet-like): per level two submanifold 3x3x3 convolutions (output sites =
input sites, so thin bars never dilate), a 2x2x2 stride-2 convolution down to the next
level (grid 2x coarser), and on the way up a stride-2 transposed convolution, the skip
features of that level concatenated, and one more 3x3x3 convolution. With 1 cm voxels
and five levels the coarsest grid is 16 cm, so the receptive field spans a column's
whole cross-section while the finest level still resolves a 6 mm tie.

Neighbour tables: every site gets an int64 key (block, x, y, z); a sorted key array and
`torch.searchsorted` find the site at each of the 27 offsets (a missing one points at an
all-zero padding row). A convolution is then one gather (M, 27, C) and one matmul with
the (27 C, C') weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from da.config_schema import ModelConfig
from da.models import MODELS, ModelParts
from da.models.pointnet import point_head
from da.registry import register

BITS = 20  # bits per spatial axis in a site key: 2^20 voxels (10 km at 1 cm) per block
OFFSETS_3 = torch.tensor([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
OFFSETS_2 = torch.tensor([(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)])


def site_keys(block: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
    """int64 key per site from its block index (M,) and non-negative grid xyz (M, 3)."""
    key = block.long()
    for a in range(3):
        key = (key << BITS) | xyz[:, a].long()
    return key


@dataclass
class Level:
    """The sites of one resolution: block index, grid coordinates, 3x3x3 neighbour table."""

    block: torch.Tensor  # (M,)
    xyz: torch.Tensor  # (M, 3) int64, >= 0
    neighbours: torch.Tensor  # (M, 27) site index of each offset, M (padding row) if empty
    offset_pairs: list  # filled by pairs() once, then shared by every conv of the level

    @staticmethod
    def build(block: torch.Tensor, xyz: torch.Tensor) -> Level:
        keys = site_keys(block, xyz)  # sites arrive unique and sorted by key (torch.unique)
        offsets = OFFSETS_3.to(xyz.device)
        moved = xyz.unsqueeze(1) + offsets  # (M, 27, 3)
        valid = (moved >= 0).all(-1) & (moved < (1 << BITS)).all(-1)
        nkeys = site_keys(block.repeat_interleave(27), moved.clamp_min(0).reshape(-1, 3))
        pos = torch.searchsorted(keys, nkeys).clamp_max(len(keys) - 1)
        found = (keys[pos] == nkeys) & valid.reshape(-1)
        neighbours = torch.where(found, pos, torch.full_like(pos, len(keys)))
        return Level(block, xyz, neighbours.view(-1, 27), [])

    def pairs(self) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """Per non-empty offset k: (k, output sites, their neighbour at offset k)."""
        if not self.offset_pairs:
            for k in range(27):
                has = self.neighbours[:, k] < len(self.block)
                out = torch.nonzero(has).squeeze(1)
                if len(out):
                    self.offset_pairs.append((k, out, self.neighbours[out, k]))
        return self.offset_pairs

    def coarser(self) -> tuple[Level, torch.Tensor, torch.Tensor]:
        """(next level at half resolution, parent of each site, child offset 0..7)."""
        half = torch.div(self.xyz, 2, rounding_mode="floor")
        keys, parent = torch.unique(site_keys(self.block, half), return_inverse=True)
        first = torch.zeros(len(keys), dtype=torch.long, device=keys.device)
        first.scatter_(0, parent, torch.arange(len(parent), device=keys.device))
        child = self.xyz - 2 * half
        offset = child[:, 0] * 4 + child[:, 1] * 2 + child[:, 2]
        return Level.build(self.block[first], half[first]), parent, offset


class SubmanifoldConv(nn.Module):
    """3x3x3 convolution whose output sites are its input sites, + BatchNorm + ReLU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(27 * c_in, c_out))
        nn.init.kaiming_normal_(self.weight.view(27, c_in, c_out).permute(2, 1, 0), nonlinearity="relu")
        self.norm = nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor, level: Level) -> torch.Tensor:
        # Gather-matmul-scatter per offset over existing neighbours only: bars are lines of
        # voxels, most of the 27 offsets are empty; on benchmark blocks this cut a training
        # step from ~10 s to ~4.5 s (1 thread) against one dense (M, 27 C) gather + matmul.
        w = self.weight.view(27, x.shape[1], -1)
        out = x.new_zeros(len(x), w.shape[2])
        for k, dst, src in level.pairs():
            out.index_add_(0, dst, x[src] @ w[k])
        return torch.relu(self.norm(out))


class DownConv(nn.Module):
    """2x2x2 stride-2 convolution: each child adds W[offset] x to its parent."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(8, c_in, c_out))
        nn.init.kaiming_normal_(self.weight.permute(2, 1, 0), nonlinearity="relu")
        self.norm = nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor, parent: torch.Tensor, offset: torch.Tensor,
                n_parents: int) -> torch.Tensor:
        # All 8 offsets in one matmul, then each child's own: 8x the flops of a grouped
        # version but one dense kernel and no loop (the grouped version was not measured).
        c_out = self.weight.shape[2]
        every = (x @ self.weight.permute(1, 0, 2).reshape(x.shape[1], 8 * c_out)).view(-1, 8, c_out)
        per_child = every[torch.arange(len(x), device=x.device), offset]
        out = x.new_zeros(n_parents, per_child.shape[1]).index_add_(0, parent, per_child)
        return torch.relu(self.norm(out))


class UpConv(nn.Module):
    """Stride-2 transposed convolution: each child gets W[offset] x_parent."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(c_in, 8 * c_out))
        nn.init.kaiming_normal_(self.weight.T, nonlinearity="relu")
        self.norm = nn.BatchNorm1d(c_out)
        self.c_out = c_out

    def forward(self, x: torch.Tensor, parent: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        all_offsets = (x @ self.weight).view(len(x), 8, self.c_out)
        return torch.relu(self.norm(all_offsets[parent, offset]))


@dataclass
class SparseUNetConfig(ModelConfig):
    name: str = "sparse_unet"
    widths: list[int] = field(default_factory=lambda: [16, 32, 64, 96, 128])  # per level
    head_hidden: list[int] = field(default_factory=lambda: [32])
    dropout: float = 0.0

    def validate(self) -> None:
        if len(self.widths) < 1 or min(self.widths) < 1:
            raise ValueError(f"widths needs at least one positive width, got {self.widths}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class SparseUNetFeatures(nn.Module):
    def __init__(self, in_channels: int, widths: list[int]):
        super().__init__()
        self.encoders = nn.ModuleList()
        for i, w in enumerate(widths):  # level i > 0 starts from the down-convolution's w
            c = in_channels if i == 0 else w
            self.encoders.append(nn.ModuleList([SubmanifoldConv(c, w), SubmanifoldConv(w, w)]))
        self.downs = nn.ModuleList(DownConv(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.ups = nn.ModuleList(UpConv(b, a) for a, b in zip(widths[:-1], widths[1:]))
        self.decoders = nn.ModuleList(SubmanifoldConv(2 * a, a) for a in widths[:-1])
        self.num_features = widths[0]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        grid = batch["grid"]
        b, n, _ = grid.shape
        inputs = torch.cat([batch["coord"], batch["feat"]], dim=-1).reshape(b * n, -1)
        grid = grid.long() - grid.long().amin(dim=1, keepdim=True)  # non-negative per block
        blocks = torch.arange(b, device=grid.device).repeat_interleave(n)
        keys, site = torch.unique(site_keys(blocks, grid.reshape(-1, 3)), return_inverse=True)
        count = torch.zeros(len(keys), device=grid.device).index_add_(0, site, torch.ones_like(
            site, dtype=torch.float32))
        x = inputs.new_zeros(len(keys), inputs.shape[1]).index_add_(0, site, inputs)
        x = x / count.to(x.dtype).unsqueeze(1)  # mean input of the points in each site
        # + a constant occupancy channel: without it, sites whose inputs are all zero would
        # be invisible to the convolutions (a zero in, a zero out)
        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        first = torch.zeros(len(keys), dtype=torch.long, device=grid.device)
        first.scatter_(0, site, torch.arange(b * n, device=grid.device))
        level = Level.build(blocks[first], grid.reshape(-1, 3)[first])
        skips, links = [], []
        for i, (conv_a, conv_b) in enumerate(self.encoders):
            x = conv_b(conv_a(x, level), level)
            if i == len(self.encoders) - 1:
                break
            coarse, parent, offset = level.coarser()
            skips.append((x, level))
            links.append((parent, offset))
            x = self.downs[i](x, parent, offset, len(coarse.block))
            level = coarse
        for i in reversed(range(len(skips))):
            skip, level = skips[i]
            parent, offset = links[i]
            x = self.ups[i](x, parent, offset)
            x = self.decoders[i](torch.cat([x, skip], dim=1), level)
        return x[site].view(b, n, -1).transpose(1, 2).contiguous()


@register(MODELS, "sparse_unet", SparseUNetConfig)
def build_sparse_unet(cfg: SparseUNetConfig, data) -> ModelParts:
    cfg.validate()
    features = SparseUNetFeatures(data.input_shape[0] + 1, list(cfg.widths))  # + occupancy
    return ModelParts(features, point_head(features.num_features, list(cfg.head_hidden),
                                           data.num_classes, cfg.dropout))
