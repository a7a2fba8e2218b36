"""detectlab.data.bounds: pycocotools' compressed RLE read back exactly, and refused when it
does not describe its image (the run lengths reach pycocotools' decoder unchecked otherwise)."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from detectlab.data.bounds import check_rle, clip_polygon, rle_counts
from detectlab.errors import DataError


def test_compressed_rle_runs_rebuild_pycocotools_masks():
    rng = np.random.default_rng(0)
    for k in range(60):
        h, w = rng.integers(1, 90, 2)
        mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        if k % 10 == 0:
            mask[:] = k % 20 == 0  # all background / all foreground
        rle = mask_utils.encode(np.asfortranarray(mask))
        runs = rle_counts(rle["counts"].decode())
        rebuilt = np.repeat(np.arange(len(runs)) % 2, runs).reshape(w, h).T  # column-major, background first
        assert (rebuilt == mask).all() and runs[1::2].sum() == mask_utils.area(rle)
        check_rle({"size": [int(h), int(w)], "counts": rle["counts"].decode()}, int(h), int(w), "m")


@pytest.mark.parametrize("counts", ["PPPP", "0\x00", "0é", "0" + "P" * 8 + "0", "0" * 3071])
def test_strings_that_are_not_an_rle_of_the_image_are_refused(counts):
    with pytest.raises(DataError, match=r"^x.json: seg RLE compressed counts must be whole run lengths >= 0 "
                                        r"adding up to the image's 3072 pixels$"):
        check_rle({"size": [48, 64], "counts": counts}, 48, 64, "x.json: seg")


def test_a_run_past_the_image_is_refused():
    huge = mask_utils.frPyObjects({"size": [48, 64], "counts": [0, 10 ** 9, 5]}, 48, 64)["counts"].decode()
    assert list(rle_counts(huge)) == [0, 10 ** 9, 5]
    with pytest.raises(DataError, match="adding up to the image's 3072 pixels"):
        check_rle({"size": [48, 64], "counts": huge}, 48, 64, "seg")
    with pytest.raises(DataError, match=r"seg must be an RLE of the image's size \[48, 64\], got size \[64, 48\]"):
        check_rle({"size": [64, 48], "counts": [3072]}, 48, 64, "seg")


def test_clip_polygon_keeps_the_part_inside():
    square = np.array([[-10, -10], [10, -10], [10, 10], [-10, 10]], np.float64)
    clipped = clip_polygon(square, 64, 48)
    assert sorted(map(tuple, clipped)) == [(0, 0), (0, 10), (10, 0), (10, 10)]
    assert clip_polygon(square - 100, 64, 48).shape == (0, 2)
