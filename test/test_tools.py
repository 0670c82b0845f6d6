"""ssvif-fuse: files and folders, with a checkpoint or a classic baseline (the demo: test_live_tools.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ssvif_ros.checkpoint import save_checkpoint
from ssvif_ros.fusion.baselines import fuse_baseline
from ssvif_ros.fusion.engine import FusionEngine
from ssvif_ros.models import SegHead, create_model
from ssvif_ros.tools import fuse_images


@pytest.fixture
def pair_files(tmp_path):
    rng = np.random.default_rng(3)
    vis = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    ir = rng.integers(0, 256, (40, 52), dtype=np.uint8)
    for sub, name, arr in (("vi", "a.png", vis), ("ir", "a.png", ir)):
        (tmp_path / "set" / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(tmp_path / "set" / sub / name)
    return tmp_path / "set" / "vi" / "a.png", tmp_path / "set" / "ir" / "a.png", vis, ir


def test_fuse_files_with_baseline_and_model(tmp_path, pair_files):
    vis_path, ir_path, vis, ir = pair_files
    out = tmp_path / "out" / "f.png"
    assert fuse_images.main([str(vis_path), str(ir_path), "-o", str(out), "--baseline", "laplacian"]) == 0
    assert np.array_equal(np.asarray(Image.open(out)), fuse_baseline("laplacian", vis, ir))

    weights = save_checkpoint(tmp_path / "m.safetensors", create_model("lightunet"))
    out_dir = tmp_path / "folder_out"
    folder = vis_path.parent.parent
    assert fuse_images.main(["--folder", str(folder), "-o", str(out_dir), "--weights", str(weights)]) == 0
    expected = FusionEngine(weights=weights).fuse(vis, ir).image
    assert np.array_equal(np.asarray(Image.open(out_dir / "a.png")), expected)


def test_fuse_rejects_bad_arguments(tmp_path, pair_files, capsys):
    vis_path, ir_path, _, _ = pair_files
    with pytest.raises(SystemExit):
        fuse_images.main([str(vis_path), "-o", str(tmp_path / "x.png")])
    assert (
        fuse_images.main([str(vis_path), str(ir_path), "-o", str(tmp_path / "x.png"), "--baseline", "nope"])
        == 2
    )
    assert "unknown baseline 'nope'" in capsys.readouterr().err


def test_labels_and_overlay_out_need_a_head_and_match_the_engine(tmp_path, pair_files, capsys):
    vis_path, _, vis, ir = pair_files
    folder = vis_path.parent.parent
    torch.manual_seed(0)
    model = create_model("lightunet")
    with_head = save_checkpoint(tmp_path / "h.safetensors", model, SegHead(model.feature_channels, 5, 8))
    labels, overlays = tmp_path / "labels", tmp_path / "overlays"
    args = ["--folder", str(folder), "-o", str(tmp_path / "f"), "--labels-out", str(labels)]
    assert fuse_images.main([*args, "--overlay-out", str(overlays), "--weights", str(with_head)]) == 0
    expected = FusionEngine(weights=with_head).fuse(vis, ir, want_labels=True)
    assert np.array_equal(np.asarray(Image.open(labels / "a.png")), expected.labels)
    overlay = np.asarray(Image.open(overlays / "a.png"))
    assert overlay.shape == vis.shape and not np.array_equal(overlay, expected.image)
    no_head = save_checkpoint(tmp_path / "n.safetensors", model)
    assert fuse_images.main([*args, "--weights", str(no_head)]) == 2
    assert "need a checkpoint with a segmentation head" in capsys.readouterr().err
    assert fuse_images.main([*args, "--baseline", "max"]) == 2


def test_a_bad_pair_in_a_folder_is_skipped_and_reported(tmp_path, pair_files, capsys):
    vis_path, _, _, _ = pair_files
    folder = vis_path.parent.parent
    (folder / "vi" / "b.png").write_bytes(b"not a png")
    (folder / "ir" / "b.png").write_bytes(b"not a png")
    code = fuse_images.main(["--folder", str(folder), "-o", str(tmp_path / "o"), "--baseline", "average"])
    assert code == 1
    assert (tmp_path / "o" / "a.png").is_file() and not (tmp_path / "o" / "b.png").exists()
    captured = capsys.readouterr()
    assert "skipped b" in captured.err and "fused 1 of 2 pairs" in captured.out


def test_fuse_folder_user_errors_are_one_line_with_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bare" / "vi").mkdir(parents=True)
    (tmp_path / "bare" / "ir").mkdir(parents=True)
    for folder, says in (
        ("empty", "no visible/infrared folder pair found"),
        ("missing", "does not exist"),
        ("bare", "empty folder: no image files"),
    ):
        code = fuse_images.main(
            ["--folder", str(tmp_path / folder), "-o", str(tmp_path / "o"), "--baseline", "max"]
        )
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and says in err and "Traceback" not in err
