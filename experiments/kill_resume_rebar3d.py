"""kill -9 a real 3D DANN run at >= 10 random moments; the resumed run must end exactly
like an uninterrupted one (issue 14).

    OMP_NUM_THREADS=1 python experiments/kill_resume_rebar3d.py --kills 10 --seed 0

One reference run trains uninterrupted. The same config then trains in another folder and
is killed with SIGKILL again and again, each time re-run with the same command: at random
moments, right when a checkpoint's temporary file appears (during the write), and shortly
after an evaluation starts. Then it runs to the end, and every evaluation line
(results.jsonl) and every tensor of the final model are compared with the reference.
Writes experiments/results/reliability/reliability_kill.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
OVERRIDES = ["algorithm.domain_level=dense", "data.mode=fast", "data.scenes=12", "data.image_size=[480,360]",
             "data.n_views=8", "train.steps=120", "train.eval_every=40", "train.checkpoint_every=10",
             "train.log_every=5", "train.embedding_samples=0", "train.progress_bar=false", "device=cpu"]
CONFIGS = ["experiments/configs/rebar3d.yaml", "experiments/configs/rebar3d_dann.yaml"]


def command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "da", "train", *CONFIGS, *OVERRIDES, f"run_dir={run_dir}"]


def start(run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(command(run_dir), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for(proc: subprocess.Popen, cond, limit: float) -> bool:
    t0 = time.time()
    while time.time() - t0 < limit and proc.poll() is None:
        if cond():
            return True
        time.sleep(0.001)
    return False


def kill_once(run_dir: Path, moment: str, delay: float) -> dict:
    proc = start(run_dir)
    t0 = time.time()
    lines: list[str] = []
    if moment == "checkpoint_write":
        hit = wait_for(proc, lambda: any((run_dir / "checkpoints").glob(".last.pt.tmp-*")), 600)
    elif moment == "evaluation":
        import threading

        def reader():
            for line in proc.stdout:
                lines.append(line)
        threading.Thread(target=reader, daemon=True).start()
        hit = wait_for(proc, lambda: any("evaluating at step" in x for x in lines), 600)
        time.sleep(delay)
    else:
        hit = not wait_for(proc, lambda: False, delay)
    alive = proc.poll() is None
    if alive:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = None
    last = run_dir / "checkpoints" / "last.pt"
    if last.exists():
        step = torch.load(last, weights_only=False, map_location="cpu")["step"]
    return {"moment": moment, "delay_s": round(delay, 3), "hit": bool(hit), "killed": alive,
            "after_s": round(time.time() - t0, 2), "checkpoint_step": step}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default=str(REPO / "runs/reliability"))
    args = p.parse_args()
    root = Path(args.root)
    ref, killed = root / "reference", root / "killed"
    shutil.rmtree(killed, ignore_errors=True)
    for _attempt in ("data", "timed"):  # the first run also generates the data; the second is timed
        shutil.rmtree(ref, ignore_errors=True)
        t0 = time.time()
        out = subprocess.run(command(ref), cwd=REPO, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stdout[-2000:], out.stderr[-2000:])
            return 1
        reference_s = time.time() - t0  # start-up included
    rng = random.Random(args.seed)
    # Kills until --kills of them hit a live run (a kill that comes after the run ended
    # does not count); two of them aimed at a checkpoint write and an evaluation.
    aimed = ["checkpoint_write", "evaluation"]
    log = []
    for attempt in range(4 * args.kills):
        if sum(r["killed"] for r in log) >= args.kills or (killed / "done").exists():
            break
        moment = aimed.pop(0) if aimed and attempt % 3 == 1 else "random"
        delay = rng.uniform(0.0, 0.5) if moment == "evaluation" else rng.uniform(2.0, 0.25 * reference_s)
        rec = kill_once(killed, moment, delay)
        log.append(rec)
        print(f"attempt {attempt + 1}: {rec}", flush=True)
    final = subprocess.run(command(killed), cwd=REPO, capture_output=True, text=True)
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    a = (ref / "results.jsonl").read_text().splitlines()
    b = (killed / "results.jsonl").read_text().splitlines()
    ma = torch.load(ref / "checkpoints/last.pt", weights_only=False)["model"]
    mb = torch.load(killed / "checkpoints/last.pt", weights_only=False)["model"]
    same_model = all(torch.equal(ma[k], mb[k]) for k in ma)
    report = {"command": "python " + " ".join(sys.argv), "run": " ".join(command(killed)[1:]),
              "reference_seconds": round(reference_s, 1), "kills": log,
              "kills_of_a_live_run": sum(r["killed"] for r in log),
              "evaluations_equal": a == b, "evaluations": len(a), "final_model_bit_identical": same_model,
              "final_reference": json.loads(a[-1]), "final_resumed": json.loads(b[-1])}
    (REPO / "experiments/results/reliability/reliability_kill.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "kills"}, indent=2))
    return 0 if a == b and same_model else 1


if __name__ == "__main__":
    sys.exit(main())
