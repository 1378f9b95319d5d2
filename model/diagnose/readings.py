"""Readings: one line per item of a diagnosis, comparing its first and last snapshot, and the report
object that holds them (:class:`DiagnosisReport`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from model.config import RunConfig
from model.diagnose.data_content import DataContent
from model.diagnose.measures import (
    CAPACITY_GOOD,
    CAPACITY_POOR,
    DOMINANT_RATIO,
    DROWNED_RATIO,
    RELIANCE_HIGH,
    RELIANCE_LOW,
    TERMS,
    TREND,
    VARIANTS,
    GradientNorms,
)
from model.diagnose.snapshot import Snapshot

if TYPE_CHECKING:
    pass

__all__ = [
    "DiagnosisReport",
    "Reading",
    "percent",
]

# ------------------------------------------------------------------------------------------ readings


@dataclass(frozen=True)
class Reading:
    """One line of the diagnosis: an item, its figure at the start and the end, and what it means."""

    item: str
    start: str
    end: str
    reading: str
    alert: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percent(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.0f}%"


def _num(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a" if x is None or math.isnan(x) else "inf"
    return f"{x:.2e}" if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e4) else f"{x:.4f}"


def _ratio(x: float | None) -> str:
    if x is None:
        return "n/a"
    return "inf" if math.isinf(x) else f"{x:.2g}x"


def _trend(start: float, end: float) -> tuple[str, float]:
    change = (end - start) / start if start > 0 else math.nan
    if not math.isfinite(change):
        return "n/a", change
    word = "falls" if change < -TREND else "rises" if change > TREND else "flat"
    return word, change


@dataclass
class DiagnosisReport:
    """The outcome of :func:`diagnose`.

    Attributes:
        config: the run config diagnosed.
        steps: training steps asked for.
        steps_done: training steps done (fewer when training diverged).
        every: measurement interval (None: start and end only).
        status: ``finished`` or ``diverged``.
        reason: why training stopped early, or None.
        seconds: wall time.
        snapshots: measurements, first at step 0, last at the end.
        train_losses: per training step, the losses of that step's batch (before its update).
        data: :class:`DataContent` of the clean images (when known).
        domains: names of domains a and b (e.g. PD, PDFS).
    """

    config: RunConfig
    steps: int
    steps_done: int
    every: int | None
    status: str
    reason: str | None
    seconds: float
    snapshots: list[Snapshot]
    train_losses: list[dict[str, float]]
    data: DataContent
    domains: tuple[str, str] = ("a", "b")

    @property
    def start(self) -> Snapshot:
        return self.snapshots[0]

    @property
    def end(self) -> Snapshot:
        return self.snapshots[-1]

    @property
    def readings(self) -> list[Reading]:
        """One :class:`Reading` per item, comparing the first and last snapshots."""
        return _readings(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (non-finite numbers become None)."""
        return _json_safe(
            {
                "config": self.config.to_dict(),
                "steps": self.steps,
                "steps_done": self.steps_done,
                "every": self.every,
                "status": self.status,
                "reason": self.reason,
                "seconds": self.seconds,
                "domains": list(self.domains),
                "conventions": {
                    "gradients": "L2 norm over a module's parameters; weighted = gradient of weight * term "
                    "as it enters the total (0 when the weight is 0), unweighted = of the term alone",
                    "measurement": "fixed held-out pairs (gradients: the first training batch); BatchNorm "
                    "on batch statistics as in training, running buffers restored",
                    "skip_reliance": "mean |out(own skips) - out(replacement)| / mean |out(own skips)|; "
                    "no_skip: no skips, use_source: the other domain's skips",
                    "probe": "logistic regression on pooled z (channel mean and std), fitted on training "
                    "pairs, accuracy on held-out pairs (50% = no domain information)",
                    "data": "best per-pixel intensity mapping (piecewise-linear lookup table) of one "
                    "domain's clean image onto the other's; residual relative to the mean signal",
                },
                "snapshots": [s.to_dict() for s in self.snapshots],
                "train_losses": self.train_losses,
                "data": self.data.to_dict(),
                "readings": [r.to_dict() for r in self.readings],
            }
        )


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def _readings(report: DiagnosisReport) -> list[Reading]:
    out: list[Reading] = []
    if report.status != "finished":
        why = f"{report.status}: {report.reason}"
        out.append(Reading("training", "", f"step {report.steps_done}", why, True))
    out += [_latent_distance(report), _latent_spread(report), _probe(report)]
    out += _errors(report)
    out += _gradients(report)
    out += [_reliance(report, dec) for dec in ("decoder_a", "decoder_b")]
    out += [_capacity(report, d) for d in ("a", "b")]
    out.append(_data(report))
    return out


def _latent_distance(report: DiagnosisReport) -> Reading:
    s0, s1 = report.start, report.end
    lat = s1.latent
    ratio = lat.pair_ratio
    pairs = f"pairs are {_ratio(ratio)} as far apart as unpaired latents"
    alert = False
    if lat.collapsed:
        text, alert = (
            "z barely varies over the batch: the latent has collapsed; its small distance means nothing",
            True,
        )
    elif ratio < 0.5:
        text = f"{pairs}: z_a and z_b agree" + (" (below the note's 0.01)" if lat.distance < 0.01 else "")
    elif ratio < 0.9:
        text = f"{pairs}: z_a and z_b partly agree"
    else:
        text, alert = f"{pairs}: z does not encode the content the pair shares", True

    def fig(s: Snapshot) -> str:
        return f"{_num(s.latent.distance)} ({percent(s.latent.relative)} of |z|)"

    return Reading("latent distance |z_a - z_b|", fig(s0), fig(s1), text, alert)


def _latent_spread(report: DiagnosisReport) -> Reading:
    lat = report.end.latent
    if lat.collapsed:
        text = "COLLAPSED: z is (nearly) the same for every image"
    else:
        text = "z varies over the batch: not collapsed"

    def fig(s: Snapshot) -> str:
        return f"{_num(s.latent.spread)} ({percent(s.latent.spread_relative)} of |z|)"

    return Reading("latent spread over the batch", fig(report.start), fig(report.end), text, lat.collapsed)


def _probe(report: DiagnosisReport) -> Reading:
    pr, lat = report.end.probe, report.end.latent
    da, db = report.domains
    band = f"chance 50% +- {percent(pr.chance_margin)}"
    if not pr.informative:
        text = f"near chance ({band}): no domain information left in the latent (hypothesis 1 unlikely)"
    else:
        close = "z_a and z_b are close, yet " if lat.relative < 0.1 else ""
        text = (
            f"{close}a linear probe tells {da} from {db} latents ({band}): the latent still carries "
            "domain information (hypothesis 1)"
        )
    item = f"domain probe ({pr.n_test} held-out latents)"
    return Reading(item, percent(report.start.probe.accuracy), percent(pr.accuracy), text, pr.informative)


def _errors(report: DiagnosisReport) -> list[Reading]:
    s0, s1 = report.start, report.end
    da, db = report.domains
    out = []
    for key, label in (
        ("recon_a", f"recon {da}"),
        ("recon_b", f"recon {db}"),
        ("cross_a", f"cross {da} from {db} (x_a_from_b)"),
        ("cross_b", f"cross {db} from {da} (x_b_from_a)"),
    ):
        v0, v1 = s0.errors[key], s1.errors[key]
        word, change = _trend(v0, v1)
        text = f"{word} ({change:+.0%})" if word != "n/a" else "n/a"
        alert = word != "falls"
        if key.startswith("cross"):
            text += ": cross falls" if word == "falls" else ": cross does not fall (the note's symptom)"
            base = s1.latent_only[f"mean_image_{key[-1]}"]
            if v1 >= base:
                text += (
                    f", yet no better than the target's mean image ({_num(base)}): nothing specific learnt"
                )
                alert = True
        out.append(Reading(label, _num(v0), _num(v1), text, alert))
    return out


def _gradients(report: DiagnosisReport) -> list[Reading]:
    g0, g1 = report.start.gradients, report.end.gradients
    terms = [t for t in TERMS if t in g1.present]
    quiet = [t for t in terms if g1.term_total(t) == 0]
    if quiet:
        text = "sends no gradient: " + ", ".join(f"{t} (weight {g1.weights[t]:g})" for t in quiet)
    else:
        text = "every loss term sends a gradient (weighted, as in the total)"
    if "adv" not in g1.present:
        text += "; adv off (no discriminator)"

    def fig(g: GradientNorms) -> str:
        return ", ".join(f"{t} {_num(g.term_total(t))}" for t in terms)

    out = [Reading("gradient per term (all modules)", fig(g0), fig(g1), text, bool(quiet))]
    for dec in ("decoder_a", "decoder_b"):
        r = g1.ratio(dec)
        said = f"cross gradient on {dec} is {_ratio(r)} recon's"
        alert = False
        if r is None:
            text, alert = "neither cross nor recon sends a gradient here", True
        elif math.isinf(r):
            text = (
                f"recon sends no gradient to {dec} (weight {g1.weights['recon']:g}): cross is its only signal"
            )
        elif r == 0:
            text, alert = f"cross sends no gradient to {dec} (weight {g1.weights['cross']:g})", True
        elif r < DROWNED_RATIO:
            text, alert = f"{said}: cross is drowned (Problem 2)", True
        elif r > DOMINANT_RATIO:
            text = f"{said}: cross dominates"
        else:
            text = f"{said}: comparable"
        cos = g1.cosine.get(dec)
        text += f" (unweighted {_ratio(g1.ratio(dec, weighted=False))}"
        text += f", cosine {cos:+.2f})" if cos is not None else ")"
        out.append(Reading(f"grad cross/recon on {dec}", _ratio(g0.ratio(dec)), _ratio(r), text, alert))
    return out


def _reliance(report: DiagnosisReport, dec: str) -> Reading:
    tc = report.config.trainer
    strategy = tc.cross_domain_strategy
    rel = report.end.reliance[strategy][dec]
    alert = False
    if not tc.same_domain_use_skip and strategy == "no_skip":
        text = f"{dec} never gets skips (same_domain_use_skip=false, no_skip): reliance is moot"
    elif not math.isfinite(rel):
        text, alert = f"{dec}'s same-domain output is all zeros", True
    elif rel > RELIANCE_HIGH:
        alert = True
        if strategy == "no_skip":
            text = (
                f"{dec} leans on its skips: without them (the cross path) its output changes {percent(rel)} "
                "(Problem 1)"
            )
        else:
            text = (
                f"{dec} leans on its skips: with the other domain's (the cross path) its output changes "
                f"{percent(rel)}: the source's skips steer the cross output"
            )
    elif rel < RELIANCE_LOW:
        text = (
            f"{dec} barely uses its skips on the cross path ({strategy}: {percent(rel)}): problem 1 unlikely"
        )
    else:
        text = f"{dec} partly relies on its skips ({strategy}: {percent(rel)})"
    if not tc.same_domain_use_skip and strategy != "no_skip":
        text += " (same-domain recon runs without skips in training)"

    def fig(s: Snapshot) -> str:
        return " / ".join(f"{v} {percent(s.reliance[v][dec])}" for v in VARIANTS)

    return Reading(f"skip reliance {dec}", fig(report.start), fig(report.end), text, alert)


def _capacity(report: DiagnosisReport, d: str) -> Reading:
    s0, s1 = report.start, report.end
    lo, lo0 = s1.latent_only, s0.latent_only
    cap = s1.capacity(d)
    trained = s1.errors[f"recon_{d}"]  # the same-domain path training optimises
    removes = f"the latent alone removes {percent(cap)} of the mean image's error"
    alert = False
    if not math.isfinite(cap):
        text = "n/a (constant images)"
    elif trained >= lo[f"mean_image_{d}"]:
        text = (
            f"decoder_{d} does no better than the mean image even on its trained path ({_num(trained)}): "
            "too early to judge capacity (train longer)"
        )
    elif cap < 0:
        text = (
            f"from the latent alone decoder_{d} does worse than the mean image, on its trained path better: "
            "it cannot reconstruct from the latent (hypothesis 3)"
        )
        alert = True
    elif cap >= CAPACITY_GOOD:
        text = f"{removes}: it carries the image (hypothesis 3 unlikely)"
    elif cap >= CAPACITY_POOR:
        text = f"{removes}: it carries part of the image"
    else:
        text, alert = f"{removes}: decoder_{d} cannot reconstruct from it (hypothesis 3)", True
    start = f"{_num(lo0[f'latent_only_{d}'])} (skips {_num(lo0[f'with_skips_{d}'])})"
    end = (
        f"{_num(lo[f'latent_only_{d}'])} (skips {_num(lo[f'with_skips_{d}'])}, "
        f"mean image {_num(lo[f'mean_image_{d}'])})"
    )
    name = report.domains[0 if d == "a" else 1]
    return Reading(f"latent-only recon {name}", start, end, text, alert)


def _data(report: DiagnosisReport) -> Reading:
    data = report.data
    da, db = report.domains
    if not data.known:
        return Reading("data: same content?", "", "unknown", "unknown: the data has no clean images")
    res, dif = data.residual, data.differing
    figure = (
        f"{db} from {da}: {percent(res['b_from_a'])} residual, {percent(dif['b_from_a'])} px; "
        f"{da} from {db}: {percent(res['a_from_b'])}, {percent(dif['a_from_b'])} px"
    )
    b_ok, a_ok = data.explained("b_from_a"), data.explained("a_from_b")
    if b_ok and a_ok:
        text = "same anatomy up to an intensity mapping: 'same content' holds (hypothesis 2 unlikely)"
    elif b_ok or a_ok:
        (src, tgt, cross) = (da, db, "x_a_from_b") if b_ok else (db, da, "x_b_from_a")
        text = (
            f"{tgt} is a function of {src}'s intensities but not the reverse: {tgt} merges what {src} tells "
            f"apart, so {cross} must infer it (hypothesis 2 in part)"
        )
    else:
        text = (
            "no intensity mapping explains either domain from the other: the clean images differ pixel "
            "by pixel beyond contrast (tissues one contrast merges, structures in one only): hypothesis 2"
        )
    alert = not (b_ok and a_ok)
    return Reading(f"data: same content? ({data.pairs} clean pairs)", "", figure, text, alert)
