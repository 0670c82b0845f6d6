"""``make demo`` / ``ssvif-demo``: the whole product on one machine, live over ROS 2 loopback, then a report.

    ssvif-demo [--out out/demo] [--frames 60] [--size 640x480] [--rate 10]        # generated road scenes
    ssvif-demo --bag my_rig_bag --visible-topic /cam/image --thermal-topic /flir/image   # your recording

Steps (every process is started from here and killed in a ``finally`` block):

1. input: without ``--bag``, ``--frames`` synthetic night / fog / day road scenes
   (:func:`ssvif_ros.data.synthetic.write_dataset`) become a 10 Hz rosbag2 bag with ``ssvif-make-bag``
   (visible, thermal, labels topics); kept in ``OUT/input`` and reused while the arguments do not change;
2. live: the fusion node (``python -m ssvif_ros.node.fuse_node --ros-args --params-file PARAMS``, by
   default config/fuse.yaml; the shipped model, reliable inputs, raw or image_transport ``compressed``
   inputs as the bag recorded them) fuses what ``ssvif-play`` publishes from the bag in real time (header
   stamps moved onto the wall clock, so the node's latency is stamp → publish), while ``ssvif-record``
   writes the node's outputs and ``/diagnostics`` to ``OUT/output_bag``;
3. offline: ``ssvif-replay`` fuses the input bag with the same model and the classic Laplacian baseline and
   writes ``OUT/report`` (report.md, contact sheet, metrics; mIoU when the bag has labels);
4. summary: frames fused live, latency percentiles from the node's last ``/diagnostics``, end-to-end delay
   (stamp → recorded), a check that the live frames equal the offline fusion of the same inputs, metric
   means; ``OUT/live_frames.png`` shows a few live frames (visible | thermal | fused | overlay).

All ROS traffic stays on this machine: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a ``ROS_DOMAIN_ID`` of
this run (kept if already set, e.g. by the Makefile), and Fast DDS moves the images through shared
memory (:mod:`ssvif_ros.tools.dds`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ssvif_ros.cli import size_arg
from ssvif_ros.eval.report import contact_sheet, labelled
from ssvif_ros.tools.live import stop_process

NS = 1_000_000_000
CONDITIONS = ("night", "fog", "day")
SHOWN_METRICS = ("EN", "MI", "VIF", "Qabf", "SSIM")
NODE_NAME = "fuse_node"
DEFAULT_TOPICS = ("/camera/image_raw", "/thermal/image_raw")
REPO = Path(__file__).resolve().parents[2]


# --- processes -----------------------------------------------------------------------------------------


class Processes:
    """Children started with this run's environment, logs in one folder; :meth:`stop_all` in a finally."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, module: str, args: list[str]) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=REPO if (REPO / "ssvif_ros").is_dir() else None,
                env=os.environ,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.running[name] = process
        return process

    def log_tail(self, name: str, lines: int = 15) -> str:
        text = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()
        return "\n".join(f"    {line}" for line in text[-lines:])

    def check_alive(self, *names: str) -> None:
        for name in names:
            process = self.running[name]
            if process.poll() is not None:
                raise DemoError(
                    f"{name} exited with code {process.returncode}; its log "
                    f"({self.log_dir / name}.log) ends:\n{self.log_tail(name)}"
                )

    def stop(self, name: str, timeout: float = 15.0) -> int | None:
        """SIGINT (the tools close their bags on it), then SIGKILL after ``timeout``; the exit code."""
        process = self.running.pop(name, None)
        if process is None:
            return None
        stop_process(process, timeout)
        return process.returncode

    def stop_all(self) -> None:
        for name in reversed(list(self.running)):
            self.stop(name, timeout=5.0)


class DemoError(RuntimeError):
    """A step that failed; the message says which and where its log is."""


def _wait(predicate: Any, timeout: float, what: str, procs: Processes, *alive: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        procs.check_alive(*alive)
        if time.monotonic() > deadline:
            logs = ", ".join(f"{procs.log_dir / n}.log" for n in alive)
            raise DemoError(f"timed out after {timeout:g} s waiting for {what} (see {logs})")
        time.sleep(0.1)


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


# --- steps --------------------------------------------------------------------------------------------------


def prepare_synthetic_bag(
    input_dir: Path, frames: int, size: tuple[int, int], rate: float, seed: int
) -> Path:
    """``input_dir/bag``: ``frames`` generated scenes (conditions cycling night, fog, day) at ``rate`` Hz;
    reused when ``input_dir/params.json`` records the same arguments."""
    from ssvif_ros.data.synthetic import write_dataset
    from ssvif_ros.tools.make_bag import RigOptions, make_bag

    params = {
        "frames": frames,
        "size": list(size),
        "rate": rate,
        "seed": seed,
        "conditions": list(CONDITIONS),
    }
    bag = input_dir / "bag"
    stamp = input_dir / "params.json"
    reusable = (bag / "metadata.yaml").is_file() and (input_dir / NOTES_FILE).is_file()
    if stamp.is_file() and reusable and json.loads(stamp.read_text()) == params:
        _say(f"input: reusing {bag} ({frames} generated scenes)")
        return bag
    shutil.rmtree(input_dir, ignore_errors=True)
    started = time.perf_counter()
    write_dataset(input_dir / "scenes", frames, seed, CONDITIONS, size[0], size[1], progress=False)
    make_bag(input_dir / "scenes", bag, RigOptions(rate_hz=rate, seed=seed))
    write_condition_notes(input_dir, frames, RigOptions(rate_hz=rate, seed=seed))
    stamp.write_text(json.dumps(params) + "\n")
    _say(
        f"input: {frames} generated {'/'.join(CONDITIONS)} road scenes {size[0]}x{size[1]} → {bag} "
        f"({time.perf_counter() - started:.1f} s)"
    )
    return bag


NOTES_FILE = "conditions.csv"


def write_condition_notes(input_dir: Path, frames: int, opts: Any) -> Path:
    """``input_dir/conditions.csv``: the visible stamp of each bag frame and its scene's condition (night,
    fog, day), from the generator's meta.json and make_bag's own schedule; ssvif-replay shades metrics.png
    by it (``--frame-notes``)."""
    from ssvif_ros.tools.make_bag import plan_stamps

    scenes = json.loads((input_dir / "scenes" / "meta.json").read_text())["scenes"]
    names = sorted(scenes)
    rows = ["stamp_ns,note"]
    for index, stamp, _ in plan_stamps(frames, opts).visible:
        rows.append(f"{stamp},{scenes[names[index % len(names)]]['condition']}")
    path = input_dir / NOTES_FILE
    path.write_text("\n".join(rows) + "\n")
    return path


def inspect_input(bag_path: Path, visible_topic: str, thermal_topic: str) -> dict[str, Any]:
    """Sizes and counts of the input topics, keyed by the names given, and ``recorded``: the topic and type
    each name was found under (image_transport's ``NAME/compressed`` when only that was recorded). Raises
    DemoError naming a missing topic."""
    from ssvif_ros.io.bags import BagError, open_reader
    from ssvif_ros.io.compressed import INPUT_DECODERS

    with open_reader(bag_path) as bag:
        recorded = {}
        for role, topic in (("visible", visible_topic), ("thermal", thermal_topic)):
            try:
                recorded[topic] = bag.camera_topic(topic, f"the {role} topic")
            except BagError as err:
                raise DemoError(
                    f"{err}\nname them with VISIBLE_TOPIC=... THERMAL_TOPIC=... (make) or "
                    "--visible-topic and --thermal-topic"
                ) from None
        counts_in_bag = bag.message_counts()
        counts, sizes = {}, {}
        for index, topic in enumerate((visible_topic, thermal_topic)):
            name, msgtype = recorded[topic]
            _, _, _, msg = next(bag.messages([name]))
            sizes[topic] = INPUT_DECODERS[msgtype][index](msg, name).shape[:2]
            counts[topic] = counts_in_bag[name]
        duration_s = (bag.end_ns - bag.start_ns) / NS
    return {"counts": counts, "sizes": sizes, "duration_s": duration_s, "recorded": recorded}


def input_remaps(recorded: dict[str, tuple[str, str]], visible_topic: str, thermal_topic: str) -> list[str]:
    """The node's input remaps and ``inputs.transport`` for the topics as the bag recorded them
    (:func:`inspect_input`'s ``recorded``): raw ``Image`` topics or image_transport ``compressed`` ones —
    one transport for both, as the node has (a DemoError otherwise)."""
    from ssvif_ros.io.compressed import COMPRESSED_TOPIC_SUFFIX
    from ssvif_ros.io.image_msg import COMPRESSED_IMAGE_TYPE

    (vis_name, vis_type), (th_name, th_type) = recorded[visible_topic], recorded[thermal_topic]
    if (vis_type == COMPRESSED_IMAGE_TYPE) != (th_type == COMPRESSED_IMAGE_TYPE):
        raise DemoError(
            f"the bag has {vis_name} as {vis_type} and {th_name} as {th_type}: the node reads both inputs "
            "with one transport (inputs.transport); record both raw or both compressed"
        )
    compressed = vis_type == COMPRESSED_IMAGE_TYPE
    suffix, transport = (COMPRESSED_TOPIC_SUFFIX, "compressed") if compressed else ("", "raw")
    return [
        "-r", f"visible/image_raw{suffix}:={vis_name}",
        "-r", f"thermal/image_raw{suffix}:={th_name}",
        "-p", f"inputs.transport:={transport}",  # what the bag holds, whatever the params file says
    ]  # fmt: skip


def node_outputs(weights: str | None) -> list[str]:
    """The node's output topics for this checkpoint (segmentation and overlay need its segmentation head)."""
    outputs = [f"/{NODE_NAME}/fused/image"]
    if weights:
        from ssvif_ros.checkpoint import read_sidecar

        if read_sidecar(weights).get("seg_head"):
            outputs += [f"/{NODE_NAME}/fused/segmentation", f"/{NODE_NAME}/fused/overlay"]
    return outputs


def run_live(
    args: argparse.Namespace, bag: Path, info: dict[str, Any], weights: str | None, procs: Processes
) -> dict[str, Any]:
    """Node + recorder + player; returns the play summary. Leaves ``OUT/output_bag``."""
    out = args.out
    height, width = info["sizes"][args.visible_topic]
    th_height, th_width = info["sizes"][args.thermal_topic]
    played_frames = info["counts"][args.visible_topic]
    node_args = ["--ros-args", "--params-file", str(args.params_file), "-r", f"__node:={NODE_NAME}"]
    node_args += input_remaps(info["recorded"], args.visible_topic, args.thermal_topic)
    node_args += [
        "-p", f"device:={args.device}",
        "-p", f"torch_threads:={args.threads}",
        "-p", "qos.reliability:=reliable",
        "-p", f"warmup.visible_size:=[{height}, {width}]",
        "-p", f"warmup.thermal_size:=[{th_height}, {th_width}]",
        "-p", f"diagnostics.window:={max(300, played_frames + 10)}",
    ]  # fmt: skip
    node_args += ["-p", f"weights:={weights}"] if weights else ["-p", "allow_untrained:=true"]
    outputs = node_outputs(weights)
    output_bag = out / "output_bag"
    ready = procs.log_dir / "record.ready"
    ready.unlink(missing_ok=True)

    started = time.monotonic()
    _say(f"live: starting {NODE_NAME} ({Path(weights).name if weights else 'random-init lightunet'})")
    procs.start("node", "ssvif_ros.node.fuse_node", node_args)
    procs.start(
        "record",
        "ssvif_ros.tools.record",
        [str(output_bag), *outputs, "/diagnostics", "--overwrite", "--ready-file", str(ready)],
    )
    _wait(
        ready.exists, 180, "the node to start and ssvif-record to match its outputs", procs, "node", "record"
    )
    _say(f"live: node ready, recorder matched after {time.monotonic() - started:.1f} s; playing {bag}")
    summary_path = procs.log_dir / "play.json"
    play = procs.start(
        "play",
        "ssvif_ros.tools.play",
        [
            str(bag),
            "--topics",
            info["recorded"][args.visible_topic][0],  # as recorded: NAME/compressed for compressed inputs
            info["recorded"][args.thermal_topic][0],
            "--summary",
            str(summary_path),
            "--wait-subscribers",
            "60",
        ],
    )
    deadline = time.monotonic() + 60 + info["duration_s"] * 2
    while play.poll() is None:
        procs.check_alive("node", "record")
        if time.monotonic() > deadline:
            raise DemoError(f"ssvif-play did not finish in time (see {procs.log_dir / 'play.log'})")
        time.sleep(0.2)
    procs.check_alive("node", "record")
    if play.returncode != 0 or not summary_path.is_file():
        raise DemoError(f"ssvif-play failed ({play.returncode}):\n{procs.log_tail('play')}")
    procs.running.pop("play")
    time.sleep(2.5)  # the last frames reach the recorder, and a /diagnostics report covers them
    code = procs.stop("record")
    if code != 0:
        raise DemoError(f"ssvif-record exited with {code}:\n{procs.log_tail('record')}")
    procs.stop("node")
    _say(f"live: done in {time.monotonic() - started:.1f} s; outputs in {output_bag}")
    return json.loads(summary_path.read_text())


def analyse_live(
    output_bag: Path,
    args: argparse.Namespace,
    info: dict[str, Any],
    play: dict[str, Any],
    weights: str | None,
) -> dict[str, Any]:
    """Frames, latency and a live = offline check from the recorded outputs (see the module docstring);
    ``info`` is :func:`inspect_input`'s."""
    from ssvif_ros.fusion.pairing import create_sync
    from ssvif_ros.io.bags import open_reader, stamp_ns
    from ssvif_ros.io.compressed import INPUT_DECODERS
    from ssvif_ros.io.image_msg import to_rgb8
    from ssvif_ros.node.diagnostics import values_from_status
    from ssvif_ros.tools.play import PlaySchedule

    fused_topic = f"/{NODE_NAME}/fused/image"
    overlay_topic = f"/{NODE_NAME}/fused/overlay"
    fused: dict[int, dict[str, Any]] = {}  # restamped stamp → arrival, image, overlay
    diag: dict[str, str] = {}
    with open_reader(output_bag) as bag:
        topics = [t for t in (fused_topic, overlay_topic, "/diagnostics") if t in bag.topics()]
        for topic, _, log_ns, msg in bag.messages(topics):
            if topic == "/diagnostics":
                for status in msg.status:
                    if status.name == f"{NODE_NAME}: fusion":
                        diag = values_from_status(status.values)
                continue
            entry = fused.setdefault(stamp_ns(msg), {"arrival_ns": log_ns})
            entry["overlay" if topic == overlay_topic else "image"] = to_rgb8(msg, topic)
    mapping = play["stamp_mapping"]
    schedule = PlaySchedule(0, 0, mapping["loop_period_ns"], mapping["rate"])
    by_original = {
        schedule.original_stamp_ns(s, mapping["first_stamp_ns"], mapping["wall_start_ns"]): s
        for s, e in fused.items()
        if "image" in e
    }
    e2e_ms = [(e["arrival_ns"] - s) / 1e6 for s, e in fused.items() if "image" in e]

    # Every live frame against the same pipeline run offline: the node's parameters, its thermal-gain
    # history (smoothed over the pairs the node fused, in order), the same engine: equal pixels expected.
    rows: list[list[Image.Image]] = []
    check = {"frames": 0, "differing": 0, "max_abs_diff": None}
    processor = _offline_pipeline(weights, args)
    wanted = _spread(sorted(by_original), 3)
    recorded = info["recorded"]
    (vis_name, vis_type), (th_name, th_type) = (recorded[args.visible_topic], recorded[args.thermal_topic])
    decode_visible, decode_thermal = INPUT_DECODERS[vis_type][0], INPUT_DECODERS[th_type][1]
    with open_reader(args.input_bag) as bag:
        sync = create_sync("approximate", 10, 0.05)
        for topic, _, _, msg in bag.messages([vis_name, th_name]):
            index = 0 if topic == vis_name else 1
            for pair in sync.add(index, stamp_ns(msg), msg):
                original = pair.stamps_ns[0]
                if original not in by_original:
                    continue  # skipped live (model busy): it never reached the node's thermal gain either
                vis = decode_visible(pair.items[0], vis_name)
                out = processor.process(vis, decode_thermal(pair.items[1], th_name), want_labels=False)
                live = fused[by_original[original]]
                diff = int(np.abs(out.result.image.astype(np.int16) - live["image"].astype(np.int16)).max())
                check["frames"] += 1
                check["differing"] += int(diff > 0)
                check["max_abs_diff"] = max(check["max_abs_diff"] or 0, diff)
                if original in wanted:
                    rows.append(_live_row(vis, out.thermal_u8, live))
    sheet = None
    if rows:
        sheet = args.out / "live_frames.png"
        contact_sheet(rows, scale=min(1.0, 320 / rows[0][0].width)).save(sheet)

    def ms(key: str) -> float | None:
        text = diag.get(key, "n/a")
        return None if text == "n/a" else float(text)

    return {
        "played_visible": play["published"].get(recorded[args.visible_topic][0], 0),
        "fused_frames": len(by_original),
        "node": {
            "published": int(diag.get("published", "0")),
            "pairs": int(diag.get("pairs", "0")),
            "skipped_model_busy": int(diag.get("skipped (model busy)", "0")),
            "unmatched_visible": int(diag.get("unmatched visible", "0")),
            "passthrough_frames": int(diag.get("passthrough frames", "0")),
            "latency_ms": {"p50": ms("latency p50 (ms)"), "p95": ms("latency p95 (ms)")},
            "inference_ms": {"p50": ms("inference p50 (ms)"), "p95": ms("inference p95 (ms)")},
            "device": diag.get("device"),
        },
        "e2e_ms": {
            "p50": float(np.percentile(e2e_ms, 50)) if e2e_ms else None,
            "p95": float(np.percentile(e2e_ms, 95)) if e2e_ms else None,
        },
        "live_vs_offline": check,
        "live_frames_png": str(sheet) if sheet else None,
        "play_late_max_ms": play.get("late_max_ms"),
    }


def _offline_config(params_file: Path) -> Any:
    """The node's configuration from the params file (as /fuse_node reads it); DemoError if it cannot work."""
    from ssvif_ros.node.params import ConfigError, parse_config, read_params_file

    try:
        return parse_config(read_params_file(params_file), defaults=True)
    except ConfigError as err:
        raise DemoError(str(err)) from err


def _offline_pipeline(weights: str | None, args: argparse.Namespace) -> Any:
    """The node's per-pair pipeline as the demo configured it (--params-file; the demo's overrides do not
    touch gain or registration), with the node's model: the checkpoint or the seeded random lightunet."""
    from ssvif_ros.fusion.fusers import open_fuser
    from ssvif_ros.fusion.pipeline import PairProcessor

    cfg = _offline_config(args.params_file)
    engine = open_fuser(
        weights or "lightunet",
        allow_untrained=not weights,
        device=args.device,
        backend=cfg.backend,
        precision=cfg.precision,
    ).fuser
    return PairProcessor(engine, cfg.thermal_converter(), cfg.homography, cfg.max_aspect_mismatch)


def _live_row(vis: np.ndarray, thermal_u8: np.ndarray, live: dict[str, Any]) -> list[Image.Image]:
    row = [labelled(vis, "visible"), labelled(thermal_u8, "thermal (registered)")]
    row.append(labelled(live["image"], "live fused"))
    if "overlay" in live:
        row.append(labelled(live["overlay"], "live overlay"))
    return [tile.resize(row[0].size) for tile in row]


def _spread(values: list[int], count: int) -> set[int]:
    """``count`` values spread evenly over ``values`` (all of them when fewer)."""
    if len(values) <= count:
        return set(values)
    return {values[round(i * (len(values) - 1) / (count - 1))] for i in range(count)}


def run_replay(
    args: argparse.Namespace, bag: Path, weights: str | None, frames: int, procs: Processes
) -> dict:
    """``ssvif-replay`` of the input bag: the model and the Laplacian baseline, metrics on ≤ 30 frames."""
    report = args.out / "report"
    shutil.rmtree(report, ignore_errors=True)
    every = max(1, math.ceil(frames / 30))
    replay_args = [
        str(bag), "--out", str(report),
        "--compare", weights or "lightunet", "laplacian",
        "--visible-topic", args.visible_topic,
        "--thermal-topic", args.thermal_topic,
        "--metrics-every", str(every),
        "--no-output-bag", "--no-progress",
        "--device", args.device,
        "--torch-threads", str(args.threads),
    ]  # fmt: skip
    replay_args += ["--params-file", str(args.params_file)]
    notes = bag.parent / NOTES_FILE
    if notes.is_file():  # a generated bag: metrics.png shaded by night / fog / day
        replay_args += ["--frame-notes", str(notes)]
    started = time.monotonic()
    _say(
        f"offline: ssvif-replay of the input bag (model + laplacian baseline, metrics every {every} frame(s))"
    )
    process = procs.start("replay", "ssvif_ros.tools.replay", replay_args)
    code = process.wait(timeout=900)
    procs.running.pop("replay")
    if code != 0 or not (report / "summary.json").is_file():
        raise DemoError(f"ssvif-replay failed ({code}):\n{procs.log_tail('replay')}")
    _say(f"offline: done in {time.monotonic() - started:.1f} s")
    return json.loads((report / "summary.json").read_text())


# --- summary ---------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _live_offline_verdict(check: dict[str, Any]) -> str:
    """One line: did the node give what the same pipeline gives offline, and what a difference means."""
    frames, differing = check["frames"], check["differing"]
    if differing == 0:
        return f"identical on all {frames} fused frame(s) (same engine, parameters and thermal-gain history)"
    return (
        f"DIFFERENT on {differing} of {frames} frame(s), up to {check['max_abs_diff']} grey levels: expected "
        "identical (same engine, parameters and thermal-gain history); a node started with other "
        "parameters than --params-file, or a bag whose thermal frames arrive out of order, explains it, "
        "else report it (OUT/live_frames.png)"
    )


def print_summary(
    args: argparse.Namespace, live: dict, offline: dict, model_note: str, wall_s: float
) -> None:
    node = live["node"]
    lat, inf, e2e = node["latency_ms"], node["inference_ms"], live["e2e_ms"]
    check = live["live_vs_offline"]
    print()
    print(f"ssvif_ros demo ({wall_s:.0f} s): {args.source_note}")
    print(f"model: {model_note}")
    print(
        f"live  (ssvif-play → {NODE_NAME} → ssvif-record on loopback, ROS_DOMAIN_ID "
        f"{os.environ.get('ROS_DOMAIN_ID')}, {node['device']}):"
    )
    print(
        f"  frames fused live   {live['fused_frames']} of {live['played_visible']} played "
        f"({node['skipped_model_busy']} skipped while the model was busy, "
        f"{node['unmatched_visible']} unmatched, {node['passthrough_frames']} passthrough)"
    )
    print(
        f"  node latency        p50 {_fmt(lat['p50'])} ms, p95 {_fmt(lat['p95'])} ms (stamp → the node's "
        f"publish() of the fused image returned; inference p50 {_fmt(inf['p50'])} ms)"
    )
    print(
        f"  end to end          p50 {_fmt(e2e['p50'])} ms, p95 {_fmt(e2e['p95'])} ms (stamp → received by "
        "the recorder; can be a little below the node's: shared memory delivers before publish() returns)"
    )
    if check["frames"]:
        print(f"  live vs offline     {_live_offline_verdict(check)}")
    pairs = offline["pairing"]["fused_pairs"]
    print(f"offline (ssvif-replay of the input bag, {pairs} pairs; metric means):")
    print(f"  {'':<24}" + "".join(f"{m:>8}" for m in SHOWN_METRICS) + f"{'mIoU':>8}{'ms':>8}")
    for m in offline["models"]:
        mean = m["metrics_mean"]
        values = "".join(f"{_fmt(mean.get(k), 3):>8}" for k in SHOWN_METRICS)
        miou = _fmt(m["miou"], 3) if m.get("miou") is not None else "-"
        print(f"  {m['name'][:24]:<24}{values}{miou:>8}{_fmt(m['inference_ms']['p50']):>8}")
    for m in offline["models"]:
        if m.get("miou") is None and m.get("miou_note"):
            print(f"  no mIoU for {m['name']}: {m['miou_note']}")
    report = args.out / "report"
    print("files:")
    print(f"  report          {report / 'report.md'}")
    print(f"  contact sheet   {report / 'contact_sheet.png'}")
    if live["live_frames_png"]:
        print(f"  live frames     {live['live_frames_png']}")
    print(f"  output bag      {args.out / 'output_bag'}  (fused topics + /diagnostics, mcap)")
    print(f"  input bag       {args.input_bag}")
    print(f"  logs, summary   {args.out / 'logs'}/, {args.out / 'summary.json'}")


# --- main ------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ssvif-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    p.add_argument("--bag", type=Path, default=None, help="your rosbag2 bag (default: generated scenes)")
    p.add_argument("--visible-topic", default=DEFAULT_TOPICS[0])
    p.add_argument("--thermal-topic", default=DEFAULT_TOPICS[1])
    p.add_argument("--frames", type=int, default=60, help="generated scenes (default 60)")
    p.add_argument("--size", type=size_arg(32), default=(640, 480), help="WIDTHxHEIGHT of generated scenes")
    p.add_argument("--rate", type=float, default=10.0, help="frame rate of generated scenes, Hz (default 10)")
    p.add_argument("--seed", type=int, default=7, help="seed of the generated scenes")
    p.add_argument("--weights", default=None, help="checkpoint (default: the shipped model)")
    p.add_argument(
        "--params-file",
        type=Path,
        default=REPO / "config" / "fuse.yaml",
        help="the node's parameters, e.g. your calibrated copy of config/fuse.yaml (default: that file)",
    )
    p.add_argument("--device", default="cpu", help="node and replay device: cpu | cuda[:N] | auto")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads of the node and the replay (0: torch default)"
    )
    p.add_argument("--transport", choices=("shm", "default"), default="shm", help="Fast DDS transport")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.frames < 1:
        raise SystemExit("ssvif-demo: --frames must be >= 1")
    if not args.params_file.is_file():
        raise SystemExit(f"ssvif-demo: --params-file {args.params_file} does not exist")
    try:  # checked before anything starts: the offline half reads it after the live run
        _offline_config(args.params_file)
    except DemoError as err:
        raise SystemExit(f"ssvif-demo: {err}") from err
    # the children run in the repository root: every path they are given is absolute
    args.params_file, args.out = args.params_file.resolve(), args.out.resolve()
    args.bag = args.bag.resolve() if args.bag is not None else None
    started = time.monotonic()
    # Network safety for every child: loopback only, a domain of this run (the Makefile sets both).
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    args.out.mkdir(parents=True, exist_ok=True)
    log_dir = args.out / "logs"
    log_dir.mkdir(exist_ok=True)
    if args.transport == "shm":
        from ssvif_ros.tools.dds import use_shm_transport

        use_shm_transport(log_dir)

    from ssvif_ros.fusion.engine import default_weights

    if args.threads > 0:  # the live-vs-offline check fuses a few frames here
        import torch

        torch.set_num_threads(args.threads)

    weights = args.weights or (str(default_weights()) if default_weights() else None)
    if weights:
        model_note = f"{weights}"
    else:
        model_note = "RANDOM-INIT lightunet: NOT a meaningful fusion (no --weights given and none ships yet)"
        print(
            "ssvif-demo: no trained model found (ssvif_ros/weights/lightunet_ssvif.safetensors is missing "
            "and no --weights given): running the pipeline with a RANDOM-INIT lightunet so every step still "
            "runs; its images are not a meaningful fusion. Pass --weights PATH (make demo WEIGHTS=PATH).",
            file=sys.stderr,
        )

    procs = Processes(log_dir)
    try:
        if args.bag is None:
            args.input_bag = prepare_synthetic_bag(
                args.out / "input", args.frames, args.size, args.rate, args.seed
            )
            args.source_note = (
                f"{args.frames} generated {'/'.join(CONDITIONS)} road scenes, {args.size[0]}x{args.size[1]} "
                f"at {args.rate:g} Hz"
            )
        else:
            args.input_bag = args.bag
            args.source_note = f"{args.bag} ({args.visible_topic} + {args.thermal_topic})"
        info = inspect_input(args.input_bag, args.visible_topic, args.thermal_topic)
        play = run_live(args, args.input_bag, info, weights, procs)
        live = analyse_live(args.out / "output_bag", args, info, play, weights)
        offline = run_replay(args, args.input_bag, weights, info["counts"][args.visible_topic], procs)
    except DemoError as err:
        print(f"ssvif-demo: {err}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
    summary = {"input_bag": str(args.input_bag), "model": model_note, "live": live, "offline": offline}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    print_summary(args, live, offline, model_note, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
