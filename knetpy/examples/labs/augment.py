"""Data augmentation: what each transform of kp.data.augment does to a batch of digits.

Eight 8x8 digits go through each transform on its own (random crop with 1 pixel of padding,
horizontal flip, random affine, colour jitter, cutout, mixup) and through a seeded Compose of the
first five; the lab prints what changed (mean absolute change per transform) and checks that the
Compose repeats itself for the same seed. With the plot extra it saves the grid augment.png: one row
of originals, then one row per transform.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import knetpy as kp
from knetpy.data import augment as A

from .._common import load_digits, make_parser, parse, run_script

NAME = "augment"
PLOT = "augment.png"


def transforms(seed):
    return {
        "crop (pad 1)": A.RandomCrop(8, padding=1, seed=seed),
        "flip": A.RandomHorizontalFlip(p=1.0, seed=seed),
        "affine": A.RandomAffine(degrees=20, translate=0.1, scale=(0.85, 1.15), seed=seed),
        "jitter": A.ColorJitter(brightness=0.4, contrast=0.4, seed=seed),
        "cutout": A.Cutout(3, seed=seed),
    }


def main(argv=None, prog=None):
    """Apply each transform; the mean changes, whether the seeded pipeline repeats, the picture."""
    args = parse(make_parser(f"lab-{NAME}", __doc__, prog or f"knetpy lab {NAME}"), argv)
    x, y = load_digits()
    x = x[:8].astype(np.float32)
    x = x / max(float(x.max()), 1e-12)  # images in [0, 1]
    rows, changes = [x], {}
    for name, t in transforms(args.seed).items():
        out = t(x)
        rows.append(out)
        changes[name] = float(np.abs(out - x).mean())
    mixed, soft = A.MixUp(alpha=0.4, num_classes=10, seed=args.seed)((x, y[:8]))
    rows.append(mixed)
    changes["mixup"] = float(np.abs(mixed - x).mean())
    pipeline = list(transforms(None).values())
    a = A.Compose(pipeline, seed=args.seed)(x)
    b = A.Compose(pipeline, seed=args.seed)(x)
    repeatable = bool(np.array_equal(a, b))
    for name, v in changes.items():
        print(f"{name:<14s} mean |change| {v:.3f}")
    print(f"mixup labels: rows sum to 1 ({np.allclose(soft.sum(axis=1), 1)}), largest weight per row "
          f"{[round(float(v), 2) for v in soft.max(axis=1)]}")
    print(f"seeded Compose gives the same batch twice: {repeatable}")
    result = {"changes": changes, "repeatable": repeatable, "mixup_label_sums": soft.sum(axis=1).tolist(),
              "plot": None}
    if not args.no_plot:
        grid = np.concatenate(rows + [a])
        result["plot"] = kp.plot.image_grid(grid, Path(args.out) / PLOT, ncols=8, max_images=len(grid),
                                            title="rows: original, crop, flip, affine, jitter, cutout, mixup, "
                                                  "all (seeded)")
        if result["plot"] is not None:
            print(f"saved {result['plot']}")
    return result


if __name__ == "__main__":
    raise SystemExit(run_script(main))
