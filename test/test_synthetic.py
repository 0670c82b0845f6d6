"""Procedural labelled scenes: determinism, label/render alignment, conditions, thermal physics, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from ssvif_ros.data import synthetic as syn

W, H = 320, 240  # small scenes keep the tests fast; geometry scales with the size


@pytest.fixture(scope="module")
def scenes() -> dict[tuple[int, str], syn.Scene]:
    """Seeds 0-3 under every condition (32 small scenes, rendered once for the module)."""
    return {(seed, c): syn.generate_scene(seed, W, H, c) for seed in range(4) for c in syn.CONDITIONS}


def _luma(vis: np.ndarray) -> np.ndarray:
    return vis.astype(np.float32) @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def _ring(mask: np.ndarray, radius: int) -> np.ndarray:
    return ndimage.binary_dilation(mask, np.ones((2 * radius + 1, 2 * radius + 1), bool)) & ~mask


def _mean_contrast(image: np.ndarray, mask: np.ndarray) -> float:
    """|mean inside - mean of a band around| of a mask, a third of its width thick."""
    cols = np.nonzero(mask.any(axis=0))[0]
    ring = _ring(mask, max(2, round((cols[-1] - cols[0] + 1) / 3)))
    return abs(float(image[mask].mean()) - float(image[ring].mean()))


def test_same_seed_same_scene_different_seed_different_scene() -> None:
    a = syn.generate_scene(7, W, H, "night")
    b = syn.generate_scene(7, W, H, "night")
    for name in ("vis", "ir", "ir16", "label", "depth", "instances", "thermal_only"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    c = syn.generate_scene(8, W, H, "night")
    assert not np.array_equal(a.vis, c.vis)
    assert not np.array_equal(a.label, c.label)
    # condition=None draws the condition from the seed, reproducibly.
    d, e = syn.generate_scene(11, W, H), syn.generate_scene(11, W, H)
    assert d.condition in syn.CONDITIONS and d.condition == e.condition
    np.testing.assert_array_equal(d.vis, e.vis)
    assert len({syn.generate_scene(s, 64, 48).condition for s in range(12)}) > 1


def test_arrays_have_documented_types(scenes: dict) -> None:
    sc = scenes[(0, "night")]
    assert sc.vis.shape == (H, W, 3) and sc.vis.dtype == np.uint8
    assert sc.ir.shape == (H, W) and sc.ir.dtype == np.uint8
    assert sc.ir16.shape == (H, W) and sc.ir16.dtype == np.uint16
    assert sc.label.shape == (H, W) and sc.label.dtype == np.uint8
    assert sc.thermal_only.dtype == bool and sc.depth.dtype == np.float32
    # Radiometric-like 14-bit counts around 7000-9000, and an 8-bit view using most of its range.
    assert 5000 < np.percentile(sc.ir16, 1) and np.percentile(sc.ir16, 99) < 10000 and sc.ir16.max() < 2**14
    assert sc.ir.max() - sc.ir.min() > 200
    json.dumps(sc.meta())  # serialisable


def test_geometry_depends_on_seed_only(scenes: dict) -> None:
    for seed in range(4):
        labels = [scenes[(seed, c)].label for c in syn.CONDITIONS]
        for other in labels[1:]:
            np.testing.assert_array_equal(labels[0], other)


def test_sky_on_top_and_road_at_bottom_centre(scenes: dict) -> None:
    sky, road = syn.CLASS_NAMES.index("sky"), syn.CLASS_NAMES.index("road")
    for seed in range(4):
        label = scenes[(seed, "day")].label
        top = label[: H // 10, W // 3 : 2 * W // 3]
        bottom = label[-H // 20 :, 2 * W // 5 : 3 * W // 5]
        assert (top == sky).mean() > 0.5, f"seed {seed}: top centre is not mostly sky"
        assert (bottom == road).mean() > 0.9, f"seed {seed}: bottom centre is not road"
        assert (label[-1] == sky).sum() == 0


def test_objects_change_the_images_exactly_where_they_are_labelled() -> None:
    """Rendering the same street without objects changes the visible and thermal images only at (and next
    to: contact shadows, thermal blur) the object masks, and changes nearly every object pixel."""
    for seed in range(3):
        full = syn.generate_scene(seed, W, H, "day")
        empty = syn.generate_scene(seed, W, H, "day", draw_objects=False)
        objects = full.instances > 0
        assert objects.any()
        near = ndimage.binary_dilation(objects, iterations=6)
        vis_changed = np.any(full.vis != empty.vis, axis=2)
        assert vis_changed[~near].mean() < 0.002
        np.testing.assert_array_equal(full.ir16[~near], empty.ir16[~near])
        np.testing.assert_array_equal(full.label[~objects], empty.label[~objects])
        for obj in full.objects:
            if obj.kind in ("car", "truck", "person") and obj.pixels >= 30:
                mask = full.instances == obj.instance
                assert vis_changed[mask].mean() > 0.9, f"seed {seed}: {obj.kind} hardly drawn in visible"


def test_instance_pixels_carry_their_object_classes(scenes: dict) -> None:
    allowed = {
        "car": {"car"},
        "truck": {"truck"},
        "person": {"person"},
        "cyclist": {"rider", "bicycle"},
        "street_light": {"pole"},
        "traffic_sign": {"pole", "traffic_sign"},
        "tree": {"vegetation"},
    }
    for seed in range(4):
        sc = scenes[(seed, "dusk")]
        for obj in sc.objects:
            if obj.pixels:
                ids = np.unique(sc.label[sc.instances == obj.instance])
                assert {syn.CLASS_NAMES[i] for i in ids} <= allowed[obj.kind], obj


def test_farther_cars_are_smaller_and_higher(scenes: dict) -> None:
    """Cars whose wheels are visible stand on the ground row of their depth, at a metric height."""
    checked = 0
    for seed in range(4):
        sc = scenes[(seed, "day")]
        cam = sc.camera
        feet = []
        for obj in sc.objects:
            if obj.kind != "car" or obj.pixels < 20:
                continue
            _, y0, _, y1 = obj.bbox
            ground = cam.ground_row(obj.z_m)
            assert y1 <= ground + 1.5, "a car is drawn below its ground contact"
            if abs(y1 - ground) <= 1.5 and y0 > 0:  # unoccluded bottom and top
                height_m = (y1 - y0) * obj.z_m / cam.focal_px
                assert 1.2 < height_m < 1.8, f"car height {height_m:.2f} m at {obj.z_m:.1f} m"
                feet.append((obj.z_m, y1))
        feet.sort()
        rows = [row for _, row in feet]
        assert rows == sorted(rows, reverse=True), "a farther car stands lower in the image"
        checked += len(feet)
    assert checked >= 3


def test_people_are_warmer_than_the_road_around_them(scenes: dict) -> None:
    road = syn.CLASS_NAMES.index("road"), syn.CLASS_NAMES.index("sidewalk")
    checked = 0
    for (_, condition), sc in scenes.items():
        for obj in sc.objects:
            if obj.kind != "person" or obj.pixels < 40:
                continue
            mask = sc.instances == obj.instance
            ground = _ring(mask, 12) & np.isin(sc.label, road) & (sc.instances == 0)
            if ground.sum() < 20:
                continue
            person_t = sc.ir16[mask].mean()
            assert person_t > sc.ir16[ground].mean() + 3 * syn.IR_COUNTS_PER_KELVIN, condition
            checked += 1
    assert checked >= 10


def test_lane_markings_show_in_visible_only(scenes: dict) -> None:
    mark, road = syn.CLASS_NAMES.index("lane_marking"), syn.CLASS_NAMES.index("road")
    for seed in range(4):
        day, night = scenes[(seed, "day")], scenes[(seed, "night")]
        rows = slice(int(day.camera.horizon) + 20, H)  # near road: markings several pixels wide
        m, r = day.label[rows] == mark, day.label[rows] == road
        assert m.sum() > 50
        assert _luma(day.vis[rows])[m].mean() - _luma(day.vis[rows])[r].mean() > 40
        ir = night.ir16[rows].astype(np.float32)
        assert abs(ir[m].mean() - ir[r].mean()) < 0.6 * syn.IR_COUNTS_PER_KELVIN  # < 0.6 K apart


def test_night_is_dark_and_noisy(scenes: dict) -> None:
    for seed in range(4):
        day, night = scenes[(seed, "day")], scenes[(seed, "night")]
        assert _luma(night.vis).mean() < 0.45 * _luma(day.vis).mean()
        # Pixel noise: residual to a 3x3 median inside the (eroded) sky.
        sky = ndimage.binary_erosion(day.label == syn.CLASS_NAMES.index("sky"), iterations=3)
        noise = []
        for sc in (day, night):
            y = _luma(sc.vis)
            noise.append(np.abs(y - ndimage.median_filter(y, 3))[sky].mean())
        assert noise[1] > 1.5 * noise[0], f"seed {seed}: night noise {noise[1]:.2f} vs day {noise[0]:.2f}"


def test_fog_removes_contrast_with_depth(scenes: dict) -> None:
    """Far/near ratio of luminance spread: fog lowers it far more than it is lowered on a clear day."""
    for seed in range(4):
        ratios = {}
        for condition in ("day", "fog"):
            sc = scenes[(seed, condition)]
            y, ground = _luma(sc.vis), sc.label != syn.CLASS_NAMES.index("sky")
            near = ground & (sc.depth < 12)
            far = ground & (sc.depth > 40) & (sc.depth < 1000)
            ratios[condition] = y[far].std() / y[near].std()
        assert ratios["fog"] < 0.5 * ratios["day"], ratios
    # The thermal camera sees through it: IR contrast of far people stays high.
    for seed in range(4):
        sc = scenes[(seed, "fog")]
        for obj in sc.objects:
            if obj.kind == "person" and obj.pixels >= 12 and obj.z_m > sc.look.fog_visibility_m:
                assert obj.vis_contrast < syn.THERMAL_ONLY_MAX_VIS_CONTRAST < obj.ir_contrast


def test_night_hides_some_people_that_thermal_shows(scenes: dict) -> None:
    """Every night scene has a thermal-only person/cyclist, and the flag agrees with the output images."""
    for seed in range(4):
        night, day = scenes[(seed, "night")], scenes[(seed, "day")]
        hidden = [o for o in night.objects if o.thermal_only]
        assert hidden, f"seed {seed}: no thermal-only object at night"
        assert night.thermal_only.sum() == sum(o.pixels for o in hidden)
        y = _luma(night.vis)
        for obj in hidden:
            assert obj.kind in ("person", "cyclist")
            mask = night.instances == obj.instance
            assert _mean_contrast(y, mask) < 8.0, f"seed {seed}: hidden object visible"
            assert _mean_contrast(night.ir.astype(np.float32), mask) > 20.0, f"seed {seed}: faint in IR"
            # The same person is plainly visible by day.
            assert day.objects[obj.instance - 1].vis_contrast > 2 * obj.vis_contrast


@pytest.mark.parametrize("k", [9, 10, 12])
def test_fewer_classes_merge_along_the_documented_chain(k: int) -> None:
    full, merged = syn.generate_scene(5, W, H, "dusk"), syn.generate_scene(5, W, H, "dusk", num_classes=k)
    assert merged.label.max() < k and merged.num_classes == k
    lut = syn.class_mapping(k)
    np.testing.assert_array_equal(merged.label, lut[full.label])
    np.testing.assert_array_equal(merged.vis, full.vis)
    assert len(syn.class_names(k)) == k and syn.palette(k).shape == (k, 3)


def test_class_tables_for_every_k() -> None:
    assert len(syn.CLASS_NAMES) == syn.PALETTE.shape[0] == 15 and syn.PALETTE.dtype == np.uint8
    assert syn.class_names() == syn.CLASS_NAMES
    for k in range(2, 16):
        lut = syn.class_mapping(k)
        assert sorted(set(lut.tolist())) == list(range(k))
        names = syn.class_names(k)
        assert len(set(names)) == k
        for native, name in enumerate(syn.CLASS_NAMES):  # a class keeps its id when it survives
            if name in names:
                assert names[lut[native]] == name
    base = ("road", "sidewalk", "lane_marking", "building", "vegetation", "sky", "pole", "car", "person")
    assert syn.class_names(10) == (*base, "bicycle")
    for bad in (1, 16):
        with pytest.raises(ValueError, match="num_classes"):
            syn.class_names(bad)
    with pytest.raises(ValueError, match="condition"):
        syn.generate_scene(0, W, H, "rain")


def test_cli_writes_paired_folders(tmp_path, capsys) -> None:
    out = tmp_path / "synth"
    assert syn.main(["--out", str(out), "-n", "3", "--size", "96x64", "--thermal-16bit", "--num-classes", "9",
                     "--conditions", "night,fog"]) == 0  # fmt: skip
    assert "wrote 3 scenes" in capsys.readouterr().out
    names = sorted(p.stem for p in (out / "vi").glob("*.png"))
    assert len(names) == 3
    for sub in ("ir", "label"):
        assert sorted(p.stem for p in (out / sub).glob("*.png")) == names
    for name in names:
        vi = np.asarray(Image.open(out / "vi" / f"{name}.png"))
        ir = np.asarray(Image.open(out / "ir" / f"{name}.png"))
        label = np.asarray(Image.open(out / "label" / f"{name}.png"))
        assert vi.shape == (64, 96, 3) and vi.dtype == np.uint8
        assert ir.shape == (64, 96) and ir.dtype == np.uint16 and ir.max() > 5000
        assert label.shape == (64, 96) and label.dtype == np.uint8 and label.max() < 9
    classes = json.loads((out / "classes.json").read_text())
    assert classes["names"] == list(syn.class_names(9)) and len(classes["palette"]) == 9
    meta = json.loads((out / "meta.json").read_text())
    assert [meta["scenes"][n]["condition"] for n in names] == ["night", "fog", "night"]
    first = meta["scenes"][names[0]]
    again = syn.generate_scene(first["seed"], 96, 64, first["condition"], 9)
    np.testing.assert_array_equal(again.vis, np.asarray(Image.open(out / "vi" / f"{names[0]}.png")))

    syn.write_dataset(tmp_path / "eight", 1, width=64, height=48)
    ir8 = Image.open(tmp_path / "eight" / "ir" / "00000.png")
    assert ir8.mode == "L"
    with pytest.raises(SystemExit):
        syn.main(["--out", str(out), "--conditions", "rain"])


def test_cli_output_loads_as_a_paired_dataset_with_labels(tmp_path) -> None:
    from ssvif_ros.data import PairedFolderDataset

    out = tmp_path / "synth"
    assert syn.main(["--out", str(out), "-n", "4", "--size", "80x64", "--num-classes", "9"]) == 0
    for thermal_16bit in (False, True):
        if thermal_16bit:
            syn.write_dataset(out, 4, width=80, height=64, thermal_16bit=True, num_classes=9)
        ds = PairedFolderDataset(out, load_labels=True)
        assert len(ds) == 4
        item = ds[0]
        assert item["vis"].shape == (3, 64, 80) and item["ir"].shape == (1, 64, 80)
        assert 0.0 <= float(item["ir"].min()) and float(item["ir"].max()) <= 1.0
        assert int(item["label"].max()) < 9


def test_a_test_split_is_written_to_the_manifest_the_training_reads(tmp_path) -> None:
    """``--test N``: the last N scenes are the test split in manifest.csv, so ``data.exclude_splits: [test]``
    keeps them out of training (the experiments' 240/80 split of runs/synth9 is one command)."""
    from ssvif_ros.data.pairs import PairedFolderDataset, manifest_column
    from ssvif_ros.data.synthetic import main

    assert main(["--out", str(tmp_path / "s"), "-n", "5", "--size", "64x48", "--test", "2"]) == 0
    rows = (tmp_path / "s" / "manifest.csv").read_text().splitlines()
    assert rows == ["name,split", "00000,train", "00001,train", "00002,train", "00003,test", "00004,test"]
    assert manifest_column(PairedFolderDataset(tmp_path / "s"), "split") == ["train"] * 3 + ["test"] * 2
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "t"), "-n", "2", "--test", "3"])
