"""The synthetic knee phantoms: every knob does what docs/data.md says, deterministically and fast."""

from __future__ import annotations

import time

import numpy as np
import pytest

from model.data.phantom import TISSUES, PhantomPairs, generate_pairs, tissue_signals

_IDX = {t.name: i for i, t in enumerate(TISSUES)}
_FATTY = ("subcutaneous_fat", "marrow")
_WATERY = ("fluid", "cartilage")


def _interior(labels: np.ndarray, tissue: int) -> np.ndarray:
    """Pixels of ``tissue`` whose 4 neighbours are the same tissue (no partial volume), (N, H, W) bool."""
    m = labels == tissue
    inner = m.copy()
    inner[:, 1:-1, 1:-1] &= m[:, :-2, 1:-1] & m[:, 2:, 1:-1] & m[:, 1:-1, :-2] & m[:, 1:-1, 2:]
    inner[:, [0, -1], :] = False
    inner[:, :, [0, -1]] = False
    return inner


@pytest.mark.parametrize("n, size", [(3, 16), (5, 33), (2, 64)])
def test_shapes_dtypes_and_scale(n: int, size: int) -> None:
    ph = generate_pairs(n, size, seed=1)
    for arr in (ph.a, ph.b, ph.clean_a, ph.clean_b):
        assert arr.shape == (n, size, size) and arr.dtype == np.float32
        assert np.isfinite(arr).all() and arr.min() >= 0
    assert ph.labels_a is not None and ph.labels_a.shape == (n, size, size) and ph.labels_a.dtype == np.uint8
    # the same factor per pair puts the clean PD's 99th percentile at 1; PDFS stays darker
    p99 = np.percentile(ph.clean_a.reshape(n, -1), 99, axis=1)
    np.testing.assert_allclose(p99, 1.0, rtol=1e-4)
    assert ph.clean_b.mean() < 0.6 * ph.clean_a.mean()


def test_same_seed_same_arrays_and_other_seed_differs() -> None:
    kw = dict(
        noise=(0.1, 0.05), structural_difference=0.5, misregistration=0.5, fat_suppression_variation=0.5
    )
    one, two = generate_pairs(4, 32, seed=7, **kw), generate_pairs(4, 32, seed=7, **kw)
    for name in ("a", "b", "clean_a", "clean_b", "labels_a", "labels_b"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
    assert one.params == two.params
    assert not np.array_equal(one.clean_a, generate_pairs(4, 32, seed=8, **kw).clean_a)


def test_anatomy_varies_between_pairs() -> None:
    ph = generate_pairs(6, 32, noise=(0, 0))
    labels = ph.labels_a.reshape(6, -1)
    assert all(not np.array_equal(labels[i], labels[j]) for i in range(6) for j in range(i + 1, 6))
    assert set(np.unique(labels)) == set(range(len(TISSUES)))  # every tissue appears


def test_structural_difference_zero_gives_identical_anatomy() -> None:
    ph = generate_pairs(8, 32, structural_difference=0.0)
    np.testing.assert_array_equal(ph.labels_a, ph.labels_b)
    assert ph.params["structures_only_in_a"] == ph.params["structures_only_in_b"] == 0


@pytest.mark.parametrize("amount", [0.3, 1.0])
def test_structural_difference_adds_structures_to_one_domain_only(amount: float) -> None:
    base = generate_pairs(16, 32, structural_difference=0.0, seed=3)
    ph = generate_pairs(16, 32, structural_difference=amount, seed=3)
    differs = (ph.labels_a != ph.labels_b).reshape(16, -1).mean(axis=1)
    assert (differs > 0).sum() >= 4
    assert ph.params["structures_only_in_a"] > 0 and ph.params["structures_only_in_b"] > 0
    # the shared anatomy is the same as without the knob: blobs are painted on top of it
    same = (ph.labels_a == base.labels_a).mean()
    assert same > 0.9


def test_more_structural_difference_differs_more() -> None:
    frac = [
        (g.labels_a != g.labels_b).mean()
        for g in (generate_pairs(32, 32, structural_difference=s, seed=2) for s in (0.0, 0.3, 1.0))
    ]
    assert frac[0] == 0 < frac[1] < frac[2]


@pytest.mark.parametrize("fat_suppression", [0.95, 0.6])
def test_pdfs_darkens_fat_and_not_water(fat_suppression: float) -> None:
    ph = generate_pairs(12, 64, noise=(0, 0), fat_suppression=fat_suppression, seed=4)
    water, fat = tissue_signals()
    for name in _FATTY + _WATERY:
        t = _IDX[name]
        inside = _interior(ph.labels_a, t)
        assert inside.sum() > 20, name
        ratio = np.median(ph.clean_b[inside] / ph.clean_a[inside])
        expected = (water[t] + (1 - fat_suppression) * fat[t]) / (water[t] + fat[t])
        assert ratio == pytest.approx(expected, rel=0.02), name
        if name in _WATERY:
            assert ratio == pytest.approx(1.0, abs=1e-4), name
        else:
            assert ratio < 1 - 0.5 * fat_suppression, name


def test_no_fat_suppression_keeps_both_contrasts_equal() -> None:
    ph = generate_pairs(3, 32, noise=(0, 0), fat_suppression=0.0)
    np.testing.assert_allclose(ph.clean_a, ph.clean_b, rtol=1e-6)


def test_fat_suppression_variation_varies_smoothly_in_space() -> None:
    uniform = generate_pairs(12, 64, noise=(0, 0), seed=5)
    varying = generate_pairs(12, 64, noise=(0, 0), fat_suppression_variation=1.0, seed=5)
    t = _IDX["subcutaneous_fat"]
    inside = _interior(uniform.labels_a, t)
    r_uniform = uniform.clean_b[inside] / uniform.clean_a[inside]
    r_varying = varying.clean_b[inside] / varying.clean_a[inside]
    assert r_varying.std() > 5 * r_uniform.std()
    assert r_varying.mean() > r_uniform.mean()  # suppression can only get weaker
    # water tissues are unaffected
    w = _interior(uniform.labels_a, _IDX["fluid"])
    np.testing.assert_allclose(varying.clean_b[w], varying.clean_a[w], rtol=1e-5)


def test_noise_is_rician_at_the_asked_snr() -> None:
    noise = (0.10, 0.05)
    ph = generate_pairs(48, 64, noise=noise, seed=6)
    for dom, level in zip("ab", noise, strict=True):
        noisy, clean = getattr(ph, dom), getattr(ph, f"clean_{dom}")
        labels = getattr(ph, f"labels_{dom}")
        sigma = ph.params[f"sigma_{dom}"]
        # sigma is relative to the mean clean foreground signal of this domain
        assert sigma == pytest.approx(level * clean[labels > 0].mean(), rel=1e-4)
        # background (clean exactly 0): Rayleigh magnitude, E[m^2] = 2 sigma^2, mean = sigma sqrt(pi / 2)
        bg = noisy[clean == 0]
        assert bg.size > 10_000
        assert np.sqrt(np.mean(bg.astype(np.float64) ** 2) / 2) == pytest.approx(sigma, rel=0.03)
        assert bg.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.03)
        # bright regions (SNR > 10): Rician ~ Gaussian around the clean value with std sigma
        bright = clean > 10 * sigma
        diff = (noisy - clean)[bright].astype(np.float64)
        assert diff.std() == pytest.approx(sigma, rel=0.05)
        assert abs(diff.mean()) < 0.1 * sigma
    # independent per domain
    both = (ph.clean_a > 10 * ph.params["sigma_a"]) & (ph.clean_b > 10 * ph.params["sigma_b"])
    corr = np.corrcoef((ph.a - ph.clean_a)[both], (ph.b - ph.clean_b)[both])[0, 1]
    assert abs(corr) < 0.05


def test_zero_noise_gives_the_clean_images() -> None:
    ph = generate_pairs(2, 16, noise=(0.0, 0.0))
    np.testing.assert_array_equal(ph.a, ph.clean_a)
    np.testing.assert_array_equal(ph.b, ph.clean_b)


def test_noise_knob_leaves_the_anatomy_alone() -> None:
    low, high = generate_pairs(3, 32, noise=(0.01, 0.01)), generate_pairs(3, 32, noise=(0.2, 0.2))
    np.testing.assert_array_equal(low.clean_a, high.clean_a)
    assert (high.a - high.clean_a).std() > 5 * (low.a - low.clean_a).std()


def _bone_centroid(ph: PhantomPairs, labels: np.ndarray) -> np.ndarray:
    """Centroid (row, col) of bone (cortex + marrow) per pair, (N, 2)."""
    bone = (labels == _IDX["marrow"]) | (labels == _IDX["cortical_bone"])
    rows, cols = np.indices(labels.shape[1:])
    area = bone.sum(axis=(1, 2))
    return np.stack([(bone * rows).sum(axis=(1, 2)) / area, (bone * cols).sum(axis=(1, 2)) / area], axis=1)


def test_misregistration_zero_is_aligned_and_one_moves_b_a_few_pixels() -> None:
    aligned = generate_pairs(16, 64, misregistration=0.0, seed=9)
    np.testing.assert_array_equal(aligned.labels_a, aligned.labels_b)
    moved = generate_pairs(16, 64, misregistration=1.0, seed=9)
    np.testing.assert_array_equal(moved.labels_a, aligned.labels_a)  # a is untouched
    shift = np.linalg.norm(
        _bone_centroid(moved, moved.labels_a) - _bone_centroid(moved, moved.labels_b), axis=1
    )
    assert shift.max() > 0.8 and shift.mean() > 0.5
    assert shift.max() < 3 * np.sqrt(2) + 1.5  # at most ~3 px per axis (+ the small rotation)
    # a rigid motion: each tissue keeps its area
    for t in (_IDX["marrow"], _IDX["muscle"]):
        area_a = (moved.labels_a == t).sum(axis=(1, 2))
        area_b = (moved.labels_b == t).sum(axis=(1, 2))
        np.testing.assert_allclose(area_b, area_a, rtol=0.06)
    assert moved.params["misregistration_max_px"] == 3.0


def test_misregistration_grows_with_the_knob() -> None:
    frac = [
        (g.labels_a != g.labels_b).mean()
        for g in (generate_pairs(16, 64, misregistration=m, seed=1) for m in (0.0, 0.3, 1.0))
    ]
    assert frac[0] == 0 < frac[1] < frac[2]


def test_params_record_every_knob() -> None:
    ph = generate_pairs(
        2, 16, noise=(0.1, 0.2), structural_difference=0.25, misregistration=0.5, fat_suppression=0.9,
        fat_suppression_variation=0.3, seed=11,
    )  # fmt: skip
    p = ph.params
    assert (p["n"], p["size"], p["noise_a"], p["noise_b"], p["seed"]) == (2, 16, 0.1, 0.2, 11)
    assert (p["structural_difference"], p["misregistration"]) == (0.25, 0.5)
    assert (p["fat_suppression"], p["fat_suppression_variation"]) == (0.9, 0.3)
    assert p["tr_ms"] > 1500 and 15 < p["te_ms"] < 45  # PD-weighted spin echo
    assert p["sigma_a"] > 0 and p["sigma_b"] > 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 0},
        {"size": 4},
        {"noise": (-0.1, 0.1)},
        {"structural_difference": 1.5},
        {"misregistration": -0.1},
        {"fat_suppression": 1.2},
        {"fat_suppression_variation": 2.0},
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict) -> None:
    args = {"n": 2, "size": 16, **kwargs}
    with pytest.raises(ValueError):
        generate_pairs(args.pop("n"), args.pop("size"), **args)


def test_fast_enough_for_the_start_of_every_run() -> None:
    generate_pairs(4, 64)
    start = time.perf_counter()
    generate_pairs(512, 64, structural_difference=0.5, misregistration=0.5)
    elapsed = time.perf_counter() - start
    assert elapsed < 4.0, f"512 pairs of 64x64 took {elapsed:.2f}s (target: well under 2 s)"
