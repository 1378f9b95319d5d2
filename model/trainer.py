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
(:func:`content_weight_at`), as ``skip_schedule`` moves the skip weight; ``trainer.lr_schedule`` and
``lr_warmup_epochs`` move the learning rate per step (:func:`model.schedules.lr_at`).

The trainer is a library: :func:`fit` takes a :class:`~model.config.RunConfig` and reports each epoch
(validation metrics on a fixed held-out split, epoch 0 measured before any update, plus image grids)
to a callback. It never imports tracking or orchestration code.
"""

from __future__ import annotations

import copy
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

from model.batches import Batches
from model.checkpoint import Checkpoint, capture_rng, load_checkpoint, restore_rng, same_run, write_checkpoint
from model.config import ConfigError, RunConfig
from model.data import PairedSource, SourceShape, open_source, split_indices
from model.device import resolve_device
from model.discriminator import PatchDiscriminator
from model.losses import trained_content
from model.metrics import constant_baselines, l1, noise_leak_terms, psnr
from model.preflight import check_data_fits
from model.schedules import content_weight_at, lr_at, lr_moves, scheduled, skip_weight_at
from model.unet import CrossDomainAE

__all__ = [
    "EpochResult",
    "FitResult",
    "Interrupted",
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


class Interrupted(Exception):
    """Training was asked to stop (``stop()`` returned True) at a step boundary; the partial epoch is
    abandoned, so the last epoch's checkpoint is where the run resumes."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch  # the last complete epoch
        super().__init__(f"interrupted after epoch {epoch}")


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

    status: str  # "finished" | "diverged" | "stopped" | "interrupted" (resumable from its checkpoint)
    epochs: list[EpochResult]  # the epochs this call ran (after the resumed one, when resumed)
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
        self.train = Batches(self.source, train_idx, self.device)
        self.val = Batches(self.source, val_idx[: tc.val_pairs], self.device)
        self.generator = torch.Generator().manual_seed(tc.seed)
        self.has_clean = self.source.has_clean
        self._floor: float | None = None
        self.epoch = -1  # the last complete epoch (0: evaluated before any update)

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
        content = trained_content(tc, p.z_a, p.z_b, losses["content"])
        if tc.content_loss != "l1":
            losses["content_loss"] = content
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

    def train_epoch(
        self,
        epoch: int,
        on_step: Callable[[int, int], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> dict[str, float]:
        """One epoch of updates; returns the training means (``train_*``).

        Losses are accumulated on the device and read once at the end of the epoch.

        Raises:
            NonFiniteLossError: a loss term became NaN/Inf (first term and step).
            Interrupted: ``stop()`` said so before a step (the epoch's updates so far are to be abandoned).
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
        scheduled_lr = lr_moves(tc)
        for step in range(n_steps):
            if stop is not None and stop():
                raise Interrupted(self.epoch)
            if cursor + bs > n:
                perm, cursor = torch.randperm(n, generator=self.generator), 0
            batch = self.train.take(perm[cursor : cursor + bs])
            cursor += bs
            out = self.forward(batch["a"], batch["b"], sw, cw)
            if scheduled_lr:
                for group in self.optimizer.param_groups:
                    group["lr"] = lr_at(tc, epoch, step, n_steps)
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
        if lr_moves(tc):  # the rate of the epoch's last update (epoch 0: of the first update)
            n = self.steps_per_epoch()
            metrics["lr"] = lr_at(tc, max(epoch, 1), n - 1 if epoch else 0, n)
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

    def run(
        self, on_step: Callable[[int, int, int], None] | None = None, stop: Callable[[], bool] | None = None
    ) -> Iterator[EpochResult]:
        """Yield epoch 0 (before any update), then one result per training epoch; a resumed trainer
        (:meth:`resume`) starts at the epoch after its checkpoint's.

        Raises:
            NonFiniteLossError: training produced NaN/Inf (validation NaN is raised likewise).
            Interrupted: ``stop()`` said so, before a step or between epochs.
        """
        tc = self.config.trainer
        for epoch in range(self.epoch + 1, tc.epochs + 1):
            if stop is not None and stop():
                raise Interrupted(self.epoch)
            t0 = time.perf_counter()
            train_metrics: dict[str, float] = {}
            if epoch > 0:
                step_cb = (lambda s, n, e=epoch: on_step(e, s, n)) if on_step else None
                train_metrics = self.train_epoch(epoch, step_cb, stop)
            metrics = self.evaluate(epoch)
            if epoch == 0:
                metrics |= self.baselines()
            for term in LOSS_TERMS:
                if term in metrics and not math.isfinite(metrics[term]):
                    raise NonFiniteLossError(f"validation {term}", epoch, 0)
            metrics |= train_metrics
            metrics["epoch_seconds"] = time.perf_counter() - t0
            images = self.sample_images(epoch) if epoch % tc.image_every == 0 or epoch == tc.epochs else {}
            self.epoch = epoch
            yield EpochResult(epoch, metrics, images)

    def checkpoint(self, extra: dict[str, Any] | None = None) -> Checkpoint:
        """The state to continue from after the last complete epoch (:mod:`model.checkpoint`)."""
        state: dict[str, Any] = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.adversarial:
            state["disc_a"], state["disc_b"] = self.disc_a.state_dict(), self.disc_b.state_dict()
            state["disc_optimizer"] = self.disc_optimizer.state_dict()
        state["rng"] = capture_rng(self.generator)
        return Checkpoint(self.epoch, self.config.to_dict(), state, dict(extra or {}))

    def save_checkpoint(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write :meth:`checkpoint` to ``path`` atomically (config, weights, optimisers, RNG states)."""
        return write_checkpoint(self.checkpoint(extra), path)

    def resume(self, checkpoint: Checkpoint) -> None:
        """Continue from ``checkpoint``: :meth:`run` yields its epoch + 1 next.

        Raises:
            ConfigError: the checkpoint was written by another config.
        """
        if not same_run(checkpoint.config, self.config.to_dict()):
            raise ConfigError("the checkpoint was written by another config; resume it with its own config")
        st = checkpoint.state
        self.model.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        if self.adversarial:
            self.disc_a.load_state_dict(st["disc_a"])
            self.disc_b.load_state_dict(st["disc_b"])
            self.disc_optimizer.load_state_dict(st["disc_optimizer"])
        restore_rng(st["rng"], self.generator)
        self.epoch = checkpoint.epoch


def fit(
    config: RunConfig,
    *,
    on_epoch: Callable[[EpochResult], str | None] | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
    source: PairedSource | None = None,
    checkpoint: str | Path | None = None,
    resume: Checkpoint | str | Path | None = None,
    stop: Callable[[], bool] | None = None,
    extra: Callable[[], dict[str, Any]] | None = None,
) -> FitResult:
    """Train ``config`` and report every epoch.

    Args:
        on_epoch: called with each :class:`EpochResult`; returning a string stops the run early
            with that reason (status ``stopped``).
        on_step: called as ``on_step(epoch, step, steps_per_epoch)`` after each update.
        source: data to use instead of opening ``config.data`` (e.g. shared by several runs).
        checkpoint: write the resumable checkpoint of the last complete epoch here when the run ends,
            however it ends (taken after every epoch, once ``on_epoch`` returned).
        resume: continue from this checkpoint (or its path) at its epoch + 1.
        stop: asked before every step and epoch; True abandons the epoch in progress (status
            ``interrupted``: the last epoch's checkpoint is where the run resumes).
        extra: the caller's bookkeeping to keep in each checkpoint (:attr:`Checkpoint.extra`).

    Returns:
        The run's status (``finished``, ``diverged``, ``stopped`` or ``interrupted``), the epochs it ran
        and the trainer (``trainer.epoch``: the last complete epoch).

    Raises:
        ConfigError: ``resume`` was written by another config.
        model.checkpoint.CheckpointError: ``resume`` cannot be read.
    """
    trainer = Trainer(config, source)
    if resume is not None:
        trainer.resume(resume if isinstance(resume, Checkpoint) else load_checkpoint(resume))
    epochs: list[EpochResult] = []
    # the last complete epoch's state, kept in memory and written once where the run ends: a copy costs
    # a memcpy per epoch where a file cost a serialisation and a write (docs/performance.md, section 0b)
    last: Checkpoint | None = None
    try:
        for result in trainer.run(on_step, stop):
            epochs.append(result)
            reason = on_epoch(result) if on_epoch else None
            if checkpoint is not None:
                last = copy.deepcopy(trainer.checkpoint(extra() if extra else None))
            if reason:
                return FitResult("stopped", epochs, reason, trainer)
    except NonFiniteLossError as exc:
        return FitResult("diverged", epochs, str(exc), trainer)
    except Interrupted as exc:
        return FitResult("interrupted", epochs, str(exc), trainer)
    finally:
        if last is not None:
            write_checkpoint(last, checkpoint)
    return FitResult("finished", epochs, None, trainer)
