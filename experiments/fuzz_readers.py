"""Fuzz every data_tools reader with >= 1,000 hostile files each (issue 14).

    python experiments/fuzz_readers.py --cases 1000 [--readers ply pcd ...]

Cases come from tests/fuzzing.py (the test tooling the suite runs a few cases of; truncated, bit-flipped, overwritten, spliced, zeroed and
random variants of one valid file per format; case i of a reader is a function of
(reader, i), so a finding can be replayed). Each reader runs in a child process that
reports one line per case: a native crash kills only the child (counted as `crash`, the
run goes on with the next case), and a case that takes longer than --timeout seconds is
counted as `hang`. Writes experiments/results/reliability/reliability_fuzz.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import select
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the case generator is test tooling: tests/fuzzing.py


def child(name: str, start: int, cases: int) -> None:
    """Runs cases start..cases-1 of one reader, one JSON line per case on stdout."""
    import tempfile
    import warnings
    import zlib

    import numpy as np

    from tests.fuzzing import READERS, check, mutate, seed_bytes

    warnings.simplefilter("ignore")
    reader = READERS[name]
    seed = seed_bytes(reader)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(start, cases):
            kind, data = mutate(seed, np.random.default_rng([zlib.crc32(name.encode()), i]))
            print(json.dumps({"i": i, "kind": kind, "started": True}), flush=True)
            outcome, detail = check(reader, data, Path(tmp) / str(i))
            print(json.dumps({"i": i, "kind": kind, "outcome": outcome, "detail": detail}), flush=True)


def run_reader(name: str, cases: int, timeout: float) -> dict:
    counts, kinds, findings = Counter(), Counter(), []
    start, t0 = 0, time.time()
    while start < cases:
        proc = subprocess.Popen([sys.executable, __file__, "--child", name, str(start), str(cases)],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
        current, hung = None, False
        while True:  # a hang: a case started and not finished within --timeout seconds
            # Between cases (start-up, writing the seed file) the child may take longer on a
            # loaded machine; only a case in flight past --timeout is a hang.
            ready, _, _ = select.select([proc.stdout], [], [], timeout if current else 10 * timeout)
            if not ready:
                proc.kill()
                hung = True
                break
            # Unbuffered (bufsize=0): a line already read into a buffer would be invisible to
            # select() and look like a hang.
            line = proc.stdout.readline()
            if not line:
                break
            rec = json.loads(line.decode())
            if rec.get("started"):
                current = rec
                continue
            counts[rec["outcome"]] += 1
            kinds[rec["kind"]] += 1
            if rec["outcome"] not in ("loaded", "clear_error") and len(findings) < 20:
                findings.append(rec)
            start, current = rec["i"] + 1, None
        rc = proc.wait()
        if current is not None:  # the child died inside a case (native crash) or hung in it
            what = "hang" if hung else "crash"
            counts[what] += 1
            findings.append({**current, "outcome": what, "detail": f"exit code {rc}"})
            start = current["i"] + 1
        elif rc != 0 and start < cases:  # died between cases: say so, go on with the next
            counts["child_died_between_cases"] += 1
            findings.append({"i": start, "outcome": "child_died_between_cases", "detail": f"exit code {rc}"})
            start += 1
    return {"reader": name, "cases": cases, "counts": dict(counts), "kinds": dict(kinds),
            "findings": findings, "seconds": round(time.time() - t0, 1)}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    from tests.fuzzing import READERS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--readers", nargs="+", default=sorted(READERS))
    p.add_argument("--timeout", type=float, default=60.0, help="seconds one case may take before it counts as a hang")
    p.add_argument("--out", default=str(REPO / "experiments/results/reliability/reliability_fuzz.json"))
    args = p.parse_args()
    results = []
    print("| reader | cases | loaded | clear error | other error | garbage | crash | hang | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.readers:
        r = run_reader(name, args.cases, args.timeout)
        results.append(r)
        c = r["counts"]
        print(f"| {name} | {r['cases']} | {c.get('loaded', 0)} | {c.get('clear_error', 0)} | "
              f"{c.get('other_error', 0)} | {c.get('garbage', 0)} | {c.get('crash', 0)} | {c.get('hang', 0)} | {r['seconds']} |",
              flush=True)
    out = Path(args.out)
    # A run over some readers replaces their entries and keeps the others'.
    kept = json.loads(out.read_text())["results"] if out.exists() else []
    merged = {r["reader"]: r for r in kept}
    for r in results:
        merged[r["reader"]] = {**r, "command": "python " + " ".join(sys.argv)}
    out.write_text(json.dumps({"results": [merged[k] for k in sorted(merged)]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
