"""The per-pair pipeline the node and the replay share: the aspect check is inside it, with one reason."""

from __future__ import annotations

import numpy as np
import pytest

from ssvif_ros.fusion.fusers import BaselineFuser
from ssvif_ros.fusion.pipeline import PairDropped, PairProcessor
from ssvif_ros.fusion.thermal import ThermalToU8


def test_a_pair_from_another_camera_is_dropped_with_its_reason() -> None:
    processor = PairProcessor(BaselineFuser("average"), ThermalToU8(), max_aspect_mismatch=0.1)
    vis = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(
        PairDropped, match=r"thermal 40×40 \(aspect 1\.00\) does not match visible 64×48"
    ) as e:
        processor.process(vis, np.zeros((40, 40), np.uint16), want_labels=False)
    assert e.value.reason == "aspect"
    out = processor.process(vis, np.full((24, 32), 1000, np.uint16), want_labels=False)  # same aspect
    assert out.thermal_u8.shape == (48, 64) and out.result.image.shape == vis.shape
