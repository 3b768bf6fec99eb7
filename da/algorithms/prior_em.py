"""Label-shift correction by EM (Saerens, Latinne & Decaestecker, "Adjusting the outputs of
a classifier to new a priori probabilities: a simple procedure", Neural Computation 2002).

When the target's class frequencies p_t(y) differ from the source's p_s(y) while the
class-conditional appearance p(x | y) stays, the target posterior is the source posterior
re-weighted by p_t(y) / p_s(y) and renormalised. p_t is unknown; EM estimates it from
unlabeled target outputs alone: the E-step re-weights every target posterior with the
current estimate, the M-step sets the estimate to their mean; it converges to the
maximum-likelihood target prior. No weight of the network changes.

Here a trained model (train.init_from) is run like AdaBN (updates_parameters = False):
each step it sees a source batch and a target batch, in eval mode (BatchNorm statistics
and dropout as the trained model has them);

- p_s is the model's mean softmax over the source batches - the class mix the model's
  outputs are calibrated to (its training sampler and class-weighted loss included), not
  the raw pixel frequency of the labels;
- a reservoir keeps the logits of `samples_per_batch` target samples (pixels, points or
  images) of each step, at most `capacity`;
- after every step EM runs on the whole reservoir and sets the buffer `log_prior_ratio`
  = log p_t - log p_s, which `head` (so `predict` and every evaluation path) adds to the
  logits. Checkpoints carry the sums and reservoirs, so a killed run resumes where it was.

With `calibrate` (off by default: the published method), the model's outputs are first
calibrated on the labeled source batches by bias-corrected temperature scaling (BCTS:
logits / T + b, T and b fitted by NLL; Alexandari et al., "Maximum likelihood with
bias-corrected calibration is hard-to-beat at label shift adaptation", ICML 2020), and
p_s is then the source batches' label frequency. EM assumes calibrated posteriors: a
model trained with class-weighted cross-entropy and Dice spreads probability onto rare
classes, and EM then runs off to a corner of the simplex (rebar2d: every pixel a tie).
The source batches are training crops, not held-out data - the calibration the trainer
can give this algorithm; it is checked on source_val by the usual evaluation.

For a segmentation model the prior is per pixel: the share of pixels of each class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from da.algorithms.base import ALGORITHMS, IGNORE_INDEX, Algorithm
from da.config_schema import AlgorithmConfig
from da.registry import register


@dataclass
class PriorEMConfig(AlgorithmConfig):
    name: str = "prior_em"
    samples_per_batch: int = 4096  # target posteriors kept per step (pixels / points / samples)
    capacity: int = 262144  # reservoir size; older entries are replaced at random when full
    iterations: int = 200  # EM iterations per step (stops earlier when the prior settles)
    min_prior: float = 1e-4  # floor of both priors, so a class never predicted keeps a finite ratio
    calibrate: bool = False  # BCTS on the labeled source batches before EM (see the module doc)
    calibration_iterations: int = 50  # L-BFGS iterations of the calibration fit per step


def output_classes(task_head: nn.Module) -> int:
    """The number of classes: the out_channels / out_features of the head's last layer."""
    for m in reversed(list(task_head.modules())):
        k = getattr(m, "out_channels", None) or getattr(m, "out_features", None)
        if isinstance(k, int):
            return k
    raise ValueError("prior_em: cannot tell the number of classes (the task head has no Conv or Linear layer)")


def flat_logits(logits: torch.Tensor) -> torch.Tensor:
    """(N, K) rows from (B, K) or dense (B, K, *spatial) logits."""
    return logits.float().movedim(1, -1).reshape(-1, logits.shape[1])


def em_target_prior(posteriors: torch.Tensor, source_prior: torch.Tensor, iterations: int = 200,
                    tol: float = 1e-7) -> torch.Tensor:
    """Saerens et al.'s EM: the target prior that makes the re-weighted posteriors
    `posteriors` (N, K, under the source prior `source_prior`) self-consistent."""
    prior = source_prior.clone()
    for _ in range(iterations):
        weighted = posteriors * (prior / source_prior)
        weighted = weighted / weighted.sum(dim=1, keepdim=True).clamp_min(1e-12)
        new = weighted.mean(dim=0)
        done = (new - prior).abs().max() < tol
        prior = new
        if done:
            break
    return prior


def fit_bcts(logits: torch.Tensor, labels: torch.Tensor, iterations: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Bias-corrected temperature scaling: (log T, b) minimising the NLL of
    softmax(logits / T + b) on (N, K) logits with their labels."""
    log_t = torch.zeros((), requires_grad=True)
    bias = torch.zeros(logits.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([log_t, bias], lr=0.5, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp() + bias, labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return log_t.detach(), bias.detach()


@register(ALGORITHMS, "prior_em", PriorEMConfig)
class PriorEM(Algorithm):
    uses_target = True
    updates_parameters = False

    def __init__(self, feature_extractor, task_head, cfg: PriorEMConfig):
        super().__init__(feature_extractor, task_head, cfg)
        if cfg.samples_per_batch < 1 or cfg.capacity < cfg.samples_per_batch:
            raise ValueError("prior_em: need 1 <= algorithm.samples_per_batch <= algorithm.capacity")
        k = output_classes(task_head)
        # the correction `head` applies: logits / exp(log_temperature) + bias + log_prior_ratio
        self.register_buffer("log_prior_ratio", torch.zeros(k))
        self.register_buffer("log_temperature", torch.zeros(()))
        self.register_buffer("bias", torch.zeros(k))
        self.register_buffer("source_sum", torch.zeros(k, dtype=torch.float64))  # mean softmax / labels
        self.register_buffer("source_count", torch.zeros((), dtype=torch.float64))
        # raw logits kept: target ones for EM, source ones (with labels) for the calibration
        self.register_buffer("reservoir", torch.zeros(cfg.capacity, k))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        if cfg.calibrate:
            self.register_buffer("source_reservoir", torch.zeros(cfg.capacity, k))
            self.register_buffer("source_labels", torch.zeros(cfg.capacity, dtype=torch.long))
            self.register_buffer("source_filled", torch.zeros((), dtype=torch.long))
        self.eval()

    def train(self, mode: bool = True):
        # Always eval: the posteriors must be those the trained model gives at test time
        # (its BatchNorm statistics, no dropout), and BatchNorm must not drift.
        return super().train(False)

    def calibrated(self, logits: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        """logits / T + b (+ offset), per class along dim 1 of (B, K) or (B, K, *spatial)."""
        per_class = self.bias if offset is None else self.bias + offset
        shape = (1, -1) + (1,) * (logits.dim() - 2)
        return logits / self.log_temperature.exp() + per_class.to(logits.dtype).view(shape)

    def head(self, features):
        return self.calibrated(self.task_head(features), self.log_prior_ratio)

    def priors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(source prior, target prior) as currently estimated."""
        floor = self.cfg.min_prior
        source = (self.source_sum / self.source_count.clamp_min(1)).float().clamp_min(floor)
        source = source / source.sum()
        target = (self.log_prior_ratio.exp() * source).clamp_min(floor)
        return source, target / target.sum()

    def _keep(self, store: torch.Tensor, filled: torch.Tensor, rows: torch.Tensor,
              labels: torch.Tensor | None = None, label_store: torch.Tensor | None = None) -> None:
        """Add up to samples_per_batch random rows to a reservoir (random replacement when full)."""
        n = min(self.cfg.samples_per_batch, len(rows))
        pick = torch.randperm(len(rows), device=rows.device)[:n]  # without replacement
        start = int(filled)
        room = min(self.cfg.capacity - start, n)
        slots = torch.arange(start, start + room, device=rows.device)
        if n > room:  # full: the rest replace entries at random
            slots = torch.cat([slots, torch.randint(self.cfg.capacity, (n - room,), device=rows.device)])
        store[slots] = rows[pick]
        if labels is not None:
            label_store[slots] = labels[pick]
        filled.fill_(start + room)

    def _fit_calibration(self, source) -> None:
        logits = flat_logits(self.task_head(self.features(source)))
        labels = source["label"].reshape(-1)
        keep = labels != IGNORE_INDEX
        self._keep(self.source_reservoir, self.source_filled, logits[keep], labels[keep], self.source_labels)
        n = int(self.source_filled)
        log_t, bias = fit_bcts(self.source_reservoir[:n], self.source_labels[:n], self.cfg.calibration_iterations)
        self.log_temperature.copy_(log_t)
        self.bias.copy_(bias)
        # a calibrated model's source prior is its calibration set's label frequency
        self.source_sum.copy_(torch.bincount(self.source_labels[:n], minlength=len(bias)).double())
        self.source_count.fill_(n)

    @torch.no_grad()
    def losses(self, source, target, progress):
        if progress == 0.0:  # a fresh start (a resumed run carries its sums and reservoirs)
            for name, buf in self.named_buffers():
                if "." not in name:  # ours, not the network's BatchNorm statistics
                    buf.zero_()
        if self.cfg.calibrate:
            self._fit_calibration(source)
        else:
            src = flat_logits(self.task_head(self.features(source))).softmax(1)
            self.source_sum += src.sum(dim=0).double()
            self.source_count += len(src)
        self._keep(self.reservoir, self.filled, flat_logits(self.task_head(self.features(target))))
        source_prior, _ = self.priors()
        posteriors = self.calibrated(self.reservoir[: int(self.filled)]).softmax(1)
        target_prior = em_target_prior(posteriors, source_prior, self.cfg.iterations)
        target_prior = target_prior.clamp_min(self.cfg.min_prior)
        target_prior = target_prior / target_prior.sum()
        self.log_prior_ratio.copy_((target_prior / source_prior).log())
        zero = torch.zeros((), device=self.reservoir.device)
        out = {"task": zero, "total": zero, "temperature": self.log_temperature.exp()}
        for c in range(len(target_prior)):  # logged: how the estimate moves
            out[f"prior_source_{c}"] = source_prior[c].detach()
            out[f"prior_target_{c}"] = target_prior[c].detach()
        return out
