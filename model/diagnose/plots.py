"""Figures of a diagnosis, drawn on matplotlib's Agg canvas (no pyplot state)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from model.diagnose.measures import MODULES, TERMS, VARIANTS
from model.diagnose.readings import DiagnosisReport, percent

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "plot_report",
]

# ------------------------------------------------------------------------------------------- figures


def plot_report(report: DiagnosisReport) -> dict[str, Figure]:
    """Figures of a diagnosis, drawn on matplotlib's Agg canvas (no pyplot state).

    Returns:
        ``gradients`` (weighted norm per term and module, start and end), ``latents`` (pooled z_a vs
        z_b on their two main axes, paired vs unpaired distances), ``skip_reliance``, ``curves``
        (training-batch losses per step, held-out errors per snapshot) and, when clean images are
        known, ``data`` (an example clean pair, its best intensity mappings and residuals). Save one
        with ``fig.savefig(path)``.
    """
    figs = {
        "gradients": _plot_gradients(report),
        "latents": _plot_latents(report),
        "skip_reliance": _plot_reliance(report),
        "curves": _plot_curves(report),
    }
    if report.data.known and report.data.example:
        figs["data"] = _plot_data(report)
    return figs


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _plot_gradients(report: DiagnosisReport) -> Figure:
    fig = _figure(11, 4)
    axes = fig.subplots(1, 2, sharey=True)
    present = [t for t in TERMS if t in report.end.gradients.present]
    mods = [m for m in MODULES if m != "discriminator" or "adv" in present]
    x, width = np.arange(len(mods)), 0.8 / max(len(present), 1)
    for ax, snap in zip(axes, (report.start, report.end), strict=True):
        g = snap.gradients
        for i, term in enumerate(present):
            heights = [g.weighted[term][m] or np.nan for m in mods]  # a zero bar cannot sit on a log axis
            offset = (i - (len(present) - 1) / 2) * width
            ax.bar(x + offset, heights, width, label=f"{term} (w={g.weights[term]:g})")
        ax.set_xticks(x, mods)
        ax.set_yscale("log")
        ax.set_title(f"step {snap.step}")
    axes[0].set_ylabel("gradient norm of weight * term")
    axes[1].legend(fontsize="small")
    fig.suptitle("gradient each weighted loss term sends to each module (no bar = 0)")
    return fig


def _plot_latents(report: DiagnosisReport) -> Figure:
    fig = _figure(11, 4.5)
    ax0, ax1 = fig.subplots(1, 2)
    s1 = report.end
    za, zb = s1.arrays.get("z_a"), s1.arrays.get("z_b")  # (B, 2L) pooled
    if za is not None and len(za) > 1:
        both = np.concatenate([za, zb])
        centred = both - both.mean(0)
        axes = np.linalg.svd(centred, full_matrices=False)[2][:2]  # (<=2, 2L) main directions
        proj = np.pad(centred @ axes.T, ((0, 0), (0, 2 - len(axes))))  # (2B, 2)
        pa, pb = proj[: len(za)], proj[len(za) :]
        for p, q in zip(pa, pb, strict=True):
            ax0.plot([p[0], q[0]], [p[1], q[1]], color="0.8", lw=0.5)
        ax0.scatter(pa[:, 0], pa[:, 1], s=12, label=f"z_a ({report.domains[0]})")
        ax0.scatter(pb[:, 0], pb[:, 1], s=12, label=f"z_b ({report.domains[1]})")
        ax0.legend(fontsize="small")
        table = np.abs(za[:, None] - zb[None]).mean(2)  # (B, B) mean |z_a[i] - z_b[j]|
        paired, unpaired = np.diag(table), table[~np.eye(len(za), dtype=bool)]
        bins = np.linspace(0, 1.05 * table.max() + 1e-12, 30)
        ax1.hist(unpaired, bins=bins, alpha=0.6, density=True, label="unpaired (i != j)")
        ax1.hist(paired, bins=bins, alpha=0.6, density=True, label="paired (i = j)")
        ax1.legend(fontsize="small")
    ax0.set_title(f"pooled latents on their two main axes; probe accuracy {percent(s1.probe.accuracy)}")
    ax1.set_title("mean |z_a[i] - z_b[j]| of pooled latents")
    fig.suptitle(f"latents at step {s1.step}")
    return fig


def _plot_reliance(report: DiagnosisReport) -> Figure:
    fig = _figure(8, 4)
    ax = fig.subplots()
    cells = [(dec, v) for dec in ("decoder_a", "decoder_b") for v in VARIANTS]
    x = np.arange(len(cells))
    for i, snap in enumerate((report.start, report.end)):
        ax.bar(
            x + (i - 0.5) * 0.38, [snap.reliance[v][dec] for dec, v in cells], 0.38, label=f"step {snap.step}"
        )
    ax.set_xticks(x, [f"{dec}\n{v}" for dec, v in cells])
    ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
    ax.set_ylabel("relative L1 change of the same-domain output")
    ax.set_title(f"skip reliance (the cross path: {report.config.trainer.cross_domain_strategy})")
    ax.legend(fontsize="small")
    return fig


def _plot_curves(report: DiagnosisReport) -> Figure:
    fig = _figure(11, 4)
    ax0, ax1 = fig.subplots(1, 2)
    rows = report.train_losses
    for term in ("content", "recon", "cross"):
        ax0.plot([r["step"] for r in rows], [r.get(term, np.nan) for r in rows], marker=".", label=term)
    ax0.set_title("training-batch losses")
    steps = [s.step for s in report.snapshots]
    da, db = report.domains
    for key, label, style in (
        ("recon_a", f"recon {da}", "-"),
        ("recon_b", f"recon {db}", "-"),
        ("cross_a", "cross x_a_from_b", "-"),
        ("cross_b", "cross x_b_from_a", "-"),
        ("latent_only_a", f"latent-only {da}", "--"),
        ("latent_only_b", f"latent-only {db}", "--"),
    ):
        values = [s.errors.get(key, s.latent_only.get(key)) for s in report.snapshots]
        ax1.plot(steps, values, ls=style, marker="o", label=label)
    ax1.set_title("held-out errors (L1)")
    for ax in (ax0, ax1):
        ax.set_xlabel("step")
        ax.legend(fontsize="small")
    return fig


def _plot_data(report: DiagnosisReport) -> Figure:
    ex = report.data.example
    da, db = report.domains
    fig = _figure(12, 6)
    for row, (src, tgt, key, title) in zip(
        fig.subplots(2, 4),
        (
            ("clean_a", "clean_b", "b_from_a", f"{db} from {da}"),
            ("clean_b", "clean_a", "a_from_b", f"{da} from {db}"),
        ),
        strict=True,
    ):
        images = (ex[src], ex[tgt], ex[f"{key}_mapped"])
        vmax = float(max(ex[src].max(), ex[tgt].max(), 1e-6))
        for ax, img, name in zip(row[:3], images, ("source", "target", "best mapping"), strict=True):
            ax.imshow(img, cmap="gray", vmin=0, vmax=vmax)
            ax.set_title(f"{title}: {name}", fontsize="small")
        resid = ex[f"{key}_residual"]
        lim = float(np.abs(resid).max()) or 1.0
        row[3].imshow(resid, cmap="coolwarm", vmin=-lim, vmax=lim)
        row[3].set_title("residual: what no intensity mapping explains", fontsize="small")
        for ax in row:
            ax.set_axis_off()
    fig.suptitle("a clean pair after the best per-pixel intensity mapping (hypothesis 2)")
    return fig
