"""Fusion metrics: defining properties, agreement with independent implementations, IoU and folders."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_msssim import ms_ssim as torch_ms_ssim
from scipy import ndimage
from scipy.signal import convolve2d, correlate2d
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import structural_similarity

from ssvif_ros.eval import metrics

# ---------------------------------------------------------------------------------------------------
# Test images
# ---------------------------------------------------------------------------------------------------


def textured(rng: np.random.Generator, shape: tuple[int, ...], blur: float = 2.0) -> np.ndarray:
    """Smooth random texture plus a few hard-edged rectangles, uint8; shape (H, W) or (H, W, 3)."""
    noise = rng.normal(size=shape)
    sigma = (blur, blur, 0) if len(shape) == 3 else blur
    img = ndimage.gaussian_filter(noise, sigma)
    img = 128 + 60 * img / img.std()
    h, w = shape[:2]
    for _ in range(3):
        y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
        img[y : y + h // 3, x : x + w // 3] = rng.uniform(0, 255)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def triple(seed: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vis RGB, ir gray, fused RGB = average of the two) of size h×w."""
    rng = np.random.default_rng(seed)
    vis = textured(rng, (h, w, 3))
    ir = textured(rng, (h, w), blur=3.0)
    fused = ((vis.astype(np.uint16) + ir[..., None]) // 2).astype(np.uint8)
    return vis, ir, fused


def gray(img: np.ndarray) -> np.ndarray:
    return metrics.to_gray(img).astype(np.float64)


# ---------------------------------------------------------------------------------------------------
# Gray conversion and input checks
# ---------------------------------------------------------------------------------------------------


def test_to_gray_rounds_bt601_half_up():
    pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 250]]], dtype=np.uint8)
    # 76.245, 149.685, 29.07, 255, 28.5 (an exact tie, rounded up)
    assert metrics.to_gray(pixels).tolist() == [[76, 150, 29, 255, 29]]
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert metrics.to_gray(g) is g
    assert np.array_equal(metrics.to_gray(np.repeat(g[..., None], 3, axis=2)), g)


def test_inputs_are_validated_with_the_input_named():
    vis, ir, fused = triple(0, 48, 48)
    with pytest.raises(TypeError, match=r"ir.*uint8"):
        metrics.evaluate_fusion(vis, ir.astype(np.float32), fused)
    with pytest.raises(ValueError, match="fused: size 48×40"):
        metrics.evaluate_fusion(vis, ir, fused[:, :40])
    with pytest.raises(ValueError, match="vis: expected shape"):
        metrics.ssim(vis[..., :2], ir, fused)
    with pytest.raises(TypeError, match=r"fused.*numpy"):
        metrics.entropy(fused.tolist())


# ---------------------------------------------------------------------------------------------------
# EN and MI
# ---------------------------------------------------------------------------------------------------


def test_entropy_of_constant_is_0_and_of_uniform_levels_is_8():
    assert metrics.entropy(np.full((20, 30), 77, dtype=np.uint8)) == 0.0
    uniform = np.tile(np.arange(256, dtype=np.uint8), (4, 2))  # each level 8 times
    assert metrics.entropy(uniform) == pytest.approx(8.0, abs=1e-12)
    two_levels = np.zeros((10, 10), dtype=np.uint8)
    two_levels[:5] = 200
    assert metrics.entropy(two_levels) == pytest.approx(1.0, abs=1e-12)


def slow_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """Textbook MI in nats by counting value pairs in a Python loop."""
    pairs = Counter(zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))
    ca, cb, n = Counter(a.ravel().tolist()), Counter(b.ravel().tolist()), a.size
    return sum(c / n * math.log((c / n) / ((ca[x] / n) * (cb[y] / n))) for (x, y), c in pairs.items())


def test_mutual_information_matches_a_direct_loop_and_is_symmetric():
    rng = np.random.default_rng(3)
    vis = rng.integers(0, 6, (7, 9)).astype(np.uint8) * 40
    ir = rng.integers(0, 4, (7, 9)).astype(np.uint8) * 60
    fused = ((vis.astype(int) + ir) // 2).astype(np.uint8)
    expected = slow_mutual_information(fused, vis) + slow_mutual_information(fused, ir)
    assert metrics.mutual_information(vis, ir, fused) == pytest.approx(expected, rel=1e-12)
    assert metrics.mutual_information(ir, vis, fused) == pytest.approx(expected, rel=1e-12)
    # MI(X, X) = H(X) (in nats): a fused copy of both sources gives twice its entropy.
    h_nats = metrics.entropy(vis) * math.log(2)
    assert metrics.mutual_information(vis, vis, vis) == pytest.approx(2 * h_nats, rel=1e-12)


# ---------------------------------------------------------------------------------------------------
# VIF
# ---------------------------------------------------------------------------------------------------


def reference_vifp(ref: np.ndarray, dist: np.ndarray) -> float:
    """Line-by-line float64 translation of Sheikh & Bovik's vifp_mscale.m (2-D windows, correlate2d)."""
    ref, dist = ref.astype(np.float64), dist.astype(np.float64)
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        x = np.arange(n) - (n - 1) / 2
        win = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * (n / 5) ** 2))
        win /= win.sum()
        if scale > 1:
            ref = correlate2d(ref, win, "valid")[::2, ::2]
            dist = correlate2d(dist, win, "valid")[::2, ::2]
        mu1, mu2 = correlate2d(ref, win, "valid"), correlate2d(dist, win, "valid")
        s1 = np.maximum(correlate2d(ref * ref, win, "valid") - mu1 * mu1, 0)
        s2 = np.maximum(correlate2d(dist * dist, win, "valid") - mu2 * mu2, 0)
        s12 = correlate2d(ref * dist, win, "valid") - mu1 * mu2
        g = s12 / (s1 + 1e-10)
        sv = s2 - g * s12
        m = s1 < 1e-10
        g[m], sv[m], s1[m] = 0, s2[m], 0
        m = s2 < 1e-10
        g[m], sv[m] = 0, 0
        m = g < 0
        sv[m], g[m] = s2[m], 0
        sv[sv <= 1e-10] = 1e-10
        num += np.log10(1 + g**2 * s1 / (sv + 2)).sum()
        den += np.log10(1 + s1 / 2).sum()
    return num / den


def test_vif_of_perfect_copy_is_2():
    vis, _, _ = triple(1, 64, 80)
    assert metrics.vif(vis, vis, vis) == pytest.approx(2.0, abs=1e-6)


def test_vif_matches_float64_reference_translation():
    vis, ir, fused = triple(2, 72, 90)
    rng = np.random.default_rng(5)
    noisy = np.clip(fused + rng.normal(0, 8, fused.shape), 0, 255).astype(np.uint8)
    for f in (fused, noisy):
        expected = reference_vifp(gray(vis), gray(f)) + reference_vifp(gray(ir), gray(f))
        assert metrics.vif(vis, ir, f) == pytest.approx(expected, rel=2e-4)
    assert metrics.vif(vis, ir, noisy) < metrics.vif(vis, ir, fused)


def test_vif_rejects_too_small_images():
    img = np.zeros((40, 60), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"at least 41 px.*40×60"):
        metrics.vif(img, img, img)


# ---------------------------------------------------------------------------------------------------
# Qabf
# ---------------------------------------------------------------------------------------------------


def reference_qabf(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Per-pixel loop translation of the common Qabf.m (conv2 'same', zero padding)."""
    h1 = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)
    h3 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)

    def strength_angle(img):
        sx = convolve2d(img, h3, mode="same")
        sy = convolve2d(img, h1, mode="same")
        angle = np.empty_like(sx)
        for i in range(sx.shape[0]):
            for j in range(sx.shape[1]):
                angle[i, j] = math.pi / 2 if sx[i, j] == 0 else math.atan(sy[i, j] / sx[i, j])
        return np.sqrt(sx**2 + sy**2), angle

    def preservation(gs, as_, gf, af):
        q = np.empty_like(gs)
        for i in range(gs.shape[0]):
            for j in range(gs.shape[1]):
                if gs[i, j] == 0 or gf[i, j] == 0:
                    rel_g = 0.0
                elif gs[i, j] > gf[i, j]:
                    rel_g = gf[i, j] / gs[i, j]
                else:
                    rel_g = gs[i, j] / gf[i, j]
                rel_a = 1 - abs(as_[i, j] - af[i, j]) / (math.pi / 2)
                q[i, j] = (0.9994 / (1 + math.exp(-15 * (rel_g - 0.5)))) * (
                    0.9879 / (1 + math.exp(-22 * (rel_a - 0.8)))
                )
        return q

    (ga, aa), (gb, ab), (gf, af) = (strength_angle(x.astype(np.float64)) for x in (a, b, f))
    num = (preservation(ga, aa, gf, af) * ga + preservation(gb, ab, gf, af) * gb).sum()
    return num / (ga + gb).sum()


def test_qabf_matches_loop_reference_including_vertical_gradients():
    vis, ir, fused = triple(4, 18, 22)
    vis[:, 5:9] = (np.arange(18, dtype=np.uint8) * 12)[:, None, None]  # vertical ramp: gx = 0, gy ≠ 0
    vis[:6, 12:20] = 30  # flat patch: gx = gy = 0
    expected = reference_qabf(metrics.to_gray(vis), ir, metrics.to_gray(fused))
    assert metrics.qabf(vis, ir, fused) == pytest.approx(expected, rel=1e-5)


def edge_image(h: int = 48, w: int = 64) -> np.ndarray:
    img = np.zeros((h, w), dtype=np.uint8)
    img[10:40, 15:50] = 200
    img[20:30, 25:35] = 90
    return img


def test_qabf_is_high_for_a_copy_and_near_0_for_a_constant_zero_fused():
    edges = edge_image()
    flat_ir = np.zeros_like(edges)  # no gradients: only the visible edges count
    perfect = (0.9994 / (1 + math.exp(-15 * 0.5))) * (0.9879 / (1 + math.exp(-22 * 0.2)))
    assert metrics.qabf(edges, flat_ir, edges) == pytest.approx(perfect, rel=1e-6)
    blurred = ndimage.gaussian_filter(edges.astype(float), 2).round().astype(np.uint8)
    assert metrics.qabf(edges, flat_ir, blurred) < 0.7 * perfect
    # Both sources with edges, F a copy of one: still clearly higher than F blurred.
    other = textured(np.random.default_rng(6), edges.shape)
    assert metrics.qabf(edges, other, edges) > metrics.qabf(edges, other, blurred)
    # The sigmoid of G = 0 is Γg/(1+e^{7.5}) ≈ 5.5e-4, so an all-zero F is near 0, not exactly 0.
    assert 0 <= metrics.qabf(edges, other, np.zeros_like(edges)) < 1e-3


# ---------------------------------------------------------------------------------------------------
# SSIM and MS-SSIM
# ---------------------------------------------------------------------------------------------------


def skimage_ssim(x: np.ndarray, y: np.ndarray) -> float:
    return structural_similarity(
        x,
        y,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        K1=0.01,
        K2=0.03,
    )


def test_ssim_is_2_for_identical_images_and_matches_skimage():
    vis, ir, fused = triple(7, 60, 75)
    assert metrics.ssim(vis, vis, vis) == pytest.approx(2.0, abs=1e-6)
    f = gray(fused)
    expected = skimage_ssim(f, gray(vis)) + skimage_ssim(f, gray(ir))
    assert metrics.ssim(vis, ir, fused) == pytest.approx(expected, abs=1e-5)


def test_ms_ssim_matches_pytorch_msssim_and_is_2_for_identical_images():
    vis, ir, fused = triple(8, 176, 192)  # multiples of 16: both downsampling conventions agree

    def torch_gray(img):
        return torch.from_numpy(gray(img))[None, None]

    expected = sum(
        float(torch_ms_ssim(torch_gray(fused), torch_gray(src), data_range=255, win_size=11, win_sigma=1.5))
        for src in (vis, ir)
    )
    assert metrics.ms_ssim(vis, ir, fused) == pytest.approx(expected, abs=1e-5)
    assert metrics.ms_ssim(vis, vis, vis) == pytest.approx(2.0, abs=1e-6)


def test_ms_ssim_needs_161_px_and_evaluate_fusion_returns_nan_below():
    vis, ir, fused = triple(9, 160, 200)
    with pytest.raises(ValueError, match=r"at least 161 px.*160×200"):
        metrics.ms_ssim(vis, ir, fused)
    scores = metrics.evaluate_fusion(vis, ir, fused)
    assert math.isnan(scores["MS_SSIM"])
    assert all(math.isfinite(v) for k, v in scores.items() if k != "MS_SSIM")
    # 161 works (odd sizes are downsampled by repeating the last row/column).
    vis, ir, fused = triple(9, 161, 170)
    assert 0 < metrics.ms_ssim(vis, ir, fused) <= 2


# ---------------------------------------------------------------------------------------------------
# ΔE
# ---------------------------------------------------------------------------------------------------


def test_delta_e_matches_skimage_ciede2000():
    rng = np.random.default_rng(10)
    vis = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    fused = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    fused[:15] = np.clip(vis[:15].astype(int) + rng.integers(-4, 5, vis[:15].shape), 0, 255)  # near colours
    fused[15:20] = fused[15:20, :, :1]  # achromatic pixels (chroma 0 branch)
    per_pixel = deltaE_ciede2000(rgb2lab(fused), rgb2lab(vis))
    assert metrics.delta_e(vis, fused) == pytest.approx(per_pixel.mean(), abs=1e-4)
    ours = metrics.ciede2000(metrics.rgb_to_lab(fused), metrics.rgb_to_lab(vis))
    np.testing.assert_allclose(ours, per_pixel, atol=1e-2)


def test_delta_e_is_0_for_a_copy_and_replicates_gray():
    vis, ir, _ = triple(11, 30, 40)
    assert metrics.delta_e(vis, vis) == 0.0
    gray_fused = metrics.to_gray(vis)
    expected = deltaE_ciede2000(rgb2lab(np.repeat(gray_fused[..., None], 3, axis=2)), rgb2lab(vis)).mean()
    assert metrics.delta_e(vis, gray_fused) == pytest.approx(expected, abs=1e-4)
    assert metrics.delta_e(ir, ir) == 0.0


# ---------------------------------------------------------------------------------------------------
# evaluate_fusion on a full-size frame
# ---------------------------------------------------------------------------------------------------


def test_evaluate_fusion_full_size_equals_individual_metrics():
    vis, ir, fused = triple(12, 480, 640)
    scores = metrics.evaluate_fusion(vis, ir, fused)
    assert tuple(scores) == metrics.METRIC_NAMES
    assert set(metrics.METRIC_CONVENTIONS) == set(metrics.METRIC_NAMES)
    individual = {
        "EN": metrics.entropy(fused),
        "MI": metrics.mutual_information(vis, ir, fused),
        "VIF": metrics.vif(vis, ir, fused),
        "Qabf": metrics.qabf(vis, ir, fused),
        "SSIM": metrics.ssim(vis, ir, fused),
        "MS_SSIM": metrics.ms_ssim(vis, ir, fused),
        "DeltaE": metrics.delta_e(vis, fused),
    }
    for key, value in individual.items():
        assert scores[key] == pytest.approx(value, rel=1e-9), key
    assert 0 < scores["Qabf"] < 1 and 0 < scores["SSIM"] < 2 and 0 < scores["MS_SSIM"] < 2
    assert 0 < scores["EN"] <= 8 and scores["MI"] > 0 and scores["VIF"] > 0 and scores["DeltaE"] > 0


# ---------------------------------------------------------------------------------------------------
# Folders
# ---------------------------------------------------------------------------------------------------


def write_triples(root, names, size=(64, 72)):
    dirs = {role: root / role for role in ("vi", "ir", "fused")}
    for d in dirs.values():
        d.mkdir()
    for seed, name in enumerate(names):
        vis, ir, fused = triple(20 + seed, *size)
        Image.fromarray(vis).save(dirs["vi"] / f"{name}.png")
        Image.fromarray(ir).save(dirs["ir"] / f"{name}.bmp")
        Image.fromarray(fused).save(dirs["fused"] / f"{name}.png")
    return dirs


def test_evaluate_fusion_folders_writes_csv_and_json(tmp_path):
    dirs = write_triples(tmp_path, ["a", "b"])
    out_csv, out_json = tmp_path / "out" / "m.csv", tmp_path / "out" / "m.json"
    with pytest.warns(UserWarning, match="MS_SSIM: 2 of 2 images"):
        per_image, mean = metrics.evaluate_fusion_folders(
            dirs["vi"], dirs["ir"], dirs["fused"], out_csv=out_csv, out_json=out_json
        )
    assert [row["name"] for row in per_image] == ["a", "b"]
    vis, ir, fused = triple(20, 64, 72)
    assert per_image[0]["SSIM"] == pytest.approx(metrics.ssim(vis, ir, fused))
    assert mean["VIF"] == pytest.approx((per_image[0]["VIF"] + per_image[1]["VIF"]) / 2)
    assert math.isnan(mean["MS_SSIM"])

    rows = list(csv.DictReader(out_csv.open()))
    assert [r["name"] for r in rows] == ["a", "b", "mean"]
    assert float(rows[2]["EN"]) == pytest.approx(mean["EN"])
    payload = json.loads(out_json.read_text())
    assert payload["count"] == 2 and payload["mean"]["MS_SSIM"] is None
    assert payload["per_image"][1]["Qabf"] == pytest.approx(per_image[1]["Qabf"])


def test_evaluate_fusion_folders_names_the_missing_fused_file(tmp_path):
    dirs = write_triples(tmp_path, ["a", "b"], size=(48, 48))
    (dirs["fused"] / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"fused image missing: .*fused/b\.\(png"):
        metrics.evaluate_fusion_folders(dirs["vi"], dirs["ir"], dirs["fused"])


# ---------------------------------------------------------------------------------------------------
# Segmentation
# ---------------------------------------------------------------------------------------------------


def test_confusion_matrix_and_iou_by_hand():
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 3, 0]])
    cm = metrics.confusion_matrix(pred, target, num_classes=5)
    expected = np.zeros((5, 5), dtype=np.int64)
    expected[0, 0] = 1
    expected[0, 1] = 1
    expected[1, 1] = 2
    expected[2, 2] = 1
    expected[2, 0] = 1
    assert np.array_equal(cm, expected)  # the two ignored pixels (pred 3, 0) are not counted
    iou = metrics.iou_per_class(cm)
    # class 0: TP 1, FP 1 (2→0), FN 1 (0→1) -> 1/3; class 1: 2/3; class 2: 1/2; 3 and 4 absent -> NaN
    np.testing.assert_allclose(iou[:3], [1 / 3, 2 / 3, 1 / 2])
    assert np.isnan(iou[3]) and np.isnan(iou[4])
    assert metrics.mean_iou(cm) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_confusion_matrix_rejects_bad_labels_and_counts_false_positives_as_present():
    with pytest.raises(ValueError, match="pred: label 7 outside"):
        metrics.confusion_matrix(np.array([0, 7]), np.array([0, 1]), num_classes=3)
    with pytest.raises(ValueError, match="shape"):
        metrics.confusion_matrix(np.zeros(3, int), np.zeros(4, int), num_classes=3)
    cm = metrics.confusion_matrix(np.array([2, 2]), np.array([0, 0]), num_classes=3)
    iou = metrics.iou_per_class(cm)
    assert iou[0] == 0 and iou[2] == 0 and np.isnan(iou[1])  # predicted-only class 2 counts, IoU 0
    assert math.isnan(metrics.mean_iou(np.zeros((3, 3))))
