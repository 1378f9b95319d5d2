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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
IMG = DOCS / "img" / "findings"
WORK = ROOT / "runs" / "findings"
MATRICES = ("test_matrix", "plan_a", "plan_d", "remedies", "remedies_misregistered")
# (matrix, cell) -> label: the note's two configs and the leak-free winner, each diagnosed at seed 0
DIAGNOSE = {
    ("test_matrix", "original"): "original",
    ("test_matrix", "no_skip_everywhere"): "no_skip_everywhere",
    ("remedies", "pure_n2n_best"): "pure_n2n_best",
}
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


def _fresh_figures(experiment: str, since: float) -> list[Path]:
    """The figures the last report of ``experiment`` wrote (its folder is named by its settings and view)."""
    folder = ROOT / "runs" / "reports" / experiment
    return sorted(p for p in folder.rglob("*.png") if p.stat().st_mtime >= since)


def matrix_section(name: str) -> tuple[str, list[dict]]:
    path = f"matrices/{name}.yaml"
    orch("sweep", path)
    since = time.time()
    md = orch("report", path, "--format", "markdown", capture=True)
    verdicts = json.loads(orch("report", path, "--format", "json", capture=True))
    figures = _fresh_figures(name, since)
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

    WORK.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict] = {}
    lines = [
        "### `orch diagnose` on the note's configs and the leak-free winner",
        "",
        "Each config is its matrix's cell at seed 0 (written to `runs/findings/<cell>.json`), "
        f"diagnosed over {DIAGNOSE_STEPS} training steps (the test matrix's training length):",
        "",
    ]
    for (matrix, cell), label in DIAGNOSE.items():
        _, specs = load_matrix(ROOT / "matrices" / f"{matrix}.yaml")
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


BUDGET_SCALE = 4  # the winners again at 4x their steps per epoch: does the answer hold with more training?


SEARCH_MATRIX = "matrices/search_remedies.yaml"
SEARCH_CELLS = ("original", "no_skip", "no_skip_everywhere", "pure_n2n", "plan_a_decay")
SEARCH_TRIALS = 12  # per cell: 4 random start-up trials, then Optuna's TPE sampler
FINALS = ("cross", "cross_psnr_clean", "noise_leak")


def _search_study(cell: str):
    """The Optuna study of ``cell``'s search, or None before its first trial."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = ROOT / "runs" / "optuna.journal"
    if not journal.exists():
        return None
    storage = JournalStorage(JournalFileBackend(str(journal)))
    name = f"search_remedies_{cell}-search"
    if name not in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        return None
    return optuna.load_study(study_name=name, storage=storage)


def _search_cell(cell: str) -> list[str]:
    """Run (or finish) ``cell``'s search, then one row: its trials, the best one and what it reached."""
    from optuna.importance import get_param_importances
    from optuna.trial import TrialState

    study = _search_study(cell)
    ended = [] if study is None else [t for t in study.trials if t.state.is_finished()]
    if len(ended) < SEARCH_TRIALS:
        resume = ["--resume"] if study is not None else []
        orch("search", SEARCH_MATRIX, f"name=search_remedies_{cell}", "--cells", cell, "--trials",
             str(SEARCH_TRIALS - len(ended)), *resume)  # fmt: skip
        study = _search_study(cell)
    trials = study.trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    minutes = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).seconds / 60
    report = orch("report", "--experiment", f"search_remedies_{cell}", "--format", "json", capture=True)
    best = study.best_trial
    judged = {v["cell"]: v for v in json.loads(report)}
    f = {k: judged.get(f"trial-{best.number}", {}).get("finals", {}).get(k, float("nan")) for k in FINALS}
    params = ", ".join(f"{k}={v}" for k, v in sorted(best.params.items()))
    top = sorted(get_param_importances(study).items(), key=lambda kv: -kv[1])[:2]
    return [
        f"| {cell} | {len(complete)} complete, {len(trials) - len(complete)} pruned | {minutes:.0f} min "
        f"| {best.number} | {params} | {best.value:+.0%} | {f['cross']:.3f} "
        f"| {f['cross_psnr_clean']:.1f} | {f['noise_leak']:.3f} "
        f"| {', '.join(f'{k} {v:.2f}' for k, v in top)} |"
    ]


def search_section() -> str:
    """`orch search` around each of the note's cells (and Plan A's decayed skips): the best trial of each."""
    rows = [row for cell in SEARCH_CELLS for row in _search_cell(cell)]
    cmd = f"orch search {SEARCH_MATRIX} name=search_remedies_CELL --cells CELL --trials {SEARCH_TRIALS}"
    return (
        "\n".join(
            [
                "### How the answer was found: `orch search` around every cell",
                "",
                f"Command, once per cell: `{cmd}` (then `orch report --experiment search_remedies_CELL`). "
                "Each trial trains 2 seeds on the test matrix's phantoms and budget and is scored by the "
                "verdict's `final` objective: where the window's fitted line ends against the constant "
                "prediction (-50%: half the mean image's loss). Pruned trials are those whose optimistic "
                "trend could not beat the best so far. The last-epoch levels are the best trial's means "
                "over its 2 seeds; importances are Optuna's fANOVA over the complete trials (the top two).",
                "",
                "| cell | trials | took | best trial | its remedies | vs constant | cross | PSNR dB "
                "| noise leak | importances |",
                "|---|---|---|---|---|---|---|---|---|---|",
                *rows,
                "",
            ]
        )
        + "\n"
    )


REMEDIES = "matrices/remedies.yaml"
WINNERS = ("original_best", "pure_n2n_best")  # what makes cross fall; the same through the latent alone
ABLATIONS = (("original", "original_best"), ("original", "pure_n2n_best"))
LEAK_FREE = 0.02  # noise leak at most this: the cross output carries (almost) none of the source's noise


def ablate_section() -> str:
    """`orch ablate` from the note's original to each winner: the step whose change makes cross fall."""
    lines = ["### Which change makes the cross loss fall: `orch ablate`", ""]
    for start, end in ABLATIONS:
        out = orch("ablate", REMEDIES, "--from", start, "--to", end, capture=True)
        at = out.find("the verdict at each step")
        walk = out[out.rfind("\n", 0, at) + 1 :] if at >= 0 else out
        lines += [f"`orch ablate {REMEDIES} --from {start} --to {end}`:", "", "```", walk.strip(), "```", ""]
    return "\n".join(lines) + "\n"


def winners_at_scale() -> tuple[str, list[dict]]:
    """The two winners at ``BUDGET_SCALE`` times their steps, beside their 1x verdicts."""
    cells = [arg for w in WINNERS for arg in ("--cells", w)]
    orch("sweep", REMEDIES, f"budget.scale={BUDGET_SCALE}", *cells)
    table = orch("report", REMEDIES, *cells, capture=True)
    budgets = (
        table[table.index("the verdict at each budget") :] if "the verdict at each budget" in table else ""
    )
    since = time.time()
    orch("report", REMEDIES, f"budget.scale={BUDGET_SCALE}", *cells, capture=True)
    figures = []
    for fig in _fresh_figures("remedies", since):
        target = IMG / f"remedies_{BUDGET_SCALE}x_{fig.name}"
        shutil.copy(fig, target)
        figures.append(f"![remedies at {BUDGET_SCALE}x: {fig.stem}](img/findings/{target.name})")
    scaled = json.loads(
        orch("report", REMEDIES, f"budget.scale={BUDGET_SCALE}", *cells, "--format", "json", capture=True)
    )
    cmd = f"orch sweep {REMEDIES} budget.scale={BUDGET_SCALE} {' '.join(cells)}"
    text = "\n".join(
        [
            f"### The winners at {BUDGET_SCALE}x their steps",
            "",
            f"Commands: `{cmd}`, then `orch report {REMEDIES} {' '.join(cells)}`:",
            "",
            "```",
            "remedies: " + budgets.strip(),
            "```",
            "",
            "Per cell at 4x, as the verdict JSON has it:",
            "",
            *[_cell_sentence(v) for v in scaled],
            "",
            *figures,
            "",
        ]
    )
    return text + "\n", scaled


def _bar(v: dict) -> dict:
    """The issue's bar for an answer that holds, read off one verdict."""
    finals = v.get("finals", {})
    # the last epoch as measured (mean over seeds), not the window's fitted line extended to it: on a curve
    # that flattens (a cosine learning rate ends at 0) the line ends below what the model reached
    end, base, floor = finals.get(v.get("metric", "cross")), v.get("baseline"), v.get("floor")
    halfway = None if base is None or floor is None else (base + floor) / 2
    leak, psnr = finals.get("noise_leak"), finals.get("cross_psnr_clean")
    guards = [g.get("holds") for g in v.get("guards", [])]
    return {
        "falls": v.get("verdict") == "falls" and not v.get("undecided"),
        "end": end,
        "fitted": (v.get("end") or {}).get("mean"),
        "halfway": halfway,
        "halfway_ok": None if end is None or halfway is None else end <= halfway,
        "psnr": psnr,
        "psnr_ok": None if psnr is None else psnr >= 20,
        "leak": leak,
        "guard_ok": all(g is True for g in guards) if guards else None,
        "leak_free": None if leak is None else leak <= LEAK_FREE,
    }


def _yes(flag: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "-"}[flag]


def answer_check_section(runs: dict[str, list[dict]]) -> str:
    """Each winner against the bar: falls over 5 seeds, ends at least halfway from the constant to the floor,
    20 dB against the clean target, the noise-leak guard holding; at 1x, 4x and on pseudo-pairs."""
    rows = []
    for label, verdicts in runs.items():
        for v in verdicts:
            if v["cell"] not in WINNERS:
                continue
            b = _bar(v)
            rows.append(
                f"| {v['cell']} | {label} | {v['verdict']} ({len(v.get('seeds', []))} seeds) "
                f"| {b['end']:.3f} | {b['fitted']:.3f} | {v.get('baseline', float('nan')):.3f} "
                f"| {b['halfway']:.3f} "
                f"| {_yes(b['falls'] and b['halfway_ok'])} | {b['psnr']:.1f} | {_yes(b['psnr_ok'])} "
                f"| {b['leak']:.3f} | {_yes(b['guard_ok'])} | {_yes(b['leak_free'])} |"
            )
    return (
        "\n".join(
            [
                "### The answer against its bar",
                "",
                "Read off the verdict JSON of the runs above (`docs/make_findings.py`, function "
                "`answer_check_section`): does the cell `fall` over its seeds and end at least halfway from "
                "the constant prediction to the floor (its last epoch's cross loss, the mean over seeds, "
                "`<= (baseline + floor) / 2`; the window's fitted line extended to that epoch is shown "
                "beside it, but a line ends below a curve that flattens, so it does not decide), at 20 dB "
                "or more against the clean target, with the noise-leak guard (0.1) holding; and is its cross "
                f"output leak-free (noise leak at most {LEAK_FREE}: through the latent, not the source's "
                "skips)?",
                "",
                "| cell | runs | verdict | last epoch | fitted end | constant | halfway | falls to halfway "
                "| PSNR dB | >= 20 dB | noise leak | guard holds | leak-free |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
                *rows,
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
    WORK.mkdir(parents=True, exist_ok=True)
    sections, verdicts = [baseline_section(), batchnorm_section(), search_section()], {}
    for name in MATRICES:
        text, v = matrix_section(name)
        sections.append(text)
        verdicts[name] = v
    sections.append(ablate_section())
    scaled_text, verdicts["remedies_4x"] = winners_at_scale()
    sections.append(scaled_text)
    checked = {"1x": verdicts["remedies"], f"{BUDGET_SCALE}x": verdicts["remedies_4x"]}
    checked["pseudo-pairs"] = verdicts["remedies_misregistered"]
    sections.insert(3, answer_check_section(checked))
    diag_text, _ = diagnose_section()
    sections.append(diag_text)
    (WORK / "verdicts.json").write_text(json.dumps(verdicts, indent=2))
    template = (DOCS / "findings.template.md").read_text()
    body = template.replace("{{SECTIONS}}", "\n".join(sections))
    (DOCS / "findings.md").write_text(body)
    print(f"wrote {DOCS / 'findings.md'}")


if __name__ == "__main__":
    main()
