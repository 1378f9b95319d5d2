"""Regenerate docs/findings.md from the matrices' runs: every number and figure comes from the commands
this script runs (each printed, and listed in the document next to what it produced).

    python docs/make_findings.py            # sweeps are resumable: finished runs are not re-run

Needs the project installed (`pip install -e .`); uses the default store (sqlite:///runs/mlflow.db).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
IMG = DOCS / "img" / "findings"
WORK = ROOT / "runs" / "findings"
MATRICES = ("test_matrix", "plan_a", "plan_d", "remedies", "remedies_misregistered")
DIAGNOSE = {"original": "original", "no_skip_everywhere": "no_skip_everywhere"}  # cell -> label
DIAGNOSE_STEPS = 144  # the test matrix's training length: 24 epochs x 6 steps


def orch(*args: str, capture: bool = False) -> str:
    cmd = [sys.executable, "-m", "orchestrator.cli", *args]
    print("$ orch " + " ".join(args), flush=True)
    env = {**os.environ, "COLUMNS": "100"}
    res = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=capture, env=env)
    if res.returncode not in (0, 1):
        detail = res.stderr if capture else ""
        raise SystemExit(f"command failed ({res.returncode}): orch {' '.join(args)}\n{detail}")
    return res.stdout if capture else ""


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}%"


def _cell_sentence(v: dict) -> str:
    ci = v.get("ci") or [None, None]
    state = f", {v['state']}" if v.get("state") else ""
    expected = v.get("expected") or "-"
    agrees = {True: "agrees", False: "**disagrees**", None: "undecided"}[v.get("agrees")]
    finals = v.get("finals", {})
    leak = finals.get("noise_leak")
    psnr = finals.get("cross_psnr_clean")
    extra = []
    if leak is not None:
        extra.append(f"noise leak {leak:.3f}")
    if psnr is not None:
        extra.append(f"PSNR vs clean {psnr:.1f} dB")
    return (
        f"- **{v['cell']}**: {v['verdict']}{state} ({_pct(v.get('rel_change'))} over the window "
        f"[{_pct(ci[0])}, {_pct(ci[1])}]; whole run {_pct(v.get('whole_run_change'))}); expected {expected}: "
        f"{agrees}. {'; '.join(extra)}. {v.get('reason', '')}"
    )


def matrix_section(name: str) -> tuple[str, list[dict]]:
    path = f"matrices/{name}.yaml"
    orch("sweep", path)
    md = orch("report", path, "--format", "markdown", capture=True)
    verdicts = json.loads(orch("report", path, "--format", "json", capture=True))
    figures = sorted((ROOT / "runs" / "reports" / name).glob("*.png"))
    lines = [
        f"### `{path}`",
        "",
        f"Commands: `orch sweep {path}` then `orch report {path} --format markdown`.",
        "",
    ]
    lines += [md.split("\n", 2)[2].strip() if md.startswith("## ") else md.strip(), ""]
    lines += ["Per cell, as the verdict JSON has it:", ""] + [_cell_sentence(v) for v in verdicts] + [""]
    for fig in figures:
        target = IMG / f"{name}_{fig.name}"
        shutil.copy(fig, target)
        lines.append(f"![{name}: {fig.stem}](img/findings/{target.name})")
    return "\n".join(lines) + "\n", verdicts


def diagnose_section() -> tuple[str, dict[str, dict]]:
    sys.path.insert(0, str(ROOT))
    from orchestrator.matrix import load_matrix

    _, specs = load_matrix(ROOT / "matrices" / "test_matrix.yaml")
    WORK.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict] = {}
    lines = [
        "### `orch diagnose` on the test matrix's configs",
        "",
        "Each config is the test matrix's cell at seed 0 (written to `runs/findings/<cell>.json`), "
        f"diagnosed over {DIAGNOSE_STEPS} training steps:",
        "",
    ]
    for cell, label in DIAGNOSE.items():
        spec = next(s for s in specs if s.cell == cell and s.seed == 0)
        cfg = WORK / f"{cell}.json"
        cfg.write_text(json.dumps(spec.config.to_dict(), indent=2))
        rel = cfg.relative_to(ROOT)
        figs = WORK / f"diagnose_{cell}"
        report = json.loads(
            orch(
                "diagnose",
                str(rel),
                str(DIAGNOSE_STEPS),
                "--json",
                "--no-track",
                "--out",
                str(figs),
                capture=True,
            )
        )
        out[label] = report
        command = f"orch diagnose {rel} {DIAGNOSE_STEPS} --json --no-track --out {figs.relative_to(ROOT)}"
        lines += [f"#### {label}: `{command}`", ""]
        lines += [f"| item | step 0 | step {DIAGNOSE_STEPS} | | reading |", "|---|---|---|---|---|"]
        for r in report.get("readings", []):
            cells = [r["item"], r["start"], r["end"], "!" if r.get("alert") else "", r["reading"]]
            lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
        lines.append("")
        for png in sorted(figs.glob("*.png")):
            if png.stem in ("gradients", "skip_reliance", "latents"):
                target = IMG / f"diagnose_{cell}_{png.name}"
                shutil.copy(png, target)
                lines.append(f"![{label}: {png.stem}](img/findings/{target.name})")
        lines.append("")
    return "\n".join(lines) + "\n", out


def baseline_section() -> str:
    """What a constant prediction gets: the baselines every run logs at epoch 0 (the target domain's mean
    training image, scored like the cross metric on the test matrix's validation pairs) and the floor."""
    sys.path.insert(0, str(ROOT))
    from model.trainer import Trainer
    from orchestrator.matrix import load_matrix

    _, specs = load_matrix(ROOT / "matrices" / "test_matrix.yaml")
    trainer = Trainer(specs[0].config)
    baselines, floor = trainer.baselines(), trainer.evaluate(0)["cross_floor"]
    return (
        "\n".join(
            [
                "### Baselines on the test matrix's validation pairs",
                "",
                "Every run logs these at epoch 0 (`cross_mean_image`, `cross_mean_image_psnr_clean`; "
                "`model/metrics.py`), on the same data and split, averaged over both directions like "
                "`cross`:",
                "",
                "| prediction | cross L1 | PSNR vs clean target |",
                "|---|---|---|",
                "| the target domain's mean training image (a constant) "
                f"| {baselines['cross_mean_image']:.4f} "
                f"| {baselines['cross_mean_image_psnr_clean']:.1f} dB |",
                f"| the clean target itself (the floor) | {floor:.4f} | - |",
                "",
            ]
        )
        + "\n"
    )


BUDGET_SCALE = 4  # the test matrix again at 4x its steps per epoch: do the stalls persist?


def budget_section() -> str:
    """The test matrix at ``BUDGET_SCALE`` times its steps per epoch beside the 1x runs (``budget.scale``)."""
    path = "matrices/test_matrix.yaml"
    orch("sweep", path, f"budget.scale={BUDGET_SCALE}")
    table = orch("report", path, capture=True)
    budgets = (
        table[table.index("the verdict at each budget") :] if "the verdict at each budget" in table else table
    )
    return (
        "\n".join(
            [
                f"### `{path}` at {BUDGET_SCALE}x its steps",
                "",
                f"Commands: `orch sweep {path} budget.scale={BUDGET_SCALE}` then `orch report {path}` "
                "(the same epochs, warm-up and window; each epoch trains "
                f"{BUDGET_SCALE} times as many steps, so the verdict reads the same epochs after "
                f"{BUDGET_SCALE}x the training):",
                "",
                "```",
                "test_matrix: " + budgets.strip(),
                "```",
                "",
            ]
        )
        + "\n"
    )


BATCHNORM_CELLS = ("original", "no_skip", "no_skip_everywhere")


def batchnorm_section() -> str:
    """The validation cross loss of each cell's seed-0 run (retrained: training is deterministic) with
    BatchNorm as evaluated (running statistics) and with the statistics of each validation batch, as in
    training (batches of the training batch size; every path's block its own statistics)."""
    import torch

    sys.path.insert(0, str(ROOT))
    from model.trainer import fit
    from orchestrator.matrix import load_matrix

    _, specs = load_matrix(ROOT / "matrices" / "test_matrix.yaml")
    rows = []
    for cell in BATCHNORM_CELLS:
        spec = next(s for s in specs if s.cell == cell and s.seed == 0)
        print(f"$ (retrain {cell} seed 0 and evaluate it both ways)", flush=True)
        trainer = fit(spec.config).trainer
        values = {}
        for mode in ("eval", "batch"):
            trainer.model.train(mode == "batch")
            total, n = 0.0, 0
            with torch.no_grad():
                for batch in trainer.val.sequential(spec.config.trainer.batch_size):
                    out = trainer.forward(batch["a"], batch["b"], 1.0)
                    total += float(out.losses["cross"]) * batch["a"].shape[0]
                    n += batch["a"].shape[0]
            values[mode] = total / n
        rows.append(f"| {cell} | {values['eval']:.4f} | {values['batch']:.4f} |")
    return (
        "\n".join(
            [
                "### BatchNorm: running statistics against batch statistics",
                "",
                "Computed by `python docs/make_findings.py` (function `batchnorm_section`): each cell's "
                "seed-0 "
                "run of the test matrix, retrained, its validation cross loss with BatchNorm in evaluation "
                "mode (running statistics: what every verdict above judges) and with each validation batch's "
                "own statistics, as in training:",
                "",
                "| cell | cross, running statistics | cross, batch statistics |",
                "|---|---|---|",
                *rows,
                "",
            ]
        )
        + "\n"
    )


def main() -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    sections, verdicts = [], {}
    for name in MATRICES:
        text, v = matrix_section(name)
        sections.append(text)
        verdicts[name] = v
    sections.insert(0, baseline_section())
    sections.insert(1, batchnorm_section())
    sections.append(budget_section())
    diag_text, _ = diagnose_section()
    sections.append(diag_text)
    (WORK / "verdicts.json").write_text(json.dumps(verdicts, indent=2))
    template = (DOCS / "findings.template.md").read_text()
    body = template.replace("{{SECTIONS}}", "\n".join(sections))
    (DOCS / "findings.md").write_text(body)
    print(f"wrote {DOCS / 'findings.md'}")


if __name__ == "__main__":
    main()
