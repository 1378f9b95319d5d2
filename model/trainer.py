"""Training the note's cross-domain autoencoder.

Per step (the note's losses, all L1, each the mean over both directions)::

    z_a, skips_a = encoder(x_a);  z_b, skips_b = encoder(x_b)        (one grouped pass, see model.unet)
    content = |z_a - z_b|
    recon   = |decoder_a(z_a, skips_a or None) - x_a|         (skips per same_domain_use_skip)
    cross   = |decoder_a(z_b, skips_b or None) - x_a|         (skips per cross_domain_strategy)
    adv     = Plan D: the cross outputs should pass the discriminator as same-domain reconstructions
    total   = w_content * content + w_recon * recon + w_cross * cross + w_adv * adv

Remedies (docs/remedies.md): ``trainer.content_loss`` replaces the trained content term by another form
(:mod:`model.losses`; ``content`` stays the note's L1, logged as the diagnostic, and the trained term is
``content_loss``), and ``trainer.content_schedule`` moves ``w_content`` per epoch
(:func:`content_weight_at`), as ``skip_schedule`` moves the skip weight.

The trainer is a library: :func:`fit` takes a :class:`~model.config.RunConfig` and reports each epoch
(validation metrics on a fixed held-out split, epoch 0 measured before any update, plus image grids)
to a callback. It never imports tracking or orchestration code.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.config import ConfigError, RunConfig, TrainerConfig
from model.data import InMemoryPairs, PairedSource, Pairs, SourceShape, open_source, split_indices
from model.discriminator import PatchDiscriminator
from model.losses import content_loss
from model.metrics import constant_baselines, l1, noise_leak_terms, psnr
from model.preflight import check_data_fits
from model.unet import CrossDomainAE

__all__ = [
    "EpochResult",
    "FitResult",
    "NonFiniteLossError",
    "Outputs",
    "Trainer",
    "content_weight_at",
    "fit",
    "resolve_device",
    "scheduled",
    "skip_weight_at",
]

#: ``content_loss`` only when ``trainer.content_loss`` is not the note's L1 (then it is the trained term).
LOSS_TERMS = ("content", "content_loss", "recon", "cross", "adv", "total")


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or Inf; says which term, epoch and step."""

    def __init__(self, term: str, epoch: int, step: int) -> None:
        self.term, self.epoch, self.step = term, epoch, step
        super().__init__(f"non-finite {term} loss at epoch {epoch}, step {step}")


@dataclass(frozen=True)
class EpochResult:
    """What one epoch produced; epoch 0 is the evaluation before any update.

    ``metrics`` holds the validation values (``content``, ``recon``, ``cross``, ``total``, per-direction
    ``recon_a`` ... ``cross_b``, and for data with clean images ``cross_floor``, ``cross_clean``,
    ``cross_psnr_clean``, ``noise_leak``: the fraction of the source image's noise found in the cross output's
    error), the epoch's training means (``train_*``), ``skip_weight``, ``content_loss`` (the trained
    content term, when ``trainer.content_loss`` is not the note's L1), ``content_weight`` (when
    ``trainer.content_schedule`` moves it) and ``epoch_seconds``. ``images`` maps ``x_a_from_b`` /
    ``x_b_from_a`` to float grids in [0, 1] of shape (rows * H, cols * W): columns source, output, target
    (and clean target when known).
    """

    epoch: int
    metrics: dict[str, float]
    images: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class FitResult:
    """The end of a run."""

    status: str  # "finished" | "diverged" | "stopped"
    epochs: list[EpochResult]
    reason: str | None = None
    trainer: Trainer | None = None


@dataclass(frozen=True)
class Outputs:
    """One forward pass of the note's losses on a batch."""

    losses: dict[str, torch.Tensor]  # scalar tensors, LOSS_TERMS plus per-direction terms
    a_from_b: torch.Tensor  # (B, 1, H, W)
    b_from_a: torch.Tensor  # (B, 1, H, W)
    recon_a: torch.Tensor  # (B, 1, H, W)
    recon_b: torch.Tensor  # (B, 1, H, W)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU.

    Raises:
        ConfigError: CUDA asked for on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name!r} but no CUDA device is available here (use auto or cpu)")
    return torch.device(name)


def scheduled(schedule: str, start: float, final: float, end_epoch: int, epoch: int) -> float:
    """A value scheduled over training epochs (1-based; epoch 0, before training, uses ``start``).

    ``constant`` stays at ``start``; ``linear`` and ``cosine`` go from ``start`` at epoch 1 to ``final``
    at epoch ``end_epoch`` (either direction) and stay there.
    """
    if schedule == "constant" or epoch <= 1:
        return start
    span = end_epoch - 1
    t = 1.0 if span <= 0 else min(1.0, (epoch - 1) / span)
    if schedule == "linear":
        frac = 1.0 - t
    else:
        frac = 0.5 * (1.0 + math.cos(math.pi * t))
    return final + (start - final) * frac


def skip_weight_at(cfg: TrainerConfig, epoch: int) -> float:
    """Skip weight used during training epoch ``epoch`` (1-based; epoch 0 uses the start value).

    ``linear`` and ``cosine`` go from ``skip_weight`` at epoch 1 to ``skip_weight_final`` at epoch
    ``skip_decay_epochs`` (default: the last epoch) and stay there.
    """
    end = cfg.skip_decay_epochs or cfg.epochs
    return scheduled(cfg.skip_schedule, cfg.skip_weight, cfg.skip_weight_final, end, epoch)


def content_weight_at(cfg: TrainerConfig, epoch: int) -> float:
    """Content weight used during training epoch ``epoch`` (1-based; epoch 0 uses the start value).

    ``linear`` and ``cosine`` go from ``loss_weights.content`` at epoch 1 to ``content_weight_final`` at
    epoch ``content_ramp_epochs`` (default: the last epoch) and stay there.
    """
    end = cfg.content_ramp_epochs or cfg.epochs
    start = cfg.loss_weights.content
    return scheduled(cfg.content_schedule, start, cfg.content_weight_final, end, epoch)


class _Batches:
    """Batches of one split; preloaded on the device when the source is in memory."""

    def __init__(self, source: PairedSource, index: np.ndarray, device: torch.device) -> None:
        self.source, self.index, self.device = source, index, device
        self._tensors: dict[str, torch.Tensor] | None = None
        if isinstance(source, InMemoryPairs):
            self._tensors = self._to_tensors(source.read(index))

    def __len__(self) -> int:
        return len(self.index)

    def _to_tensors(self, p: Pairs) -> dict[str, torch.Tensor]:
        out = {"a": p.a, "b": p.b}
        if p.has_clean:
            out |= {"clean_a": p.clean_a, "clean_b": p.clean_b}
        return {
            k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).unsqueeze(1).to(self.device)
            for k, v in out.items()
        }  # (B, 1, H, W)

    def take(self, positions: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
        """Pairs at ``positions`` within this split."""
        if self._tensors is not None:
            pos = torch.as_tensor(positions, device=self.device)
            return {k: v[pos] for k, v in self._tensors.items()}
        return self._to_tensors(self.source.read(self.index[np.asarray(positions)]))

    def sequential(self, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        for start in range(0, len(self), batch_size):
            yield self.take(np.arange(start, min(start + batch_size, len(self))))


class Trainer:
    """Holds the model, optimisers and data of one run; :meth:`run` yields epochs."""

    def __init__(self, config: RunConfig, source: PairedSource | None = None) -> None:
        self.config = config
        tc = config.trainer
        if tc.threads:
            torch.set_num_threads(tc.threads)
        self.device = resolve_device(tc.device)
        torch.manual_seed(tc.seed)
        # channels_last: the layout oneDNN's convolutions run natively, faster on the CPU (measured in
        # docs/performance.md); the same numbers within float rounding
        self.model = CrossDomainAE(config.model).to(self.device, memory_format=torch.channels_last)
        self.adversarial = tc.loss_weights.adv > 0
        self.disc_a = self.disc_b = None
        params = list(self.model.parameters())
        self.optimizer = self._optimizer(params, tc.lr)
        if self.adversarial:
            self.disc_a = PatchDiscriminator(config.model.discriminator).to(
                self.device, memory_format=torch.channels_last
            )
            self.disc_b = PatchDiscriminator(config.model.discriminator).to(
                self.device, memory_format=torch.channels_last
            )
            disc_params = [*self.disc_a.parameters(), *self.disc_b.parameters()]
            self.disc_optimizer = self._optimizer(disc_params, tc.discriminator_lr)
        self.source = source if source is not None else open_source(config.data)
        check_data_fits(config, SourceShape.of(config.data, self.source))
        train_idx, val_idx = split_indices(self.source.n, config.data.val_fraction, seed=0)
        self.train = _Batches(self.source, train_idx, self.device)
        self.val = _Batches(self.source, val_idx[: tc.val_pairs], self.device)
        self.generator = torch.Generator().manual_seed(tc.seed)
        self.has_clean = self.source.has_clean
        self._floor: float | None = None

    def _optimizer(self, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        tc = self.config.trainer
        if tc.optimizer == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=tc.weight_decay)
        # fused: one kernel for every parameter's update instead of a Python loop over them (measured in
        # docs/performance.md; the same update within float rounding)
        fused = self.device.type in ("cpu", "cuda")
        if tc.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=tc.weight_decay, fused=fused)
        return torch.optim.Adam(params, lr=lr, weight_decay=tc.weight_decay, fused=fused)

    # ------------------------------------------------------------------------------------- forward

    def forward(
        self, x_a: torch.Tensor, x_b: torch.Tensor, skip_weight: float, content_weight: float | None = None
    ) -> Outputs:
        """The note's losses on one batch ``x_a``, ``x_b`` (B, 1, H, W).

        Args:
            skip_weight: the skips' scale (:func:`skip_weight_at`).
            content_weight: the content term's weight in ``total`` (:func:`content_weight_at`; default
                ``loss_weights.content``).
        """
        tc = self.config.trainer
        with self.autocast():
            p = self.model(
                x_a,
                x_b,
                same_domain_use_skip=tc.same_domain_use_skip,
                cross_domain_strategy=tc.cross_domain_strategy,
                skip_weight=skip_weight,
            ).float()
        a_from_b, b_from_a = p.a_from_b, p.b_from_a
        losses = {
            "content": l1(p.z_a, p.z_b),
            "recon_a": l1(p.recon_a, x_a),
            "recon_b": l1(p.recon_b, x_b),
            "cross_a": l1(a_from_b, x_a),
            "cross_b": l1(b_from_a, x_b),
        }
        losses["recon"] = 0.5 * (losses["recon_a"] + losses["recon_b"])
        losses["cross"] = 0.5 * (losses["cross_a"] + losses["cross_b"])
        if tc.content_loss != "l1":
            losses["content_loss"] = content_loss(
                tc.content_loss, p.z_a, p.z_b, variance_weight=tc.content_variance_weight
            )
        content = losses.get("content_loss", losses["content"])
        w = tc.loss_weights
        w_content = w.content if content_weight is None else content_weight
        total = w_content * content + w.recon * losses["recon"] + w.cross * losses["cross"]
        if self.adversarial:
            logits_a, logits_b = self.disc_a(a_from_b), self.disc_b(b_from_a)
            losses["adv"] = 0.5 * (
                F.binary_cross_entropy_with_logits(logits_a, torch.ones_like(logits_a))
                + F.binary_cross_entropy_with_logits(logits_b, torch.ones_like(logits_b))
            )
            total = total + w.adv * losses["adv"]
        losses["total"] = total
        return Outputs(losses, a_from_b, b_from_a, p.recon_a, p.recon_b)

    def autocast(self) -> torch.autocast:
        """bfloat16 autocast around the model's passes when ``trainer.precision`` asks for it."""
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.config.trainer.precision == "bfloat16"
        )

    def _discriminator_step(self, out: Outputs) -> torch.Tensor:
        """Plan D: real = same-domain reconstructions, fake = cross outputs (both detached)."""
        loss = torch.zeros((), device=self.device)
        for disc, real, fake in (
            (self.disc_a, out.recon_a, out.a_from_b),
            (self.disc_b, out.recon_b, out.b_from_a),
        ):
            lr_, lf = disc(real.detach()), disc(fake.detach())
            loss = loss + 0.5 * (
                F.binary_cross_entropy_with_logits(lr_, torch.ones_like(lr_))
                + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))
            )
        self.disc_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.disc_optimizer.step()
        return loss.detach()

    # ------------------------------------------------------------------------------------ training

    def steps_per_epoch(self) -> int:
        tc = self.config.trainer
        if tc.steps_per_epoch:
            return tc.steps_per_epoch
        n = len(self.train)
        return max(1, n // tc.batch_size) if n >= tc.batch_size else 1

    def train_epoch(self, epoch: int, on_step: Callable[[int, int], None] | None = None) -> dict[str, float]:
        """One epoch of updates; returns the training means (``train_*``).

        Losses are accumulated on the device and read once at the end of the epoch.

        Raises:
            NonFiniteLossError: a loss term became NaN/Inf (first term and step).
        """
        tc = self.config.trainer
        self.model.train()
        sw, cw = skip_weight_at(tc, epoch), content_weight_at(tc, epoch)
        n_steps = self.steps_per_epoch()
        n = len(self.train)
        bs = min(tc.batch_size, n)
        sums: dict[str, torch.Tensor] = {}
        first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        bad_term = torch.full((), -1, dtype=torch.long, device=self.device)
        terms = [t for t in LOSS_TERMS if t != "total"] + ["total"]
        perm = torch.randperm(n, generator=self.generator)
        cursor = 0
        for step in range(n_steps):
            if cursor + bs > n:
                perm, cursor = torch.randperm(n, generator=self.generator), 0
            batch = self.train.take(perm[cursor : cursor + bs])
            cursor += bs
            out = self.forward(batch["a"], batch["b"], sw, cw)
            self.optimizer.zero_grad(set_to_none=True)
            out.losses["total"].backward()
            if tc.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
            self.optimizer.step()
            if self.adversarial:
                out.losses["disc"] = self._discriminator_step(out)
            vals = {k: v.detach() for k, v in out.losses.items()}
            for k, v in vals.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
            finite = torch.stack([torch.isfinite(vals[t]) for t in terms if t in vals])
            newly_bad = (first_bad < 0) & ~finite.all()
            first_bad = torch.where(newly_bad, torch.full_like(first_bad, step), first_bad)
            bad_term = torch.where(newly_bad, (~finite).long().argmax(), bad_term)
            if on_step is not None:
                on_step(step + 1, n_steps)
        if int(first_bad) >= 0:
            present = [t for t in terms if t in sums]
            raise NonFiniteLossError(present[int(bad_term)], epoch, int(first_bad) + 1)
        return {f"train_{k}": float(v) / n_steps for k, v in sums.items()}

    @torch.inference_mode()
    def evaluate(self, epoch: int) -> dict[str, float]:
        """Validation metrics on the fixed held-out pairs (model in eval mode)."""
        self.model.eval()
        tc = self.config.trainer
        sw, cw = skip_weight_at(tc, epoch), content_weight_at(tc, epoch)
        bs = max(tc.batch_size, 64)
        sums: dict[str, float] = {}
        weight = 0
        leak_num = leak_den = None
        psnr_sum = 0.0
        for batch in self.val.sequential(bs):
            b = batch["a"].shape[0]
            out = self.forward(batch["a"], batch["b"], sw, cw)
            for k, v in out.losses.items():
                sums[k] = sums.get(k, 0.0) + float(v) * b
            if self.has_clean:
                ca, cb = batch["clean_a"], batch["clean_b"]
                floor = 0.5 * (
                    (batch["a"] - ca).abs().mean((1, 2, 3)) + (batch["b"] - cb).abs().mean((1, 2, 3))
                )
                clean = 0.5 * (
                    (out.a_from_b - ca).abs().mean((1, 2, 3)) + (out.b_from_a - cb).abs().mean((1, 2, 3))
                )
                sums["cross_floor"] = sums.get("cross_floor", 0.0) + float(floor.sum())
                sums["cross_clean"] = sums.get("cross_clean", 0.0) + float(clean.sum())
                psnr_sum += float(0.5 * (psnr(out.a_from_b, ca) + psnr(out.b_from_a, cb)).sum())
                pairs = ((out.a_from_b - ca, batch["b"] - cb, cb), (out.b_from_a - cb, batch["a"] - ca, ca))
                for err, noise, src_clean in pairs:
                    num, den = noise_leak_terms(err, noise, src_clean)
                    leak_num = num if leak_num is None else leak_num + num
                    leak_den = den if leak_den is None else leak_den + den
            weight += b
        metrics = {k: v / weight for k, v in sums.items()}
        if self.has_clean:
            metrics["cross_psnr_clean"] = psnr_sum / weight
            # regression slope of the error on the source noise: the fraction of the source's noise
            # that reaches the cross output (0: none, 1: all of it)
            denom = float(leak_den)
            metrics["noise_leak"] = float(leak_num) / denom if denom > 0 else 0.0
        metrics["skip_weight"] = sw
        if tc.content_schedule != "constant":
            metrics["content_weight"] = cw
        return metrics

    def baselines(self) -> dict[str, float]:
        """The constant-prediction baselines of this run's data (:func:`model.metrics.constant_baselines`)."""
        bs = max(self.config.trainer.batch_size, 256)
        return constant_baselines(self.train.sequential(bs), self.val.sequential(bs))

    @torch.inference_mode()
    def sample_images(self, epoch: int) -> dict[str, np.ndarray]:
        """Grids of ``x_a_from_b`` and ``x_b_from_a`` on the first validation pairs."""
        k = min(self.config.trainer.image_samples, len(self.val))
        if k == 0:
            return {}
        self.model.eval()
        batch = self.val.take(np.arange(k))
        out = self.forward(batch["a"], batch["b"], skip_weight_at(self.config.trainer, epoch))
        grids = {}
        for name, src, pred, tgt, clean in (
            ("x_a_from_b", batch["b"], out.a_from_b, batch["a"], batch.get("clean_a")),
            ("x_b_from_a", batch["a"], out.b_from_a, batch["b"], batch.get("clean_b")),
        ):
            cols = [src, pred, tgt] + ([clean] if clean is not None else [])
            grid = torch.cat([torch.cat(list(c[:, 0]), dim=0) for c in cols], dim=1)  # (k*H, cols*W)
            grids[name] = grid.clamp(0, 1).float().cpu().numpy()
        return grids

    def run(self, on_step: Callable[[int, int, int], None] | None = None) -> Iterator[EpochResult]:
        """Yield epoch 0 (before any update), then one result per training epoch.

        Raises:
            NonFiniteLossError: training produced NaN/Inf (validation NaN is raised likewise).
        """
        tc = self.config.trainer
        for epoch in range(tc.epochs + 1):
            t0 = time.perf_counter()
            train_metrics: dict[str, float] = {}
            if epoch > 0:
                step_cb = (lambda s, n, e=epoch: on_step(e, s, n)) if on_step else None
                train_metrics = self.train_epoch(epoch, step_cb)
            metrics = self.evaluate(epoch)
            if epoch == 0:
                metrics |= self.baselines()
            for term in LOSS_TERMS:
                if term in metrics and not math.isfinite(metrics[term]):
                    raise NonFiniteLossError(f"validation {term}", epoch, 0)
            metrics |= train_metrics
            metrics["epoch_seconds"] = time.perf_counter() - t0
            images = self.sample_images(epoch) if epoch % tc.image_every == 0 or epoch == tc.epochs else {}
            yield EpochResult(epoch, metrics, images)

    def save_checkpoint(self, path: str | Path) -> None:
        """Weights plus the config that built them."""
        state: dict[str, Any] = {"config": self.config.to_dict(), "model": self.model.state_dict()}
        if self.adversarial:
            state["disc_a"], state["disc_b"] = self.disc_a.state_dict(), self.disc_b.state_dict()
        torch.save(state, path)


def fit(
    config: RunConfig,
    *,
    on_epoch: Callable[[EpochResult], str | None] | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
    source: PairedSource | None = None,
) -> FitResult:
    """Train ``config`` and report every epoch.

    Args:
        on_epoch: called with each :class:`EpochResult`; returning a string stops the run early
            with that reason (status ``stopped``).
        on_step: called as ``on_step(epoch, step, steps_per_epoch)`` after each update.
        source: data to use instead of opening ``config.data`` (e.g. shared by several runs).

    Returns:
        The run's status (``finished``, ``diverged`` or ``stopped``), its epochs and the trainer.
    """
    trainer = Trainer(config, source)
    epochs: list[EpochResult] = []
    try:
        for result in trainer.run(on_step):
            epochs.append(result)
            reason = on_epoch(result) if on_epoch else None
            if reason:
                return FitResult("stopped", epochs, reason, trainer)
    except NonFiniteLossError as exc:
        return FitResult("diverged", epochs, str(exc), trainer)
    return FitResult("finished", epochs, None, trainer)
