"""ssvif-calibrate (issue 17): a known homography is recovered from pairs it was applied to; a recording
without shared structure is refused; the command writes the config line, the report and the pictures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

cv2 = pytest.importorskip("cv2")

from ssvif_ros.data.image_files import read_infrared, read_visible  # noqa: E402
from ssvif_ros.fusion.calibration import CalibrationError, estimate_homography  # noqa: E402
from ssvif_ros.tools import calibrate  # noqa: E402

H_TRUE = np.array([[1.02, 0.01, -7.0], [-0.008, 0.99, 4.0], [1e-5, 2e-5, 1.0]])


def interior_error(found: np.ndarray, true: np.ndarray, size: tuple[int, int]) -> float:
    """Mean distance (px) between where the two homographies send a grid over the image interior."""
    h, w = size
    xs, ys = np.meshgrid(np.linspace(0.08 * w, 0.92 * w, 9), np.linspace(0.08 * h, 0.92 * h, 9))
    pts = np.stack([xs.ravel(), ys.ravel(), np.ones(81)])
    a, b = found @ pts, true @ pts
    return float(np.hypot(*(a[:2] / a[2] - b[:2] / b[2])).mean())


def misaligned(vis: np.ndarray, ir: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The thermal image as a camera needing H_TRUE would give it (H_TRUE maps it back onto the visible)."""
    return vis, cv2.warpPerspective(ir, np.linalg.inv(H_TRUE), (ir.shape[1], ir.shape[0]))


def folder_pairs(root: Path, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    files = sorted((root / "vi").glob("*.png"))[:count]
    return [misaligned(read_visible(v), read_infrared(root / "ir" / v.name)) for v in files]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    from ssvif_ros.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("cal") / "scenes"
    write_dataset(root, 4, seed=5, width=320, height=240, progress=False)
    return root


def test_a_known_homography_is_recovered_from_synthetic_pairs(scenes: Path) -> None:
    result = estimate_homography(folder_pairs(scenes, 4))
    assert interior_error(result.homography, H_TRUE, (240, 320)) < 1.5
    assert result.nmi > result.nmi_identity and result.shift_px > 2  # it did correct something


@pytest.mark.slow
def test_a_known_homography_is_recovered_from_real_msrs_pairs(shared_data: Path) -> None:
    pairs = folder_pairs(shared_data / "msrs_subset", 6)
    result = estimate_homography(pairs)
    # MSRS's own registration is approximate: 2-3 px measured with the identity as the truth
    assert interior_error(result.homography, H_TRUE, pairs[0][0].shape[:2]) < 4.0


def test_flat_or_unrelated_recordings_are_refused() -> None:
    flat = [(np.full((120, 160, 3), 90, np.uint8), np.full((120, 160), 40, np.uint8))] * 2
    with pytest.raises(CalibrationError, match="nearly flat"):
        estimate_homography(flat)
    rng = np.random.default_rng(0)
    vis = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    with pytest.raises(CalibrationError, match="share almost no structure"):
        estimate_homography([(vis, rng.integers(0, 256, (120, 160), dtype=np.uint8))])


def test_the_command_writes_the_config_line_report_and_pictures(scenes: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "rec"
    (folder / "vi").mkdir(parents=True)
    (folder / "ir").mkdir()
    for (vis, th), v in zip(folder_pairs(scenes, 4), sorted((scenes / "vi").glob("*.png")), strict=True):
        Image.fromarray(vis).save(folder / "vi" / v.name)
        Image.fromarray(th).save(folder / "ir" / v.name)
    assert calibrate.main([str(folder), "--out", str(tmp_path / "out")]) == 0
    line = (tmp_path / "out" / "homography.yaml").read_text().strip()
    assert line.startswith("registration.homography: [") and line in capsys.readouterr().out
    values = np.array([float(x) for x in line.split("[")[1].rstrip("]").split(",")]).reshape(3, 3)
    assert interior_error(values, H_TRUE, (240, 320)) < 1.5
    report = json.loads((tmp_path / "out" / "calibration.json").read_text())
    assert report["pairs"] == 4 and report["nmi"] > report["nmi_identity"]
    assert (tmp_path / "out" / "checkerboard_after.png").is_file()
    (tmp_path / "empty").mkdir()
    assert calibrate.main([str(tmp_path / "empty"), "--out", str(tmp_path / "o2")]) == 2
    assert capsys.readouterr().err.startswith("ssvif-calibrate: error: ")
