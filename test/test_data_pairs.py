"""Paired visible/infrared folders: real data (when present), generated folders, transforms, split, check."""

from __future__ import annotations

import pickle
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssvif_ros.data import (
    DataFileError,
    FolderLayout,
    LayoutError,
    PairedFolderDataset,
    PairingError,
    RandomPairCrop,
    RandomPairFlip,
    split_train_val,
    thermal16_to_uint8,
    train_transform,
)
from ssvif_ros.data.check import main as check_main
from ssvif_ros.data.check import scan_folder

REPO_ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    image.save(path)
    return path


def _rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _gray(height: int, width: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)


def _make_pairs(root: Path, names: list[str], height: int = 6, width: int = 8) -> Path:
    for index, name in enumerate(names):
        _write(root / "vi" / f"{name}.png", _rgb(height, width, index))
        _write(root / "ir" / f"{name}.png", _gray(height, width, index + 100))
    return root


# --------------------------------------------------------------------------- real data (skips when absent)


def _check_item(item: dict, height: int | None = None, width: int | None = None) -> None:
    vis, ir = item["vis"], item["ir"]
    assert vis.dtype == torch.float32 and ir.dtype == torch.float32
    assert vis.ndim == 3 and vis.shape[0] == 3 and ir.ndim == 3 and ir.shape[0] == 1
    assert vis.shape[1:] == ir.shape[1:]
    if height is not None:
        assert tuple(vis.shape[1:]) == (height, width)
    for tensor in (vis, ir):
        assert 0.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0
        assert float(tensor.std()) > 0.01  # real content, not a blank frame
    assert "label" not in item


def test_msrs_subset_loads(shared_data: Path) -> None:
    dataset = PairedFolderDataset(shared_data / "msrs_subset")
    assert len(dataset) == 35
    assert dataset.folders[0].label_dir is None  # mask_binary/ is not a class-id label folder
    for index in (0, 17, 34):
        item = dataset[index]
        _check_item(item, 480, 640)
        assert item["name"] == dataset.names[index] and item["name"][-1] in "DN"


def test_roadscene_has_different_sizes(shared_data: Path) -> None:
    dataset = PairedFolderDataset(shared_data / "roadscene")
    assert len(dataset) == 221
    manifest = {
        line.split(",")[0].rsplit(".", 1)[0]: (int(line.split(",")[6]), int(line.split(",")[5]))
        for line in (shared_data / "roadscene" / "manifest.csv").read_text().splitlines()[1:]
    }
    sizes = set()
    for index in range(0, 221, 40):
        item = dataset[index]
        _check_item(item, *manifest[item["name"]])
        sizes.add(tuple(item["vis"].shape))
    assert len(sizes) > 1


def test_tno_gray_visible_replicated(shared_data: Path) -> None:
    dataset = PairedFolderDataset(shared_data / "tno")
    assert len(dataset) == 42
    item = dataset[0]
    _check_item(item)
    vis = item["vis"]
    assert torch.equal(vis[0], vis[1]) and torch.equal(vis[1], vis[2])


def test_scanner_finds_no_problem_in_msrs_subset(shared_data: Path) -> None:
    assert scan_folder(shared_data / "msrs_subset") == []


def test_shared_root_itself_is_not_a_layout_and_error_points_to_subfolders(shared_data: Path) -> None:
    with pytest.raises(LayoutError, match="msrs_subset"):
        PairedFolderDataset(shared_data)


# --------------------------------------------------------------------------- generated folders: formats


def test_sixteen_bit_infrared_percentile_window(tmp_path: Path) -> None:
    raw = np.linspace(1000, 3000, 40 * 50).reshape(40, 50).astype(np.uint16)
    raw[0, :3] = 65535  # a few hot pixels must not squash the scene's contrast
    _write(tmp_path / "vi" / "a.png", _rgb(40, 50))
    _write(tmp_path / "ir" / "a.png", raw)
    assert Image.open(tmp_path / "ir" / "a.png").mode.startswith("I")
    ir = PairedFolderDataset(tmp_path).read_arrays(0)["ir"]
    assert ir.dtype == np.uint8 and ir.shape == (40, 50)
    assert ir.min() == 0 and ir.max() == 255
    order = np.argsort(raw, axis=None, kind="stable")
    assert np.all(np.diff(ir.reshape(-1)[order].astype(int)) >= 0)  # monotonic in the raw counts
    middle = ir.reshape(-1)[order[order.size // 2]]
    assert 110 <= middle <= 145  # the median scene value lands mid-range (min-max would put it near 8)
    assert PairedFolderDataset(tmp_path, ir16="minmax").read_arrays(0)["ir"].reshape(-1)[order[1000]] < 30
    linear = PairedFolderDataset(tmp_path, ir16="linear").read_arrays(0)["ir"]
    np.testing.assert_array_equal(linear, np.round(raw / 257.0).astype(np.uint8))


def test_thermal16_flat_frame_and_bad_arguments() -> None:
    assert np.all(thermal16_to_uint8(np.full((4, 4), 777, np.uint16)) == 0)
    with pytest.raises(ValueError, match="method"):
        thermal16_to_uint8(np.zeros((2, 2), np.uint16), method="gamma")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="window"):
        thermal16_to_uint8(np.zeros((2, 2), np.uint16), window=(99, 1))


def test_gray_visible_and_rgb_infrared(tmp_path: Path) -> None:
    gray_vis = _gray(6, 8, 3)
    rgb_ir = _rgb(6, 8, 4)
    _write(tmp_path / "vi" / "a.png", gray_vis)
    _write(tmp_path / "ir" / "a.png", rgb_ir)
    item = PairedFolderDataset(tmp_path)[0]
    for channel in range(3):
        np.testing.assert_allclose(item["vis"][channel].numpy(), gray_vis / 255.0, atol=1e-6)
    luma = rgb_ir.astype(float) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(item["ir"][0].numpy() * 255.0 - luma).max() <= 1.0


def test_mixed_extensions_pair_by_stem(tmp_path: Path) -> None:
    vis = {"a": _rgb(6, 8, 0), "b": _rgb(6, 8, 1), "c": _rgb(6, 8, 2)}
    ir = {"a": _gray(6, 8, 0), "b": _gray(6, 8, 1), "c": _gray(6, 8, 2)}
    _write(tmp_path / "vi" / "a.png", vis["a"])
    _write(tmp_path / "ir" / "a.jpg", ir["a"])
    _write(tmp_path / "vi" / "b.BMP", vis["b"])
    _write(tmp_path / "ir" / "b.PNG", ir["b"])
    _write(tmp_path / "vi" / "c.JPEG", vis["c"])
    _write(tmp_path / "ir" / "c.bmp", ir["c"])
    (tmp_path / "vi" / "Thumbs.db").write_bytes(b"not an image, ignored")
    dataset = PairedFolderDataset(tmp_path)
    assert dataset.names == ["a", "b", "c"]
    item = dataset[1]  # bmp + png: lossless
    np.testing.assert_array_equal(np.rint(item["vis"].permute(1, 2, 0).numpy() * 255), vis["b"])
    np.testing.assert_array_equal(np.rint(item["ir"][0].numpy() * 255), ir["b"])
    for index in (0, 2):
        assert dataset[index]["vis"].shape == (3, 6, 8) and dataset[index]["ir"].shape == (1, 6, 8)


def test_nested_folders_give_root_relative_names(tmp_path: Path) -> None:
    _make_pairs(tmp_path, ["seq1/0001", "seq2/0001"])
    assert PairedFolderDataset(tmp_path).names == ["seq1/0001", "seq2/0001"]


# --------------------------------------------------------------------------- layouts and labels


def test_msrs_layout_labels_loaded_only_on_request(tmp_path: Path) -> None:
    _make_pairs(tmp_path, ["00001D", "00002N"])
    label = np.array([[0, 1, 2, 255] * 2] * 6, dtype=np.uint8)
    _write(tmp_path / "Segmentation_labels" / "00001D.png", label)
    _write(tmp_path / "Segmentation_labels" / "00002N.png", label[::-1].copy())
    labelled = PairedFolderDataset(tmp_path, load_labels=True)
    item = labelled[0]
    assert item["label"].dtype == torch.int64 and item["label"].shape == (6, 8)
    np.testing.assert_array_equal(item["label"].numpy(), label)
    # A corrupt label file is never opened without load_labels: proof that fusion training reads no labels.
    (tmp_path / "Segmentation_labels" / "00001D.png").write_bytes(b"garbage")
    unlabelled = PairedFolderDataset(tmp_path)
    assert "label" not in unlabelled[0]
    with pytest.raises(DataFileError, match=r"00001D\.png"):
        PairedFolderDataset(tmp_path, load_labels=True)[0]


def test_fmb_layout_with_palette_labels(tmp_path: Path) -> None:
    (tmp_path / "Label").mkdir()
    ids = np.tile(np.arange(8, dtype=np.uint8), (6, 1))
    for name in ("00001", "00002"):
        _write(tmp_path / "Visible" / f"{name}.png", _rgb(6, 8))
        _write(tmp_path / "Infrared" / f"{name}.png", _gray(6, 8))
        palette_label = Image.fromarray(ids, "P")  # the palette index is the class id
        palette_label.putpalette(np.random.default_rng(0).integers(0, 256, 768).tolist())
        palette_label.save(tmp_path / "Label" / f"{name}.png")
    dataset = PairedFolderDataset(tmp_path, load_labels=True)
    assert dataset.folders[0].layout == "fmb"
    np.testing.assert_array_equal(dataset[0]["label"].numpy(), np.tile(np.arange(8), (6, 1)))


def test_roadscene_layout(tmp_path: Path) -> None:
    _write(tmp_path / "crop_LR_visible" / "FLIR_00006.jpg", _rgb(12, 16))
    _write(tmp_path / "cropinfrared" / "FLIR_00006.jpg", _gray(12, 16))
    dataset = PairedFolderDataset(tmp_path)
    assert dataset.folders[0].layout == "roadscene" and dataset.names == ["FLIR_00006"]
    assert dataset[0]["vis"].shape == (3, 12, 16)


def test_custom_layout(tmp_path: Path) -> None:
    _write(tmp_path / "rgb" / "a.png", _rgb(6, 8))
    _write(tmp_path / "thermal" / "a.png", _gray(6, 8))
    dataset = PairedFolderDataset(tmp_path, layout=FolderLayout("mine", ("rgb",), ("thermal",)))
    assert len(dataset) == 1


def test_labels_requested_without_label_folder(tmp_path: Path) -> None:
    _make_pairs(tmp_path, ["a"])
    with pytest.raises(PairingError, match="no label folder"):
        PairedFolderDataset(tmp_path, load_labels=True)


# --------------------------------------------------------------------------- error paths


def test_missing_infrared_partner(tmp_path: Path) -> None:
    _make_pairs(tmp_path, ["a"])
    _write(tmp_path / "vi" / "b.png", _rgb(6, 8))
    with pytest.raises(PairingError, match="no infrared partner") as info:
        PairedFolderDataset(tmp_path)
    assert str(tmp_path / "vi" / "b.png") in str(info.value)


def test_missing_visible_partner(tmp_path: Path) -> None:
    _make_pairs(tmp_path, ["a"])
    _write(tmp_path / "ir" / "c.jpg", _gray(6, 8))
    with pytest.raises(PairingError, match="no visible partner") as info:
        PairedFolderDataset(tmp_path)
    assert str(tmp_path / "ir" / "c.jpg") in str(info.value)


def test_duplicate_stem_is_ambiguous(tmp_path: Path) -> None:
    _make_pairs(tmp_path, ["a"])
    _write(tmp_path / "vi" / "a.jpg", _rgb(6, 8))
    with pytest.raises(PairingError, match="ambiguous"):
        PairedFolderDataset(tmp_path)


def test_truncated_png_named_on_read(tmp_path: Path) -> None:
    _make_pairs(tmp_path, ["a"], height=64, width=64)
    path = tmp_path / "vi" / "a.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    dataset = PairedFolderDataset(tmp_path)  # names only: constructing still works
    with pytest.raises(DataFileError) as info:
        dataset[0]
    assert info.value.path == path and str(path) in str(info.value)


def test_non_image_bytes_named(tmp_path: Path) -> None:
    _make_pairs(tmp_path, ["a"])
    path = tmp_path / "ir" / "a.png"
    path.write_bytes(b"this is not a PNG file at all")
    with pytest.raises(DataFileError, match="not a readable image") as info:
        PairedFolderDataset(tmp_path)[0]
    assert info.value.path == path


def test_size_mismatch_within_pair(tmp_path: Path) -> None:
    _write(tmp_path / "vi" / "a.png", _rgb(6, 8))
    _write(tmp_path / "ir" / "a.png", _gray(7, 8))
    with pytest.raises(DataFileError, match=r"8x7 \(WxH\) differs .* \(8x6\)") as info:
        PairedFolderDataset(tmp_path)[0]
    assert info.value.path == tmp_path / "ir" / "a.png"


def test_label_size_mismatch(tmp_path: Path) -> None:
    _make_pairs(tmp_path, ["a"])
    _write(tmp_path / "label" / "a.png", np.zeros((6, 9), np.uint8))
    with pytest.raises(DataFileError, match="label"):
        PairedFolderDataset(tmp_path, load_labels=True)[0]


def test_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "vi").mkdir()
    (tmp_path / "ir").mkdir()
    with pytest.raises(PairingError, match="empty folder") as info:
        PairedFolderDataset(tmp_path)
    assert len(info.value.problems) == 2


def test_unsupported_layout_lists_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "rgb").mkdir()
    (tmp_path / "thermal").mkdir()
    with pytest.raises(LayoutError) as info:
        PairedFolderDataset(tmp_path)
    message = str(info.value)
    looked_for = ("vi/", "ir/", "Visible/", "Infrared/", "crop_LR_visible/", "cropinfrared/")
    for expected in (*looked_for, "Found: rgb, thermal"):
        assert expected in message
    with pytest.raises(LayoutError, match="does not exist"):
        PairedFolderDataset(tmp_path / "nowhere")


def test_train_test_subfolders_are_suggested(tmp_path: Path) -> None:
    _make_pairs(tmp_path / "train", ["a"])
    _make_pairs(tmp_path / "test", ["b"])
    with pytest.raises(LayoutError, match="train"):
        PairedFolderDataset(tmp_path)


def test_unsupported_modes(tmp_path: Path) -> None:
    _write(tmp_path / "vi" / "a.png", np.full((6, 8), 40000, np.uint16))  # 16-bit visible
    _write(tmp_path / "ir" / "a.png", _gray(6, 8))
    _write(tmp_path / "vi" / "b.png", _rgb(6, 8))
    _write(tmp_path / "ir" / "b.tif", np.ones((6, 8), np.float32), "F")  # float thermal
    dataset = PairedFolderDataset(tmp_path)
    with pytest.raises(DataFileError, match="unsupported image mode 'I"):
        dataset[0]
    with pytest.raises(DataFileError, match="unsupported image mode 'F'"):
        dataset[1]
    labelled = _make_pairs(tmp_path / "labelled", ["a"])
    _write(labelled / "label" / "a.png", _rgb(6, 8))
    with pytest.raises(DataFileError, match="colour visualisation"):
        PairedFolderDataset(labelled, load_labels=True)[0]


# --------------------------------------------------------------------------- combined folders, workers


def test_combined_roots_get_unique_names(tmp_path: Path) -> None:
    first = _make_pairs(tmp_path / "setA" / "train", ["a", "b"])
    second = _make_pairs(tmp_path / "setB" / "train", ["a"])
    third = _make_pairs(tmp_path / "other", ["z"])
    dataset = PairedFolderDataset([first, second, third])
    # The shortest path tails that tell the roots apart: "train" alone is ambiguous, so two parts.
    assert dataset.names == ["setA/train/a", "setA/train/b", "setB/train/a", f"{tmp_path.name}/other/z"]
    assert dataset[2]["name"] == "setB/train/a"
    train, val = split_train_val(dataset, 0.25)
    assert len(val) == 1 and sorted(train + val) == [0, 1, 2, 3]
    with pytest.raises(LayoutError, match="twice"):
        PairedFolderDataset([first, first])


def test_dataloader_with_workers(tmp_path: Path) -> None:
    _make_pairs(tmp_path, [f"{i:02d}" for i in range(8)], height=20, width=24)
    dataset = PairedFolderDataset(tmp_path, transform=train_transform(16))
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone.names == dataset.names
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2)
    batches = list(loader)
    assert [b["vis"].shape for b in batches] == [torch.Size([4, 3, 16, 16])] * 2
    assert batches[0]["ir"].shape == (4, 1, 16, 16) and batches[1]["name"] == ["04", "05", "06", "07"]
    error = pickle.loads(pickle.dumps(DataFileError(tmp_path / "x.png", "broken")))
    assert error.path == tmp_path / "x.png" and error.reason == "broken"
    # torch re-raises a worker's exception as `type(exc)(worker_traceback_text)`: the type must survive.
    # (Not exercised with live workers: torch 2.x then spends 10 s joining them at garbage collection.)
    rewrapped = DataFileError(f"Caught DataFileError in DataLoader worker process 0. ...{error}")
    assert rewrapped.path is None and str(tmp_path / "x.png") in str(rewrapped)


# --------------------------------------------------------------------------- transforms


def _coordinate_sample(height: int, width: int) -> dict[str, np.ndarray]:
    """vis R = row, G = column; ir and label are other functions of (row, column)."""
    rows, cols = np.mgrid[0:height, 0:width]
    vis = np.stack([rows, cols, (rows + cols) % 256], axis=2).astype(np.uint8)
    ir = ((3 * rows + 5 * cols) % 256).astype(np.uint8)
    label = ((rows + 2 * cols) % 200).astype(np.uint8)
    return {"vis": vis, "ir": ir, "label": label}


@pytest.mark.parametrize("seed", range(12))
def test_crop_and_flip_keep_pairs_aligned(seed: int) -> None:
    torch.manual_seed(seed)
    transform = train_transform((10, 14), vertical_flip=True)
    out = transform(_coordinate_sample(30, 40))
    rows = out["vis"][..., 0].astype(int)
    cols = out["vis"][..., 1].astype(int)
    assert out["vis"].shape == (10, 14, 3) and out["ir"].shape == (10, 14) and out["label"].shape == (10, 14)
    np.testing.assert_array_equal(out["ir"], (3 * rows + 5 * cols) % 256)
    np.testing.assert_array_equal(out["label"], (rows + 2 * cols) % 200)
    # A contiguous window (possibly mirrored): consecutive rows/columns.
    assert np.all(np.abs(np.diff(rows, axis=0)) == 1) and np.all(np.diff(rows, axis=1) == 0)
    assert np.all(np.abs(np.diff(cols, axis=1)) == 1) and np.all(np.diff(cols, axis=0) == 0)


def test_flips_and_positions_vary() -> None:
    torch.manual_seed(0)
    transform = train_transform(8, vertical_flip=True)
    sample = _coordinate_sample(30, 40)
    outs = [transform(sample) for _ in range(40)]
    horizontal = {bool(o["vis"][0, 1, 1] < o["vis"][0, 0, 1]) for o in outs}
    vertical = {bool(o["vis"][1, 0, 0] < o["vis"][0, 0, 0]) for o in outs}
    corners = {(int(o["vis"][0, 0, 0]), int(o["vis"][0, 0, 1])) for o in outs}
    assert horizontal == {True, False} and vertical == {True, False} and len(corners) > 10
    no_vertical = train_transform(8)
    for _ in range(20):
        out = no_vertical(sample)
        assert out["vis"][1, 0, 0] == out["vis"][0, 0, 0] + 1


def test_small_image_is_reflect_padded_or_rejected() -> None:
    torch.manual_seed(0)
    sample = _coordinate_sample(5, 7)
    out = RandomPairCrop(12)(sample)
    rows = out["vis"][..., 0].astype(int)
    cols = out["vis"][..., 1].astype(int)
    assert out["vis"].shape == (12, 12, 3)
    np.testing.assert_array_equal(out["ir"], (3 * rows + 5 * cols) % 256)
    np.testing.assert_array_equal(out["label"], (rows + 2 * cols) % 200)
    assert rows.max() <= 4 and cols.max() <= 6
    assert np.all(np.abs(np.diff(cols, axis=1)) == 1)  # reflection (no repeated edge pixel)
    with pytest.raises(ValueError, match="smaller than the crop"):
        RandomPairCrop(12, pad_mode="raise")(sample)


def test_flip_probabilities_validated() -> None:
    with pytest.raises(ValueError):
        RandomPairFlip(horizontal=1.5)


# --------------------------------------------------------------------------- split


def test_split_is_deterministic_and_nine_to_one() -> None:
    names = [f"{i:05d}" for i in range(221)]
    train, val = split_train_val(names)
    assert (len(train), len(val)) == (199, 22)
    assert sorted(train + val) == list(range(221)) and not set(train) & set(val)
    assert split_train_val(names) == (train, val)
    shuffled = names[:]
    random.Random(3).shuffle(shuffled)
    _, val_shuffled = split_train_val(shuffled)
    assert {shuffled[i] for i in val_shuffled} == {names[i] for i in val}  # independent of listing order
    _, other_seed = split_train_val(names, seed=1)
    assert other_seed != val
    assert [len(part) for part in split_train_val(names[:100])] == [90, 10]
    assert [len(part) for part in split_train_val(names[:5])] == [4, 1]
    with pytest.raises(ValueError, match="unique"):
        split_train_val(["a", "a"])


def test_split_takes_a_dataset(tmp_path: Path) -> None:
    dataset = PairedFolderDataset(_make_pairs(tmp_path, [f"n{i}" for i in range(10)]))
    train, val = split_train_val(dataset, val_fraction=0.1, seed=0)
    assert (train, val) == split_train_val(dataset.names)
    assert len(val) == 1


# --------------------------------------------------------------------------- scanner and CLI


def _broken_root(root: Path) -> dict[str, Path]:
    _make_pairs(root, ["good", "trunc", "junk", "sizes"], height=32, width=32)
    bad = {
        "orphan_vis": _write(root / "vi" / "orphan.png", _rgb(32, 32)),
        "orphan_ir": _write(root / "ir" / "lonely.bmp", _gray(32, 32)),
        "trunc": root / "vi" / "trunc.png",
        "junk": root / "ir" / "junk.png",
        "sizes": _write(root / "ir" / "sizes.png", _gray(30, 32)),
    }
    bad["trunc"].write_bytes(bad["trunc"].read_bytes()[:200])
    bad["junk"].write_bytes(b"\x00\x01 junk")
    return bad


def test_scan_folder_reports_every_problem(tmp_path: Path) -> None:
    bad = _broken_root(tmp_path)
    problems = scan_folder(tmp_path)
    assert sorted(str(p.path) for p in problems) == sorted(str(p) for p in bad.values())
    reasons = {p.path.name: p.reason for p in problems}
    assert "no infrared partner" in reasons["orphan.png"] and "no visible partner" in reasons["lonely.bmp"]
    assert "differs" in reasons["sizes.png"] and "not a readable image" in reasons["junk.png"]


def test_check_cli_lists_all_problems_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = _broken_root(tmp_path / "bad")
    good = _make_pairs(tmp_path / "good", ["a", "b"])
    missing = tmp_path / "missing"
    assert check_main([str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    assert check_main([str(good), str(tmp_path / "bad"), str(missing)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    for path in [*bad.values(), missing]:
        assert sum(line.startswith(f"{path}: ") for line in lines) == 1, path
    assert lines[-1].startswith(f"{len(bad) + 1} problem(s) found")
    result = subprocess.run(
        [sys.executable, "-m", "ssvif_ros.data.check", str(tmp_path / "bad")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and str(bad["junk"]) in result.stdout
