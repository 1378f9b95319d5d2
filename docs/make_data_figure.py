"""Make docs/img/phantom_pairs.png: a few phantom pairs (clean and noisy) and what each knob does.

Run from the repository root:

    .venv/bin/python docs/make_data_figure.py [--out docs/img/phantom_pairs.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from model.data.phantom import TISSUES, generate_pairs  # noqa: E402

SIZE, SEED, ROWS = 128, 4, 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "phantom_pairs.png")
    out = parser.parse_args().out

    base = generate_pairs(ROWS, SIZE, noise=(0.08, 0.08), seed=SEED)
    knobs = {
        "structural_difference=1": generate_pairs(
            ROWS, SIZE, noise=(0, 0), structural_difference=1.0, seed=SEED
        ),
        "misregistration=1": generate_pairs(ROWS, SIZE, noise=(0, 0), misregistration=1.0, seed=SEED),
        "fat_suppression_variation=1": generate_pairs(
            ROWS, SIZE, noise=(0, 0), fat_suppression_variation=1.0, seed=SEED
        ),
    }

    cols = 8
    fig = Figure(figsize=(2.0 * cols, 2.15 * ROWS), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(ROWS, cols, squeeze=False)
    for r in range(ROWS):
        panels = [
            ("clean PD", base.clean_a[r], "gray", (0, 1)),
            ("clean PDFS", base.clean_b[r], "gray", (0, 1)),
            ("PD, noise 0.08", base.a[r], "gray", (0, 1)),
            ("PDFS, noise 0.08", base.b[r], "gray", (0, 1)),
            ("tissue labels", base.labels_a[r], "tab10", (0, 9)),
        ]
        sd = knobs["structural_difference=1"]
        panels.append(("structural_difference=1:\nPDFS, extra blobs", sd.clean_b[r], "gray", (0, 1)))
        mr = knobs["misregistration=1"]
        overlay = np.stack([mr.clean_a[r], np.clip(mr.clean_b[r] * 2, 0, 1), mr.clean_a[r]], axis=-1)
        panels.append(
            ("misregistration=1:\nPD (magenta) / PDFS (green)", np.clip(overlay, 0, 1), None, (0, 1))
        )
        fv = knobs["fat_suppression_variation=1"]
        panels.append(("fat_suppression_variation=1:\nPDFS", fv.clean_b[r], "gray", (0, 1)))
        for k, (title, img, cmap, (lo, hi)) in enumerate(panels):
            ax = axes[r, k]
            ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=8)
        axes[r, 0].set_ylabel(f"pair {r}", fontsize=8)
    names = ", ".join(f"{i}={t.name}" for i, t in enumerate(TISSUES))
    fig.suptitle(
        f"model.data.phantom.generate_pairs({ROWS}, {SIZE}, seed={SEED})   labels: {names}", fontsize=8
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
