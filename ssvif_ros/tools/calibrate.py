"""``ssvif-calibrate``: the thermal -> visible ``registration.homography`` from a recording, without a target.

    ssvif-calibrate RECORDING --out DIR [--max-pairs 12] [--visible-topic T --thermal-topic T]
    ssvif-calibrate BAG --out DIR --from-camera-info [--rotation R11 ... R33] [--visible-info-topic T ...]

RECORDING is a paired folder (vi/ + ir/, the layouts ``ssvif-check-data`` knows) or a rosbag2 bag of the two
camera topics (raw ``sensor_msgs/Image``, or image_transport's ``TOPIC/compressed`` when only that was
recorded; pairs by approximate time, 16-bit thermal through the node's percentile gain without
smoothing). Up to ``--max-pairs`` pairs spread over the recording are aligned by mutual information
(:mod:`ssvif_ros.fusion.calibration`). Writes ``DIR/homography.yaml`` (the line for
``config/fuse.yaml``), ``DIR/calibration.json`` (the matrix, NMI before/after, the mean correction in
pixels) and ``DIR/checkerboard_before.png`` / ``checkerboard_after.png`` (visible and registered thermal in
alternating squares). Exit 0, or 2 with one line when the recording cannot give a trustworthy answer.

``--from-camera-info``: no image alignment; the homography of the plane at infinity from the two cameras'
``sensor_msgs/CameraInfo`` in the bag (``K_v R K_t⁻¹``,
:func:`ssvif_ros.fusion.registration.homography_from_intrinsics`) and ``--rotation`` (thermal → visible
optical frames, row-major; identity: a boresighted rig). Right for distant scenes; the report gives the NMI
of the recording's pairs without and with it, so a wrong calibration shows.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "read_pairs"]


def _spread(items: list, count: int) -> list:
    if len(items) <= count:
        return items
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def _folder_pairs(folder: Path, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from ssvif_ros.data import PairedFolderDataset

    dataset = PairedFolderDataset(folder)
    arrays = (dataset.read_arrays(i) for i in _spread(list(range(len(dataset))), count))
    return [(a["vis"], a["ir"]) for a in arrays]


def _bag_pairs(bag: Path, count: int, visible: str, thermal: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs of a bag's camera topics, raw or compressed (``TOPIC/compressed`` is found when only that was
    recorded); the thermal through a per-frame percentile gain."""
    from ssvif_ros.fusion.pairing import create_sync
    from ssvif_ros.fusion.thermal import ThermalToU8
    from ssvif_ros.io.bags import open_reader, stamp_ns
    from ssvif_ros.io.compressed import INPUT_DECODERS

    sync, raw = create_sync("approximate", 10, 0.05), []
    with open_reader(bag) as reader:
        (visible, visible_type), (thermal, thermal_type) = (
            reader.camera_topic(visible, "--visible-topic"),
            reader.camera_topic(thermal, "--thermal-topic"),
        )
        for topic, _, _, msg in reader.messages([visible, thermal]):
            raw += [pair.items for pair in sync.add(0 if topic == visible else 1, stamp_ns(msg), msg)]
    to_visible, to_thermal = INPUT_DECODERS[visible_type][0], INPUT_DECODERS[thermal_type][1]
    gain = ThermalToU8(smoothing=0.0, subsample=1)
    return [(to_visible(v, visible), gain(to_thermal(t, thermal))) for v, t in _spread(raw, count)]


def read_pairs(
    recording: Path, count: int, visible: str, thermal: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``count`` (visible, thermal) pairs spread over a folder or a bag."""
    from ssvif_ros.io.bags import is_bag

    if is_bag(recording):
        return _bag_pairs(recording, count, visible, thermal)
    return _folder_pairs(recording, count)


def _write(out: Path, pairs: list, result: Any) -> None:
    """homography.yaml, calibration.json and the two checkerboards (``result``: a CalibrationResult)."""
    from PIL import Image

    from ssvif_ros.fusion.calibration import checkerboard

    out.mkdir(parents=True, exist_ok=True)
    (out / "homography.yaml").write_text(result.snippet() + "\n")
    report = {
        "homography": (result.homography / result.homography[2, 2]).tolist(),
        "nmi_identity": result.nmi_identity,
        "nmi": result.nmi,
        "mean_correction_px": result.shift_px,
        "pairs": result.pairs,
    }
    (out / "calibration.json").write_text(json.dumps(report, indent=1) + "\n")
    vis, ir = pairs[0]
    ir8 = ir if ir.dtype == np.uint8 else (ir >> 8).astype(np.uint8)
    for name, h in (("before", np.eye(3)), ("after", result.homography)):
        Image.fromarray(checkerboard(vis, ir8, h)).save(out / f"checkerboard_{name}.png")


def info_topic(image_topic: str) -> str:
    """The ``camera_info`` topic beside an image topic (``/cam/image_raw`` -> ``/cam/camera_info``)."""
    return f"{image_topic.rstrip('/').rsplit('/', 1)[0]}/camera_info"


def camera_info_homography(bag: Path, visible_info: str, thermal_info: str, rotation: Any) -> np.ndarray:
    """The plane-at-infinity homography from the first ``CameraInfo`` of each camera in ``bag``."""
    from ssvif_ros.fusion.registration import homography_from_intrinsics
    from ssvif_ros.io.bags import BagError, open_reader

    infos: dict[str, Any] = {}
    with open_reader(bag) as reader:
        for topic, _, _, msg in reader.messages([visible_info, thermal_info]):
            infos.setdefault(topic, msg)
            if len(infos) == 2:
                break
    if len(infos) < 2:
        raise BagError(
            f"bag {bag}: no message on {visible_info if visible_info not in infos else thermal_info}"
        )
    vis, th = infos[visible_info], infos[thermal_info]
    return homography_from_intrinsics(vis.k, th.k, (th.height, th.width), (vis.height, vis.width), rotation)


def main(argv: Sequence[str] | None = None) -> int:
    from ssvif_ros.data import DatasetError
    from ssvif_ros.fusion.calibration import CalibrationError, describe_homography, estimate_homography
    from ssvif_ros.io.bags import BagError
    from ssvif_ros.io.image_msg import MalformedImage

    p = argparse.ArgumentParser(prog="ssvif-calibrate", description=__doc__.splitlines()[0])
    p.add_argument("recording", type=Path, help="paired folder (vi/ + ir/) or rosbag2 bag folder")
    p.add_argument("--out", type=Path, required=True, help="folder for homography.yaml, report, pictures")
    p.add_argument("--max-pairs", type=int, default=12, help="pairs spread over the recording")
    p.add_argument("--visible-topic", default="/camera/image_raw")
    p.add_argument("--thermal-topic", default="/thermal/image_raw")
    p.add_argument("--from-camera-info", action="store_true", help="from the cameras' CameraInfo (a bag)")
    p.add_argument("--visible-info-topic", help="default: camera_info beside --visible-topic")
    p.add_argument("--thermal-info-topic", help="default: camera_info beside --thermal-topic")
    p.add_argument(
        "--rotation",
        type=float,
        nargs=9,
        metavar="R",
        help="9 numbers: the thermal -> visible rotation of the optical frames, row-major (default identity)",
    )
    args = p.parse_args(argv)
    try:
        count = max(1, args.max_pairs)
        print(f"ssvif-calibrate: reading up to {count} pairs from {args.recording}", file=sys.stderr)
        pairs = read_pairs(args.recording, count, args.visible_topic, args.thermal_topic)
        how = "from the cameras' CameraInfo" if args.from_camera_info else "by mutual information (minutes)"
        print(f"ssvif-calibrate: {len(pairs)} pair(s); the homography {how}", file=sys.stderr)
        if args.from_camera_info:
            infos = (
                args.visible_info_topic or info_topic(args.visible_topic),
                args.thermal_info_topic or info_topic(args.thermal_topic),
            )
            homography = camera_info_homography(args.recording, *infos, args.rotation)
            result = describe_homography(pairs, homography)
        else:
            result = estimate_homography(pairs)
        _write(args.out, pairs, result)
    except (CalibrationError, DatasetError, BagError, MalformedImage, OSError, ValueError) as err:
        print(f"ssvif-calibrate: error: {err}", file=sys.stderr)
        return 2
    print(
        f"{result.snippet()}\n(from {result.pairs} pair(s); NMI {result.nmi_identity:.4f} -> "
        f"{result.nmi:.4f}; mean correction {result.shift_px:.1f} px; "
        f"check {args.out / 'checkerboard_after.png'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
