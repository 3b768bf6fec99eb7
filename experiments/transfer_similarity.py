"""How similar is each transfer target to what the ImageNet network knows? Measured, not assumed.

For each target of the transfer table (spacing renders, Digits-M) and, as references, crops
of the real photos that ship with scikit-image / scikit-learn ("natural") and of digits
without any photo ("plain digits"), at the table's 64 px and with the network's own input
normalisation:

1. ImageNet confidence: the mean maximum softmax probability of EfficientNet-Lite0's own
   1000-class ImageNet classifier (Hendrycks & Gimpel's out-of-distribution score: images
   like the training distribution get confident predictions).
2. Separability from natural photos: 5-fold cross-validated accuracy of a logistic
   regression telling the target's images from natural-photo crops, on the frozen pooled
   ImageNet features (0.5 = indistinguishable; 1.0 = fully separable).
3. What the features know about the task: a converged logistic-regression probe on the
   frozen pooled features, trained on the large training split, scored on target_test -
   ImageNet weights against the same network at random init (the gain is what the
   ImageNet features bring to that task).

Reads no choice of the table (its rows are fixed in experiments/tables/transfer_imagenet.yaml);
target-test labels here only score the probes and are reported as such.

    python experiments/transfer_similarity.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

RESULTS = Path("experiments/results/transfer")
CONFIGS = {"spacing": "experiments/configs/transfer_spacing.yaml",
           "digits": "experiments/configs/transfer_digits.yaml"}
NATURAL = ["astronaut", "coffee", "chelsea", "rocket", "cat"]  # everyday photos (skimage) + sklearn's two


def natural_crops(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, 3, size, size) uint8: random square crops (30-80% of the shorter side) of real photos."""
    from PIL import Image
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = [getattr(data, name)() for name in NATURAL] + list(load_sample_images().images)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.3, 0.8))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = Image.fromarray(img[top:top + side, left:left + side]).convert("RGB").resize((size, size),
                                                                                          Image.BILINEAR)
        out.append(np.asarray(crop).transpose(2, 0, 1))
    return np.stack(out)


def plain_digits(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, 3, size, size) uint8: scikit-learn's 8x8 digits upsampled, white on black, no photo."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits().images
    idx = np.random.default_rng(seed).permutation(len(d))[:n]
    out = [np.asarray(Image.fromarray((d[i] * 255 / 16).astype(np.uint8)).resize((size, size), Image.BILINEAR))
           for i in idx]
    return np.repeat(np.stack(out)[:, None], 3, axis=1)


@torch.no_grad()
def features_and_confidence(net, images: np.ndarray, normalise, batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Pooled 1280-d features and the ImageNet classifier's max softmax probability."""
    feats, conf = [], []
    for i in range(0, len(images), batch):
        x = normalise(torch.from_numpy(images[i:i + batch]))
        f = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(net.forward_features(x), 1), 1)
        feats.append(f.numpy())
        conf.append(net.classifier(f).softmax(1).max(1).values.numpy())
    return np.concatenate(feats), np.concatenate(conf)


def separability(a: np.ndarray, b: np.ndarray, seed: int = 0) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = min(len(a), len(b))
    rng = np.random.default_rng(seed)
    x = np.concatenate([a[rng.permutation(len(a))[:n]], b[rng.permutation(len(b))[:n]]])
    y = np.r_[np.zeros(n), np.ones(n)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    return float(cross_val_score(clf, x, y, cv=5).mean())


def probe(train_x, train_y, test_x, test_y) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
    return float(clf.fit(train_x, train_y).score(test_x, test_y))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--reference", type=int, default=400, help="natural-photo crops / plain digits")
    args = ap.parse_args()

    from da.config import load_config
    from da.data import build_data
    from da.models import efficientnet_lite as lite
    from da.normalisation import Normalise
    from da.provenance import git_state, machine_summary

    normalise = Normalise(lite.INPUT_NORMALISATION)
    imagenet = lite.imagenet_classifier("efficientnet_lite0")
    torch.manual_seed(0)
    random_net = lite.EfficientNetLite("efficientnet_lite0").eval()

    nat_f, nat_c = features_and_confidence(imagenet, natural_crops(args.reference, args.size), normalise)
    rows = [("natural photo crops (reference)", nat_c, None, None, None)]
    pd_f, pd_c = features_and_confidence(imagenet, plain_digits(args.reference, args.size), normalise)
    rows.append(("plain digits, no photo (reference)", pd_c, separability(pd_f, nat_f), None, None))
    for target, cfg_path in CONFIGS.items():
        cfg = load_config(["experiments/configs/transfer.yaml", "experiments/configs/transfer_imagenet.yaml",
                           cfg_path])
        data = build_data(cfg.data)
        tr_x, tr_y = data.source_train.x.numpy(), data.source_train.y.numpy()
        te_x, te_y = data.target_test.x.numpy(), data.target_test.y.numpy()
        tr_f, tr_c = features_and_confidence(imagenet, tr_x, normalise)
        te_f, _ = features_and_confidence(imagenet, te_x, normalise)
        rtr_f, _ = features_and_confidence(random_net, tr_x, normalise)
        rte_f, _ = features_and_confidence(random_net, te_x, normalise)
        rows.append((f"{target} (table target)", tr_c, separability(tr_f, nat_f),
                     probe(tr_f, tr_y, te_f, te_y), probe(rtr_f, tr_y, rte_f, te_y)))
        print(rows[-1][0], "done", flush=True)

    git = git_state()
    lines = ["# How similar are the transfer targets to ImageNet? (EfficientNet-Lite0, measured)", "",
             f"From `python experiments/transfer_similarity.py` at commit {git['commit'][:12]}"
             f"{' (dirty)' if git['dirty'] else ''}; machine: {machine_summary()}, {torch.get_num_threads()} threads. {args.size} px, the network's "
             "own normalisation; no randomness but the crop positions (seed 0) and the random-init network "
             "(torch seed 0).", "",
             "| images | ImageNet max-softmax (mean ± std) | separable from natural crops (5-fold CV acc.) "
             "| linear probe, ImageNet features | linear probe, random-init features | gain |",
             "|---|---|---|---|---|---|"]
    for name, conf, sep, p_in, p_rand in rows:
        cells = [f"{conf.mean():.3f} ± {conf.std():.3f}", "-" if sep is None else f"{sep:.3f}",
                 "-" if p_in is None else f"{p_in:.3f}", "-" if p_rand is None else f"{p_rand:.3f}",
                 "-" if p_in is None else f"{p_in - p_rand:+.3f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Natural crops: {args.reference} random crops of scikit-image's {', '.join(NATURAL)} and "
              "scikit-learn's two sample photos. Plain digits: scikit-learn's 8x8 digits, upsampled. Probes: "
              "logistic regression (standardised features, C = 0.1) trained on the large training split "
              "(200 per class), scored on target_test (target-test labels score this diagnostic only).", ""]
    (RESULTS / "transfer_similarity.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
