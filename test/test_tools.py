"""ssvif-fuse: files and folders, with a checkpoint or a classic baseline (the demo: test_live_tools.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ssvif_ros.checkpoint import save_checkpoint
from ssvif_ros.fusion.baselines import fuse_baseline
from ssvif_ros.fusion.engine import FusionEngine
from ssvif_ros.models import create_model
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


def test_fuse_rejects_bad_arguments(tmp_path, pair_files):
    vis_path, ir_path, _, _ = pair_files
    with pytest.raises(SystemExit):
        fuse_images.main([str(vis_path), "-o", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit, match="unknown baseline"):
        fuse_images.main([str(vis_path), str(ir_path), "-o", str(tmp_path / "x.png"), "--baseline", "nope"])
