"""The lecture's transfer-learning scenario table, from `da reproduce transfer`'s result.

Reads experiments/results/transfer/transfer.<profile>.json (run it first), and writes

- transfer_scenarios.<profile>.md: per cell (target size x similarity), every strategy's
  target-test accuracy (mean ± std over seeds; lr picked per seed on target-val, epochs =
  the evaluation with the best target-val accuracy), the measured best strategy, the
  lecture's recommendation, and whether they agree - with the margin (best minus
  recommended, seed-matched, mean ± std of the per-seed differences);
- transfer_curves.<profile>.png: target-test accuracy against epoch, scratch vs the
  pretrained strategies, on both large targets (the picked lr, mean over seeds).

    python experiments/transfer_scenarios.py --profile standard                  # self-pretrained ResNet-18
    python experiments/transfer_scenarios.py --table transfer_imagenet --overlay small_bn   # ImageNet Lite0

--overlay PROFILE: rows of TABLE.PROFILE.json replace the same-named rows (a profile that
re-ran some rows with one setting changed); the scenario file is then named
TABLE_scenarios.PROFILE+OVERLAY.md. For the ImageNet table the ResNet-18 scratch rows of
transfer.standard.json are shown beside the EfficientNet scratch rows.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

RESULTS = Path("experiments/results/transfer")
STRATEGIES = ["scratch", "feature_extractor", "features_from_2", "finetune_from_3", "finetune_all"]
# the ImageNet EfficientNet-Lite0 table: five stages, "earlier activations" = stage 4 (H/16)
STRATEGIES_BY_TABLE = {"transfer": STRATEGIES,
                       "transfer_imagenet": ["scratch", "feature_extractor", "features_from_4", "finetune_from_4",
                                             "finetune_all"]}
CELLS = [("spacing", "small"), ("spacing", "large"), ("digits", "small"), ("digits", "large")]
SIMILARITY = {"spacing": "similar", "digits": "very different"}
# The lecture's table. Scenario 3 (small + very different: "fine-tune from activations
# earlier in the network") reads as either STAGE strategy; both count as a match.
RECOMMENDED = {
    ("spacing", "small"): ["feature_extractor"],
    ("spacing", "large"): ["finetune_all"],
    ("digits", "small"): ["features_from_2", "finetune_from_3"],
    ("digits", "large"): ["finetune_all"],
}
PICKED_BY = "source_val"  # the target-val split of the transfer task (see the table description)
PRIMARY = "target_acc_at_best_source_val"


def picked_rows(result: dict) -> dict[str, dict]:
    return {r["name"].split(" <- ")[0]: r for r in result["rows"] if r.get("selected_by") == PICKED_BY}


def recommended(target: str, size: str) -> list[str]:
    """The lecture's strategy names mapped onto the current table's stage numbers."""
    def base(name: str) -> str:  # features_from_2 -> features_from; feature_extractor stays
        return re.sub(r"_\d+$", "", name)

    wanted = {base(r) for r in RECOMMENDED[(target, size)]}
    return [s for s in STRATEGIES if base(s) in wanted]


def cell_report(rows: dict[str, dict], target: str, size: str) -> dict:
    got = {s: rows[f"{target}_{size}_{s}"] for s in STRATEGIES if f"{target}_{size}_{s}" in rows}
    means = {s: r["metrics"][PRIMARY]["mean"] for s, r in got.items()}
    best = max(means, key=means.get)
    rec = max(recommended(target, size), key=lambda s: means.get(s, -1.0))
    diffs = np.asarray(got[best]["metrics"][PRIMARY]["values"]) - np.asarray(got[rec]["metrics"][PRIMARY]["values"])
    # the runner-up: how clear the best strategy's lead is
    second = max((s for s in means if s != best), key=means.get)
    lead = np.asarray(got[best]["metrics"][PRIMARY]["values"]) - np.asarray(got[second]["metrics"][PRIMARY]["values"])
    return {"target": target, "size": size, "strategies": got, "best": best, "recommended": rec,
            "match": best in recommended(target, size), "margin": diffs, "second": second, "lead": lead}


def fmt(summary: dict) -> str:
    return f"{summary['mean']:.3f} ± {summary['std']:.3f}"


def markdown(result: dict, reports: list[dict]) -> str:
    lines = [f"# Transfer-learning scenarios ({result['profile']} profile)", "",
             f"From `{result['command']}` at commit {result['git_commit'][:12]}, "
             f"seeds {result['seeds']}; machine: {result['machine']}.", "",
             "Target-test accuracy, mean ± std over seeds. Learning rate picked per seed by target-val "
             "accuracy (2-point grid), epochs = the evaluation with the best target-val accuracy: no "
             "target-test label chooses anything. `(lr)` = the picked learning rates, seed by seed.", "",
             "| target | similarity | size | " + " | ".join(STRATEGIES) + " |",
             "|---|---|---|" + "---|" * len(STRATEGIES)]
    for rep in reports:
        cells = []
        for s in STRATEGIES:
            r = rep["strategies"].get(s)
            if r is None:
                cells.append("-")
                continue
            lrs = ",".join(p.split("lr=")[-1].rstrip("]") for p in r["picks"].values())
            mark = "**" if s == rep["best"] else ""
            cells.append(f"{mark}{fmt(r['metrics'][PRIMARY])}{mark} ({lrs})")
        lines.append(f"| {rep['target']} | {SIMILARITY[rep['target']]} | {rep['size']} | " + " | ".join(cells) + " |")
    lines += ["", "## Measured best vs the lecture's recommendation", "",
              "| cell | lecture recommends | measured best | agrees? | best - recommended (seed-matched) "
              "| best - runner-up |", "|---|---|---|---|---|---|"]
    for rep in reports:
        m, lead = rep["margin"], rep["lead"]
        lines.append(
            f"| {rep['size']} + {SIMILARITY[rep['target']]} ({rep['target']}) | "
            f"{' or '.join(recommended(rep['target'], rep['size']))} | {rep['best']} | "
            f"{'yes' if rep['match'] else 'NO'} | {m.mean():+.3f} ± {m.std(ddof=1) if len(m) > 1 else 0:.3f} "
            f"(vs {rep['recommended']}) | {lead.mean():+.3f} ± {lead.std(ddof=1) if len(lead) > 1 else 0:.3f} "
            f"(vs {rep['second']}) |")
    small = [r["strategies"]["scratch"]["metrics"][PRIMARY]["mean"] for r in reports
             if r["size"] == "small" and "scratch" in r["strategies"]]
    lines += ["", "Saturation check (the issue: scratch on the small targets below 0.90): "
              + ", ".join(f"{v:.3f}" for v in small)
              + (" - not saturated." if small and max(small) < 0.9 else " - SATURATED: the task is too easy."), ""]
    return "\n".join(lines)


def epochs_per_step(run_dir: Path) -> float:
    """A run's batch size over its training-set size (read from its own config and data)."""
    from da.config import load_config
    from da.data import build_data

    cfg = load_config([run_dir / "config.yaml"])
    return cfg.train.batch_size / len(build_data(cfg.data).source_train)


def curves(result: dict, rows: dict[str, dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from da.run_log import read_results

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    for ax, target in zip(axes, ("spacing", "digits")):
        scale = None  # every large row of a target trains on the same images
        for s in STRATEGIES:
            row = rows.get(f"{target}_large_{s}")
            if row is None:
                continue
            scale = scale or epochs_per_step(Path(row["run_dirs"][0]))
            runs = [read_results(Path(d)) for d in row["run_dirs"]]
            steps = [r["step"] for r in runs[0]]
            acc = np.mean([[e["target_acc"] for e in r][:len(steps)] for r in runs], axis=0)
            ax.plot(np.asarray(steps) * scale, acc, marker="o", ms=3,
                    lw=2.5 if s == "scratch" else 1.5, ls="--" if s == "scratch" else "-", label=s)
        ax.set(title=f"{target} ({SIMILARITY[target]}), large target", xlabel="epoch",
               ylabel="target-test accuracy")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Scratch vs transfer (mean over seeds {result['seeds']}, picked lr)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def pretraining_vs_scratch(reports: list[dict], resnet: dict[str, dict]) -> list[str]:
    """The issue's goal per small cell: the best pretrained strategy minus scratch, seed by seed."""
    lines = ["", "## Pretrained (best strategy) minus scratch, seed-matched", "",
             "| cell | best pretrained | minus EfficientNet scratch, per seed | minus ResNet-18 scratch "
             "(transfer.standard), per seed | >= +0.10 on every seed vs both? |", "|---|---|---|---|---|"]
    for rep in reports:
        got = rep["strategies"]
        pre = {s: r for s, r in got.items() if s != "scratch"}
        if "scratch" not in got or not pre:
            continue
        best = max(pre, key=lambda s: pre[s]["metrics"][PRIMARY]["mean"])
        v = np.asarray(pre[best]["metrics"][PRIMARY]["values"])
        eff = v - np.asarray(got["scratch"]["metrics"][PRIMARY]["values"])
        res_row = resnet.get(f"{rep['target']}_{rep['size']}_scratch")
        res = v - np.asarray(res_row["metrics"][PRIMARY]["values"]) if res_row else None
        ok = eff.min() >= 0.10 and (res is None or res.min() >= 0.10)
        lines.append(f"| {rep['size']} + {SIMILARITY[rep['target']]} ({rep['target']}) | {best} | "
                     + ", ".join(f"{d:+.3f}" for d in eff) + " | "
                     + ("-" if res is None else ", ".join(f"{d:+.3f}" for d in res)) + f" | {'yes' if ok else 'NO'} |")
    return lines


def main() -> None:
    global STRATEGIES
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", default="transfer", choices=sorted(STRATEGIES_BY_TABLE))
    ap.add_argument("--profile", default="standard")
    ap.add_argument("--overlay", default="", help="a profile whose rows replace the same-named rows")
    args = ap.parse_args()
    STRATEGIES = STRATEGIES_BY_TABLE[args.table]
    result = json.loads((RESULTS / f"{args.table}.{args.profile}.json").read_text())
    rows = picked_rows(result)
    tag = args.profile
    if args.overlay:
        over = json.loads((RESULTS / f"{args.table}.{args.overlay}.json").read_text())
        rows.update(picked_rows(over))
        tag = f"{args.profile}+{args.overlay}"
        result = {**result, "profile": tag,
                  "command": f"{result['command']}; {over['command']} (its rows replace the same-named ones)",
                  "git_commit": f"{result['git_commit'][:12]} / {over['git_commit'][:12]}"}
    reports = [cell_report(rows, t, s) for t, s in CELLS
               if any(f"{t}_{s}_{x}" in rows for x in STRATEGIES)]
    md = markdown(result, reports)
    stem = "transfer" if args.table == "transfer" else args.table
    if args.table != "transfer" and (RESULTS / "transfer.standard.json").exists():
        resnet = picked_rows(json.loads((RESULTS / "transfer.standard.json").read_text()))
        md += "\n".join(pretraining_vs_scratch(reports, resnet)) + "\n"
    png = curves(result, rows, RESULTS / f"{stem}_curves.{tag}.png")
    md += f"\n![learning curves]({png.name})\n"
    (RESULTS / f"{stem}_scenarios.{tag}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
