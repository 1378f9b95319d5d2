"""``orch data``: make synthetic paired files and inspect paired HDF5 files.

Thin wrappers: the library (:mod:`model.data.phantom`, :mod:`model.data.hdf5`) validates and raises
:class:`~model.data.DataError`, which the app turns into one message on stderr and exit code 2.
Mounted by ``orchestrator.cli`` as ``app.add_typer(data_app, name="data")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.common import OrchTyper, console, fail

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = ["data_app"]

data_app = OrchTyper(
    name="data", help="Make synthetic PD/PDFS pairs (synth) and check paired HDF5 files (inspect)."
)


def _option_errors(exc: ValidationError) -> str:
    """Pydantic errors on SyntheticData fields, phrased with the command's option names."""
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        option = f"--{field.replace('_', '-')}" if field else "options"
        got = "" if err["type"] == "value_error" else f" (got {err.get('input')!r})"
        parts.append(f"{option}: {err['msg'].removeprefix('Value error, ')}{got}")
    return "; ".join(parts)


@data_app.command()
def synth(
    out: Annotated[Path, typer.Argument(metavar="OUT.h5", help="HDF5 file to write", show_default=False)],
    pairs: Annotated[int, typer.Option(help="number of pairs")] = 256,
    size: Annotated[int, typer.Option(help="image height and width (pixels)")] = 64,
    noise: Annotated[
        float | None, typer.Option(help="noise sigma of both domains (1/SNR) (default 0.05)")
    ] = None,
    noise_a: Annotated[float | None, typer.Option(help="noise sigma of domain a (PD)")] = None,
    noise_b: Annotated[float | None, typer.Option(help="noise sigma of domain b (PDFS)")] = None,
    structural_difference: Annotated[
        float, typer.Option(help="0 = same anatomy .. 1 = strongly different")
    ] = 0.0,
    misregistration: Annotated[float, typer.Option(help="0 = aligned .. 1 = up to 3 px / 3 degrees")] = 0.0,
    fat_suppression: Annotated[float, typer.Option(help="fraction of fat signal removed in PDFS")] = 0.95,
    fat_suppression_variation: Annotated[
        float, typer.Option(help="0 = uniform .. 1 = falls to 0 in places")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    force: Annotated[bool, typer.Option("--force", help="replace OUT if it exists")] = False,
) -> None:
    """Write synthetic paired PD/PDFS knee phantoms (with their clean images) to OUT."""
    from pydantic import ValidationError

    from model.config import SyntheticData
    from model.data import DataError, Pairs, synthesise, write_pairs

    if noise is not None and (noise_a is not None or noise_b is not None):
        raise fail("give either --noise or --noise-a/--noise-b, not both")
    if (noise_a is None) != (noise_b is None):
        raise fail("--noise-a and --noise-b go together")
    for option, value in (("--noise", noise), ("--noise-a", noise_a), ("--noise-b", noise_b)):
        if value is not None and not value >= 0:
            raise fail(f"{option}: the noise sigma (1/SNR) must be >= 0, got {value}")
    level: Any = {"a": noise_a, "b": noise_b} if noise_a is not None else (0.05 if noise is None else noise)
    try:
        cfg = SyntheticData(
            pairs=pairs, size=size, noise=level, structural_difference=structural_difference,
            misregistration=misregistration, fat_suppression=fat_suppression,
            fat_suppression_variation=fat_suppression_variation, seed=seed,
        )  # fmt: skip
    except ValidationError as exc:
        raise fail(_option_errors(exc)) from None
    if out.exists() and not force:
        raise fail(f"{out} exists; pass --force to replace it")
    if out.exists() and not out.is_file():
        raise fail(f"{out} exists and is not a file")
    if not out.parent.is_dir():
        raise fail(f"{out.parent}: no such directory")

    ph = synthesise(cfg)
    try:
        write_pairs(out, Pairs(ph.a, ph.b, ph.clean_a, ph.clean_b), source="model.phantom", attrs=ph.params)
    except (DataError, OSError) as exc:
        raise fail(f"{out}: cannot write ({exc})") from None
    p = ph.params
    knobs = (
        f"noise a {p['noise_a']:g} (sigma {p['sigma_a']:.4f}), "
        f"b {p['noise_b']:g} (sigma {p['sigma_b']:.4f}); "
        f"structural difference {p['structural_difference']:g}; misregistration {p['misregistration']:g}; "
        f"fat suppression {p['fat_suppression']:g} (variation {p['fat_suppression_variation']:g}); "
        f"seed {p['seed']}"
    )
    size_mib = out.stat().st_size / 2**20
    console.print(
        f"wrote {out}: {cfg.pairs} pairs of {cfg.size}x{cfg.size} PD/PDFS "
        f"(datasets a, b, clean_a, clean_b; {size_mib:.1f} MiB)\n  {knobs}",
        highlight=False,
        soft_wrap=True,
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


@data_app.command()
def inspect(
    file: Annotated[Path, typer.Argument(metavar="FILE.h5", help="paired HDF5 file", show_default=False)],
    key_a: Annotated[str | None, typer.Option(help="dataset of domain a (default a)")] = None,
    key_b: Annotated[str | None, typer.Option(help="dataset of domain b (default b)")] = None,
    key_clean_a: Annotated[
        str | None, typer.Option(help="clean dataset of a (default clean_a, optional)")
    ] = None,
    key_clean_b: Annotated[
        str | None, typer.Option(help="clean dataset of b (default clean_b, optional)")
    ] = None,
    preview: Annotated[
        Path | None, typer.Option(help="PNG of a few pairs (default FILE.preview.png next to FILE.h5)")
    ] = None,
    no_preview: Annotated[bool, typer.Option("--no-preview", help="do not write a preview PNG")] = False,
    n: Annotated[int, typer.Option("--pairs-shown", "-n", min=1, help="pairs in the preview")] = 4,
) -> None:
    """Print shapes, dtypes, value ranges, NaN/Inf counts, pairing checks and attributes; save a preview."""
    from rich.table import Table

    from model.config import HDF5Keys
    from model.data import inspect_file, save_preview

    given = {"a": key_a, "b": key_b, "clean_a": key_clean_a, "clean_b": key_clean_b}
    keys = HDF5Keys(**{k: v for k, v in given.items() if v is not None})
    info = inspect_file(file, keys)

    table = Table(title=str(file), title_justify="left")
    for col in ("dataset", "shape", "dtype", "min", "max", "mean", "NaN", "Inf"):
        table.add_column(
            col, justify="left" if col in ("dataset", "shape", "dtype") else "right", no_wrap=True
        )
    roles = {name: role for role, name in info["keys"].items() if name}
    for name, ds in info["datasets"].items():
        label = name if roles.get(name, name) == name else f"{name} ({roles[name]})"
        table.add_row(
            label, "x".join(map(str, ds["shape"])), ds["dtype"],
            *(_fmt(ds.get(k)) for k in ("min", "max", "mean", "nan", "inf")),
        )  # fmt: skip
    console.print(table)
    console.print(
        f"pairs {_fmt(info['pairs'])} of {_fmt(info['height'])}x{_fmt(info['width'])}, domains "
        f"{' / '.join(info['domains'])}, clean images: {'yes' if info['has_clean'] else 'no'}",
        highlight=False,
    )
    if info["attrs"]:
        attrs = Table("attribute", "value", title="attributes", title_justify="left")
        for k, v in sorted(info["attrs"].items()):
            attrs.add_row(k, _fmt(v))
        console.print(attrs)
    if info["problems"]:
        raise fail("; ".join(info["problems"]))
    if no_preview:
        return
    png = preview or file.with_suffix(".preview.png")
    if png.suffix.lower() != ".png":
        raise fail(f"--preview {png}: expected a .png path")
    try:
        save_preview(file, png, n=n, keys=keys)
    except OSError as exc:
        raise fail(f"{png}: cannot write the preview ({exc})") from None
    console.print(f"preview of {min(n, info['pairs'])} pairs: {png}", highlight=False)
