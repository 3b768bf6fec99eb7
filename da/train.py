"""The one training loop.

Step-based: endless iterators over the source (labeled) and target (unlabeled) streams,
progress p = step / steps drives the learning-rate and adaptation schedules. The trainer
owns backward, optimiser and scheduler steps, mixed precision, gradient clipping and the
non-finite check, so algorithms only define losses. Losses stay on the device and become
Python floats only when logged.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from da import checkpoint, distributed
from da.config import Config, ConfigError, run_dir_of, to_flat_dict, to_yaml
from da.contracts import DomainData
from da.data.loader import EndlessLoader
from da.evaluation import evaluate
from da.inference import to_device
from da.interrupt import StopRequest, TrainingInterrupted
from da.provenance import git_state, provenance
from da.run_folder import check_run_dir, config_differences
from da.run_log import QuietLogger, RunLogger, read_results
from da.runs import DTYPES, Run, build_run, resolve_device, use_amp
from da.tasks import task_of


def target_to_show(run: Run) -> tuple[str, object]:
    """The target split summaries show: target_test, or where a dataset has no target
    labels at all, target_train (predictions to look at, with no truth beside them)."""
    if run.data.target_test is not None:
        return "target_test", run.data.target_test
    return "target_train", run.data.target_train


class NonFiniteLossError(RuntimeError):
    pass


class Trainer:
    def __init__(self, cfg: Config, data: DomainData | None = None):
        """data: splits built elsewhere (e.g. reverse validation's swapped domains);
        None = build them from cfg.data."""
        self.cfg = cfg
        self.data = data
        self.run_dir = run_dir_of(cfg)
        device = resolve_device(cfg.device)
        self.world = distributed.init_world(device.type)
        if self.world.active and device.type == "cuda":  # one GPU per process
            device = torch.device("cuda", self.world.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        self.warnings: list[str] = []
        self.commit = git_state()["commit"]  # once: saved in every checkpoint, compared on resume

    def fit(self, stop_after: int | None = None) -> Path:
        """Train to cfg.train.steps (resuming from checkpoints/last.pt if present).

        stop_after: return right after that many steps *without* a final checkpoint, as a
        killed process would (used by the resume tests).
        SIGTERM / SIGINT: the step in flight finishes, a checkpoint is written, and
        TrainingInterrupted is raised (da.interrupt).
        """
        cfg, run_dir, world = self.cfg, self.run_dir, self.world
        check_run_dir(run_dir, cfg)  # before the done check: a stale finished run is not reused
        if distributed.broadcast(world, (run_dir / "done").exists() if world.main else None):
            if world.main:
                print(f"{run_dir}: already done")
            return run_dir
        text = to_yaml(cfg)
        if world.main:
            print(f"run folder: {run_dir}\n{text}", flush=True)
        if not world.main:  # rank 0 builds (and caches) the data first: no two writers of one cache
            distributed.barrier(world)
        run = build_run(cfg, self.device, self.data)  # before config.yaml: a config that cannot build leaves no folder
        if world.main:
            distributed.barrier(world)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(text)
        loader = dict(num_workers=cfg.train.num_workers, rank=world.rank, world=world.size,
                      pin_memory=cfg.train.pin_memory and self.device.type == "cuda")
        source = EndlessLoader(run.data.source_train, cfg.train.batch_size, cfg.seed,
                               cfg.train.source_order == "shuffled", **loader)
        target = (EndlessLoader(run.data.target_train, cfg.train.batch_size, cfg.seed + 7919, True, **loader)
                  if run.algorithm.uses_target else None)
        state = {"step": 0, "best_source_val": -1.0, "sums": {}, "count": 0}
        last = run_dir / "checkpoints" / "last.pt"
        # Rank 0 reads the checkpoint and hands it to every rank: no shared disk needed.
        ckpt = distributed.broadcast(world, checkpoint.load(last, "cpu") if world.main and last.exists() else None)
        if ckpt is not None:
            # Loaded on the CPU: RNG states must stay CPU byte tensors; load_state_dict moves
            # model and optimiser state to the parameters' device.
            state = self._restore(run, source, target, ckpt, last)
            if world.main:
                print(f"resuming from {last} at step {state['step']}", flush=True)
        elif world.main:  # a fresh start: drop what a run killed before its first checkpoint logged
            for leftover in ("tb", "results.jsonl", "checkpoints/best.pt", "warnings.txt"):
                path = run_dir / leftover
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            prov = provenance(cfg.seed, getattr(cfg.data, "data_seed", None), self.device)
            if world.active:
                prov["distributed"] = {"world_size": world.size, "backend": world.backend}
            if cfg.train.init_from:
                start, left_out = checkpoint.init_weights(run.algorithm, cfg.train.init_from)
                prov["init_from"] = str(start)
                if left_out:  # the source algorithm's own parts (domain classifiers, teacher)
                    prov["init_from_left_out"] = left_out
            (run_dir / "provenance.json").write_text(json.dumps(prov, indent=2))
        if ckpt is None and cfg.train.init_from and not world.main:  # the same start on every rank
            checkpoint.init_weights(run.algorithm, cfg.train.init_from)
        self._speed_switches(run)
        step_module = self._step_module(run)

        log = RunLogger(run_dir, state["step"]) if world.main else QuietLogger()
        if state["step"] == 0 and world.main:
            log.text("config", text)
            log.text("provenance", (run_dir / "provenance.json").read_text())
        for message in self.warnings:
            log.text("warning", message)
        try:
            with StopRequest() as stop:
                finished = self._loop(run, step_module, source, target, state, log, last, stop_after, stop)
            if finished:
                self._check_replicas(run)
                if world.main:
                    self._finish(run, log)
        finally:
            log.close()
        distributed.barrier(world)
        return run_dir

    def _speed_switches(self, run: Run) -> None:
        cfg = self.cfg.train
        if cfg.channels_last:
            run.algorithm.to(memory_format=torch.channels_last)
        if cfg.compile:
            # In place (nn.Module.compile): state_dict keys stay those of the plain modules,
            # so checkpoints of compiled and plain runs are interchangeable.
            run.algorithm.feature_extractor.compile()
            run.algorithm.task_head.compile()

    def _step_module(self, run: Run):
        """What a training step calls: the algorithm's losses, wrapped in
        DistributedDataParallel under torchrun (algorithms that update no parameter, like
        AdaBN, run unwrapped: DDP needs a backward after every forward)."""
        world = self.world
        if not world.active or not run.algorithm.updates_parameters:
            return run.algorithm.losses
        from torch.nn.parallel import DistributedDataParallel

        module = distributed.LossModule(run.algorithm)
        if self.cfg.train.sync_batchnorm:
            if self.device.type != "cuda":
                raise ConfigError("train.sync_batchnorm=true needs CUDA (torch's SyncBatchNorm has no CPU "
                                  "kernel); on the CPU the ranks keep per-rank BatchNorm statistics")
            # In place below the wrapper; the new layers keep the same Parameter objects,
            # so the optimiser built on them still holds them.
            module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        # find_unused_parameters: a domain classifier sits idle in source-only steps of
        # some algorithms, and a teacher has no gradient at all.
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)

    def _loop(self, run: Run, step_module, source, target, state, log, last: Path,
              stop_after: int | None, stop: StopRequest) -> bool:
        cfg, world = self.cfg, self.world
        steps = cfg.train.steps
        amp = use_amp(cfg, self.device)
        autocast = (torch.autocast(self.device.type, dtype=getattr(torch, cfg.optim.amp_dtype)) if amp
                    else nullcontext())
        # Per loss term, the first step at which it was non-finite (-1: never). Kept on the
        # device and read only when we sync anyway (logging, evaluation, checkpoints).
        first_bad: dict[str, torch.Tensor] = {}
        dtype = DTYPES[cfg.train.dtype]
        channels_last = cfg.train.channels_last
        sums, count = state["sums"], state["count"]
        run.algorithm.train()
        bar = tqdm(total=steps, initial=state["step"], disable=not (cfg.train.progress_bar and world.main),
                   dynamic_ncols=True, file=sys.stdout)
        start = state["step"]
        for step in range(start, steps):
            if stop_after is not None and step - start >= stop_after:
                bar.close()
                return False
            progress = step / steps
            src = to_device(next(source), self.device, dtype, channels_last)
            tgt = to_device(next(target), self.device, dtype, channels_last) if target is not None else None
            with autocast:
                losses = step_module(src, tgt, progress)
            total = losses["total"]
            if run.algorithm.updates_parameters:
                run.optimizer.zero_grad(set_to_none=True)
                run.scaler.scale(total).backward()
                if cfg.optim.grad_clip > 0:
                    run.scaler.unscale_(run.optimizer)
                    torch.nn.utils.clip_grad_norm_(run.algorithm.parameters(), cfg.optim.grad_clip)
                run.scaler.step(run.optimizer)
                run.scaler.update()
            for k, v in losses.items():
                v = v.detach()
                bad = first_bad.get(k)
                if bad is None:
                    bad = first_bad[k] = torch.full((), -1, dtype=torch.long, device=v.device)
                first_bad[k] = torch.where((bad < 0) & ~torch.isfinite(v), step + 1, bad)
                sums[k] = sums.get(k, 0.0) + v.float()
            count += 1
            lr = run.optimizer.param_groups[-1]["lr"]
            if run.algorithm.updates_parameters:  # no optimiser step, no schedule step
                run.scheduler.step()
            done_steps = step + 1
            bar.update(1)

            if done_steps % cfg.train.log_every == 0 or done_steps == steps:
                self._check_finite(first_bad, done_steps, last)
                means = {k: float(v / count) for k, v in distributed.mean_over_ranks(world, sums).items()}
                log.scalars("train", {**means, "lr": lr}, done_steps)
                bar.set_postfix({k: f"{v:.3f}" for k, v in means.items() if k != "lambda"})
                sums, count = {}, 0
            if done_steps % cfg.train.eval_every == 0 or done_steps == steps:
                self._check_finite(first_bad, done_steps, last)  # never evaluate a NaN model
                if world.main:
                    self._evaluate(run, done_steps, log, state)
                state["best_source_val"] = distributed.broadcast(world, state["best_source_val"])
            stopping = distributed.any_rank(world, stop.signum is not None, self.device)
            if done_steps % cfg.train.checkpoint_every == 0 or done_steps == steps or stopping:
                self._check_finite(first_bad, done_steps, last)
                state.update(step=done_steps, sums=sums, count=count)
                self._save(run, source, target, state, last)
            if stopping and done_steps < steps:
                bar.close()
                signum = stop.signum if stop.signum is not None else signal.SIGTERM
                raise TrainingInterrupted(int(signum), done_steps, str(last))
        bar.close()
        return True

    def _check_finite(self, first_bad: dict[str, torch.Tensor], step: int, last: Path) -> None:
        """Stops the run at the first non-finite loss, naming the step and the loss term;
        nothing is saved after it, so checkpoints/last.pt stays the last good state."""
        at = {k: int(v) for k, v in first_bad.items()}
        bad = {k: s for k, s in at.items() if s >= 0}
        if not bad:
            return
        first = min(bad.values())
        terms = [k for k, s in sorted(bad.items(), key=lambda kv: (kv[1], kv[0] == "total", kv[0]))]
        kept = f"the last good checkpoint ({last}) was kept" if last.exists() else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"{self.run_dir}: non-finite loss at step {first} in term '{terms[0]}' (non-finite terms, "
            f"with the first step each: {', '.join(f'{k}@{bad[k]}' for k in terms)}); {kept}. Lower "
            "optim.lr, set optim.grad_clip, or check the data for NaN.")

    def _check_replicas(self, run: Run) -> None:
        """Under torchrun: every rank must end with bit-identical parameters (DDP's
        contract). Rank 0 records the digests in distributed.json; a mismatch is an error."""
        world = self.world
        if not world.active:
            return
        digests = distributed.gather(world, distributed.parameter_digest(run.algorithm))
        if world.main:
            (self.run_dir / "distributed.json").write_text(json.dumps({
                "world_size": world.size, "backend": world.backend, "parameter_digests": digests,
                "in_sync": len(set(digests)) == 1}, indent=2) + "\n")
        if len(set(digests)) != 1:
            raise RuntimeError(f"{self.run_dir}: ranks ended with different parameters ({digests})")

    def _evaluate(self, run: Run, step: int, log: RunLogger, state: dict) -> None:
        if not self.cfg.train.progress_bar:  # a 3D evaluation takes minutes: say what is going on
            print(f"evaluating at step {step}", flush=True)
        metrics = evaluate(run, step)
        log.result(metrics)
        log.scalars("val", {k: v for k, v in metrics.items() if k != "step"}, step)
        split, dataset = target_to_show(run)
        for tag, image in task_of(run.data).summary_images(run.algorithm, dataset, self.device).items():
            log.image(f"{split}/{tag}", image, step)  # 2D segmentation: overlays in TensorBoard
        # best.pt is chosen on held-out SOURCE data: target labels never select a model.
        # Segmentation selects on source mIoU: accuracy is dominated by the background class.
        score = metrics.get("source_val_miou", metrics["source_val_acc"])
        if score > state["best_source_val"]:
            state["best_source_val"] = score
            checkpoint.save_atomic({"model": run.algorithm.state_dict(), "step": step, "metrics": metrics},
                                   self.run_dir / "checkpoints" / "best.pt")

    def _save(self, run: Run, source, target, state: dict, last: Path) -> None:
        # Every rank's RNG state (dropout, domain-row sampling differ per rank), so each
        # resumes its own stream; collective, so every rank calls it; rank 0 writes.
        rngs = distributed.gather(self.world, checkpoint.rng_state())
        if not self.world.main:
            return
        checkpoint.save_atomic({
            "model": run.algorithm.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(),
            "source_loader": source.state_dict(),
            "target_loader": target.state_dict() if target is not None else None,
            "rng": rngs[0],
            "rng_ranks": rngs,
            "step": state["step"],
            "best_source_val": state["best_source_val"],
            "sums": state["sums"],
            "count": state["count"],
            "config": to_yaml(self.cfg),
            "git_commit": self.commit,
        }, last)

    def _restore(self, run: Run, source, target, ckpt: dict, path: Path) -> dict:
        checkpoint.check_resumable(ckpt, path)
        changed = config_differences(ckpt["config"], self.cfg) if "config" in ckpt else []
        if changed:
            raise checkpoint.CheckpointError(
                f"{path}: written by a run with another config (differs in {', '.join(changed[:6])}); it "
                f"does not belong to {self.run_dir} - delete it to restart the run")
        checkpoint.load_model_state(run.algorithm, ckpt["model"], path)
        try:
            run.optimizer.load_state_dict(ckpt["optimizer"])
            run.scheduler.load_state_dict(ckpt["scheduler"])
            run.scaler.load_state_dict(ckpt["scaler"])
            source.load_state_dict(ckpt["source_loader"])
            if target is not None:
                target.load_state_dict(ckpt["target_loader"])
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise checkpoint.CheckpointError(f"{path}: optimiser / loader state does not fit this run "
                                             f"({type(exc).__name__}: {exc})") from None
        rngs = ckpt.get("rng_ranks") or [ckpt["rng"]]
        if len(rngs) == self.world.size:
            checkpoint.set_rng_state(rngs[self.world.rank])
        else:  # another world size: the data order still resumes exactly, dropout does not
            checkpoint.set_rng_state(rngs[0])
            if self.world.rank:
                torch.manual_seed(self.cfg.seed * 1000 + self.world.rank)
            self._warn(f"{path}: saved by {len(rngs)} process(es), resumed by {self.world.size}: "
                       "the data order resumes exactly, per-rank random streams do not")
        commit, now = ckpt.get("git_commit"), self.commit
        if commit and commit != now:
            self._warn(f"{path}: written by commit {commit[:12]}, resumed by {now[:12]}: the rest of "
                       "this run comes from other code (a cut-off run goes on)")
        state = {k: ckpt[k] for k in ("step", "best_source_val", "count")}
        state["sums"] = {k: v.to(self.device) for k, v in ckpt["sums"].items()}
        return state

    def _warn(self, message: str) -> None:
        """Printed, kept for TensorBoard's text tab, and appended to the run's warnings.txt."""
        self.warnings.append(message)
        if self.world.main:
            print(f"warning: {message}", flush=True)
            with open(self.run_dir / "warnings.txt", "a") as f:
                f.write(message + "\n")

    def _finish(self, run: Run, log: RunLogger) -> None:
        results = read_results(self.run_dir)
        final = {k: v for k, v in results[-1].items() if k != "step"}
        log.hparams(to_flat_dict(self.cfg), final)
        n = self.cfg.train.embedding_samples
        if n > 0:
            self._embeddings(run, log, n)
        self._clouds(run, log)
        (self.run_dir / "done").write_text(json.dumps(results[-1]) + "\n")
        print("final (last checkpoint): " + ", ".join(f"{k}={v:.4f}" for k, v in final.items()), flush=True)

    def _clouds(self, run: Run, log: RunLogger) -> None:
        """The task's predicted target-test clouds (3D: voxel clouds), as PLY files under
        predictions/ and in TensorBoard's Open3D tab, coloured by prediction."""
        from data_tools.io import PointCloud, write_cloud

        split, dataset = target_to_show(run)
        for cloud in task_of(run.data).summary_clouds(run.algorithm, dataset, self.device, split):
            write_cloud(self.run_dir / "predictions" / f"{cloud.stem}.ply",
                        PointCloud(cloud.xyz, cloud.colours, labels=cloud.labels["predicted"]))
            if "labels" in cloud.labels:  # the truth beside it: `da view ... --color error` finds it
                np.save(self.run_dir / "predictions" / f"{cloud.stem}_labels.npy", cloud.labels["labels"].astype(np.uint8))
            log.cloud(cloud.tag, cloud.xyz, cloud.colours, cloud.labels, self.cfg.train.steps, cloud.label_names)

    def _embeddings(self, run: Run, log: RunLogger, n: int) -> None:
        task = task_of(run.data)
        feats, domains, labels = [], [], []
        for name, dataset in (("source", run.data.source_val), ("target", target_to_show(run)[1])):
            f, y = task.pooled_features(run.algorithm, dataset, self.device, n)
            feats.append(f)
            domains += [name] * len(f)
            labels += y.tolist()
        log.embedding(np.concatenate(feats), domains, labels, self.cfg.train.steps)


def train(cfg: Config, stop_after: int | None = None, data: DomainData | None = None) -> Path:
    return Trainer(cfg, data).fit(stop_after)
