"""Run configuration: one validated object the model, data and trainer consume.

``RunConfig`` reads the note's JSON as written (``model.encoder.latent_channels``,
``model.decoder_a.features``, ``trainer.loss_weights``, ``trainer.cross_domain_strategy``,
``trainer.same_domain_use_skip``) and adds what the tool needs to run it: Plan A's ``up_mode`` and
``skip_weight`` schedule, Plan D's discriminator, the remedies of docs/remedies.md (``model.norm``,
``trainer.content_loss`` and the content weight's schedule), optimiser, budget, device and data.

Every model forbids unknown keys; :func:`load_config` turns a pydantic error into a
:class:`ConfigError` whose message names the field and, for a misspelt key, the closest valid one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from model.config_messages import describe_validation_error, model_of, unknown_key
from model.input_files import (
    BoundedLoader,
    InputFileError,
    YAMLLimitError,
    parse_document,
    quote,
)

__all__ = [
    "ConfigError",
    "DataConfig",
    "DecoderConfig",
    "DiscriminatorConfig",
    "EncoderConfig",
    "FastMRIData",
    "HDF5Data",
    "LossWeights",
    "ModelConfig",
    "RunConfig",
    "SEED_LIMIT",
    "Seed",
    "SyntheticData",
    "TrainerConfig",
    "apply_overrides",
    "describe_validation_error",
    "load_config",
    "parse_overrides",
    "read_config_file",
]


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says which field and why."""


class _Strict(BaseModel):
    """Unknown keys are errors, and every float is finite (a NaN or Inf noise level or learning rate would
    only show as a run that "diverges" at epoch 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


#: Seeds are below 2**63: torch.manual_seed and torch.Generator.manual_seed take a signed 64-bit integer
#: (numpy's SeedSequence would take any non-negative int, so a bigger seed fails only later, in torch).
SEED_LIMIT = 2**63


def _check_seed(seed: int) -> int:
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(
            f"a seed must be an integer from 0 to 2**63 - 1 (torch's generators take 64-bit seeds), "
            f"got {quote(seed)}"
        )
    return seed


Seed = Annotated[int, AfterValidator(_check_seed)]


# ---------------------------------------------------------------------------------------------- model


class EncoderConfig(_Strict):
    """Shared UNet encoder: ``features`` are the widths of the levels, shallow to deep."""

    in_channels: int = Field(1, ge=1)
    features: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [64, 128, 256], min_length=1)
    latent_channels: int = Field(256, ge=1)


class DecoderConfig(_Strict):
    """One domain's decoder: ``features`` are the widths of its ``Up`` blocks, deep to shallow."""

    latent_channels: int = Field(256, ge=1)
    features: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [256, 128, 64], min_length=1)
    out_channels: int = Field(1, ge=1)


class DiscriminatorConfig(_Strict):
    """Plan D's patch discriminator (used only when ``trainer.loss_weights.adv > 0``)."""

    features: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [32, 64], min_length=1)


class ModelConfig(_Strict):
    encoder: EncoderConfig = EncoderConfig()
    decoder_a: DecoderConfig = DecoderConfig()
    decoder_b: DecoderConfig = DecoderConfig()
    up_mode: Literal["concat", "add"] = Field(
        "concat", description="concat: the original UNet Up (zeros without a skip); add: Plan A"
    )
    upsample: Literal["transpose", "bilinear"] = "transpose"
    norm: Literal["batch", "batch_per_path", "batch_per_path_affine", "group", "instance", "none"] = Field(
        "batch",
        description="the norm in every encoder and decoder block (model.norm): batch (the note's); "
        "batch_per_path (BatchNorm with running statistics per path: per domain in the encoder, "
        "same-domain and cross in a decoder); batch_per_path_affine (per-path statistics and per-path "
        "affine parameters: domain-specific BatchNorm in full); group (GroupNorm, the largest divisor of "
        "the channels not above 8 groups); instance (InstanceNorm2d, affine); none (convolutions with a "
        "bias)",
    )
    discriminator: DiscriminatorConfig = DiscriminatorConfig()

    @model_validator(mode="after")
    def _widths_agree(self) -> ModelConfig:
        levels = len(self.encoder.features)
        for name in ("decoder_a", "decoder_b"):
            dec: DecoderConfig = getattr(self, name)
            if dec.latent_channels != self.encoder.latent_channels:
                raise ValueError(
                    f"model.{name}.latent_channels ({dec.latent_channels}) must equal "
                    f"model.encoder.latent_channels ({self.encoder.latent_channels}): the decoder reads the "
                    "encoder's latent"
                )
            if len(dec.features) != levels:
                raise ValueError(
                    f"model.{name}.features has {len(dec.features)} levels but model.encoder.features has "
                    f"{levels}: each Up block takes the skip of one encoder level"
                )
        return self


# -------------------------------------------------------------------------------------------- trainer


class LossWeights(_Strict):
    content: float = Field(1.0, ge=0)
    recon: float = Field(0.5, ge=0)
    cross: float = Field(1.0, ge=0)
    adv: float = Field(0.0, ge=0, description="Plan D: adversarial weight; 0 turns the discriminator off")


class TrainerConfig(_Strict):
    loss_weights: LossWeights = LossWeights()
    cross_domain_strategy: Literal["use_source", "no_skip"] = "use_source"
    same_domain_use_skip: bool = True
    skip_weight: float = Field(1.0, ge=0, description="scale of the skip features at the start of training")
    skip_schedule: Literal["constant", "linear", "cosine"] = "constant"
    skip_weight_final: float = Field(0.0, ge=0, description="skip weight reached at the end of the decay")
    skip_decay_epochs: int | None = Field(
        None, ge=1, description="epochs over which skip_weight decays to skip_weight_final (default: all)"
    )
    content_loss: Literal["l1", "cosine", "vicreg"] = Field(
        "l1",
        description="the trained content term (model.losses): l1 (the note's |z_a - z_b|); cosine "
        "(mean 1 - cosine similarity of each pair's flattened latents, scale-free); vicreg (l1 plus "
        "VICReg's variance hinge on each latent element's standard deviation over the batch). The "
        "logged `content` is always the note's l1; another form is logged as `content_loss`",
    )
    content_variance_weight: float = Field(
        1.0, ge=0, description="vicreg only: weight of the variance terms against the L1 invariance"
    )
    content_stop_gradient: Literal["none", "a", "b", "symmetric"] = Field(
        "none",
        description="a stop-gradient in the content term's invariance (SimSiam): none (the note's); a "
        "(z_a is a fixed target, only z_b is pulled); b (the reverse); symmetric (the mean of both)",
    )
    content_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant",
        description="content weight over training: from loss_weights.content at epoch 1 to "
        "content_weight_final at epoch content_ramp_epochs (up or down), then held",
    )
    content_weight_final: float = Field(0.0, ge=0, description="content weight reached at the ramp's end")
    content_ramp_epochs: int | None = Field(
        None,
        ge=1,
        description="epochs over which the content weight moves to content_weight_final (default: all)",
    )
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="the learning rate over training, per step: constant (the note's) or cosine (from lr "
        "after the warm-up to lr_final at the last step); either after lr_warmup_epochs of linear warm-up",
    )
    lr_warmup_epochs: float = Field(
        0.0, ge=0, description="epochs (fractions allowed) of linear warm-up from 0 to lr; 0: none"
    )
    lr_final: float = Field(0.0, ge=0, description="cosine only: the learning rate at the last step")
    weight_decay: float = Field(0.0, ge=0)
    discriminator_lr: float = Field(2e-4, gt=0)
    grad_clip: float | None = Field(None, gt=0)
    epochs: int = Field(10, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1, description="default: one pass over the training pairs")
    batch_size: int = Field(16, ge=1)
    seed: Seed = 0
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda or cuda:N")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")
    precision: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="bfloat16: the model's passes under torch.autocast (losses and metrics stay float32); "
        "fast on CPUs with AVX512-BF16/AMX and on recent GPUs",
    )
    image_samples: int = Field(
        4, ge=0, description="pairs shown in the per-epoch x_a_from_b / x_b_from_a grids"
    )
    image_every: int = Field(1, ge=1, description="epochs between image grids")
    val_pairs: int | None = Field(
        None,
        ge=1,
        description="validation pairs measured each epoch: the first N of the fixed validation split "
        "(default: all of it); the training split does not change",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainerConfig:
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"trainer.device must be auto, cpu, cuda or cuda:N, not {self.device!r}")
        never_skips = self.skip_schedule == "constant" and self.skip_weight == 0
        if never_skips and (self.cross_domain_strategy == "use_source" or self.same_domain_use_skip):
            raise ValueError(
                "trainer.skip_weight is 0 with a constant skip_schedule, so no skip ever reaches a decoder, "
                "yet trainer.cross_domain_strategy='use_source' or trainer.same_domain_use_skip=true asks "
                "for skips: set cross_domain_strategy='no_skip' and same_domain_use_skip=false instead"
            )
        return self


# ----------------------------------------------------------------------------------------------- data


class SyntheticData(_Strict):
    """Built-in paired PD/PDFS knee phantoms with known clean images (see ``model.phantom``)."""

    source: Literal["synthetic"] = "synthetic"
    pairs: int = Field(256, ge=2)
    size: int = Field(64, ge=8)
    noise: float | dict[Literal["a", "b"], float] = Field(
        0.05, description="noise sigma relative to the mean foreground signal (1/SNR), or {a: .., b: ..}"
    )
    structural_difference: float = Field(0.0, ge=0, le=1)
    misregistration: float = Field(0.0, ge=0, le=1)
    fat_suppression: float = Field(0.95, ge=0, le=1)
    fat_suppression_variation: float = Field(0.0, ge=0, le=1)
    seed: Seed = 0
    val_fraction: float = Field(0.25, gt=0, lt=1)

    @field_validator("noise", mode="before")
    @classmethod
    def _noise_finite(cls, noise: Any) -> Any:
        # one message for the field, not one per member of its union (a number or {a: .., b: ..})
        values = noise.values() if isinstance(noise, dict) else [noise]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ValueError(f"data.noise must be a finite number, got {quote(noise)}")
        return noise

    @model_validator(mode="after")
    def _noise_non_negative(self) -> SyntheticData:
        values = self.noise.values() if isinstance(self.noise, dict) else [self.noise]
        if any(v < 0 for v in values):
            raise ValueError(f"data.noise must be >= 0, got {self.noise}")
        if isinstance(self.noise, dict) and set(self.noise) != {"a", "b"}:
            raise ValueError("data.noise as a mapping needs both keys a and b")
        return self

    def noise_levels(self) -> tuple[float, float]:
        """Noise sigma of domain a and b."""
        if isinstance(self.noise, dict):
            return float(self.noise["a"]), float(self.noise["b"])
        return float(self.noise), float(self.noise)


class HDF5Keys(_Strict):
    a: str = "a"
    b: str = "b"
    clean_a: str | None = "clean_a"
    clean_b: str | None = "clean_b"


class HDF5Data(_Strict):
    """Paired slices from one HDF5 file (datasets ``a`` and ``b`` of shape (N, H, W))."""

    source: Literal["hdf5"]
    path: Path
    keys: HDF5Keys = HDF5Keys()
    cache_mb: float = Field(
        512, ge=0, description="load the file into memory when it fits in this many MiB, else stream"
    )
    val_fraction: float = Field(0.25, gt=0, lt=1)


class FastMRIData(_Strict):
    """PD/PDFS pseudo-pairs from a directory of fastMRI knee volumes."""

    source: Literal["fastmri"]
    directory: Path
    pairing: Path | None = Field(None, description="CSV of (PD file, PDFS file); default: sorted order")
    key: Literal["reconstruction_rss", "reconstruction_esc"] = "reconstruction_rss"
    crop: int = Field(320, ge=8)
    size: int | None = Field(None, ge=8, description="resize the crop to this size (default: keep)")
    cache_mb: float = Field(512, ge=0)
    val_fraction: float = Field(0.25, gt=0, lt=1)


DataConfig = Annotated[Union[SyntheticData, HDF5Data, FastMRIData], Field(discriminator="source")]  # noqa: UP007


class RunConfig(_Strict):
    """Everything one training run needs; the note's JSON is a valid (partial) RunConfig."""

    model: ModelConfig = ModelConfig()
    trainer: TrainerConfig = TrainerConfig()
    data: DataConfig = SyntheticData()

    @model_validator(mode="before")
    @classmethod
    def _default_source(cls, data: Any) -> Any:
        # the note's JSON has no data section; a partial one without `source` means the built-in phantoms
        if isinstance(data, dict) and isinstance(data.get("data"), dict) and "source" not in data["data"]:
            data = {**data, "data": {**data["data"], "source": "synthetic"}}
        return data

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready mapping of every resolved field."""
        return self.model_dump(mode="json")


# -------------------------------------------------------------------------------------------- loading


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML mapping from ``path``.

    Raises:
        ConfigError: the file is missing, a directory, unreadable, not UTF-8 text, malformed, beyond the
            bounds of :mod:`model.input_files` (nesting, YAML aliases) or not a mapping.
    """
    path = Path(path)
    try:
        data = parse_document(path, "config")
    except InputFileError as exc:
        raise ConfigError(str(exc)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping, got {type(data).__name__}")
    return data


def parse_overrides(
    texts: list[str], *, option: str = "--set", example: str = "trainer.loss_weights.recon=0.2"
) -> list[tuple[str, Any]]:
    """``["a.b=0.2", "c=[1, 2]"]`` -> ``[("a.b", 0.2), ("c", [1, 2])]``: values read as YAML (``0.2`` a
    float, ``false`` a bool, ``[1, 2]`` a list; a string when it is no valid YAML).

    Raises:
        ConfigError: an override is not ``key=value``, or its value is a YAML document past the limits.
    """
    items = []
    for text in texts:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} {quote(text)}: expected key=value, e.g. {example}")
        try:
            value = yaml.load(raw, Loader=BoundedLoader) if raw.strip() else ""  # noqa: S506 - safe
        except YAMLLimitError as exc:
            raise ConfigError(f"{option} {key.strip()}: {exc.problem}") from None
        except yaml.YAMLError:
            value = raw
        items.append((key.strip(), value))
    return items


def apply_overrides(data: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted ``key=value`` overrides applied.

    Values are parsed as YAML (``0.2`` is a float, ``false`` a bool, ``[1, 2]`` a list).

    Raises:
        ConfigError: an override is not ``key=value`` or names no field.
    """
    out = json.loads(json.dumps(data, default=str))
    items = list(overrides.items()) if isinstance(overrides, dict) else parse_overrides(overrides)
    for key, value in items:
        _check_path(key)
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return out


def load_config(
    source: str | Path | dict[str, Any] | None = None, overrides: list[str] | dict[str, Any] | None = None
) -> RunConfig:
    """Build a validated :class:`RunConfig` from a file or mapping plus ``key=value`` overrides.

    Raises:
        ConfigError: the file or an override is invalid; the message names the field.
    """
    if source is None:
        data: dict[str, Any] = {}
        where = "config"
    elif isinstance(source, dict):
        data, where = source, "config"
    else:
        data, where = read_config_file(source), str(source)
    if overrides:
        data = apply_overrides(data, overrides)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {describe_validation_error(exc, RunConfig)}") from None


# ------------------------------------------------------------------------------- override paths


def _check_path(key: str) -> None:
    """Raise ConfigError when a dotted override path names no RunConfig field."""
    model: type[BaseModel] | None = RunConfig
    walked: list[str] = []
    for part in key.split("."):
        if model is None:
            return  # below a leaf that is itself a mapping (e.g. data.noise.a): let validation judge
        field = model.model_fields.get(part)
        if field is None:
            raise ConfigError(f"--set {key}: {unknown_key(part, model, walked)}")
        walked.append(part)
        model = model_of(field.annotation)
