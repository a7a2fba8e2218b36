"""The batch generator through Keras' own PyDataset machinery (real worker processes)."""

import keras
import numpy as np
import pytest

from detectlab.data.coco import load_coco
from detectlab.data.generator import DetectionBatches
from detectlab.data.transforms import build_pipeline
from detectlab.config import AugmentConfig


def ids_encoder(samples):
    ids = np.array([[s.image_id] for s in samples], np.float32)
    return ids, ids


def batches(shapes_dir, **kwargs):
    ds = load_coco(shapes_dir / "instances_train.json")  # 48 images
    return DetectionBatches(ds, build_pipeline(64, AugmentConfig()), ids_encoder, 5, **kwargs)


def epoch_ids(gen):
    """Run one epoch through Keras (``predict`` iterates the PyDataset like ``fit``)."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Identity()])
    return model.predict(gen, verbose=0).reshape(-1).astype(int)


def test_two_processes_yield_every_sample_once_per_epoch(shapes_dir):
    gen = batches(shapes_dir, workers=2, use_multiprocessing=True, seed=3)
    assert len(gen) == 10  # 48 images, batch 5: one batch of 3 first, then nine of 5
    first = epoch_ids(gen)
    gen.on_epoch_end()
    second = epoch_ids(gen)
    for ids in (first, second):
        assert sorted(ids) == list(range(1, 49))
    assert list(first) != list(second)  # reshuffled by (seed, epoch)


def test_same_batches_with_and_without_workers(shapes_dir):
    serial = batches(shapes_dir, seed=1)
    parallel = batches(shapes_dir, seed=1, workers=2, use_multiprocessing=True)
    np.testing.assert_array_equal(epoch_ids(serial), epoch_ids(parallel))


def test_remainder_batch_comes_first_and_augmentation_is_seeded(shapes_dir):
    gen = batches(shapes_dir, seed=0)
    assert len(gen.batch_indices(0)) == 3 and all(len(gen.batch_indices(i)) == 5 for i in range(1, 10))
    a = gen.samples(4)
    b = gen.samples(4)
    for sa, sb in zip(a, b):
        np.testing.assert_array_equal(sa.image, sb.image)
        np.testing.assert_array_equal(sa.boxes, sb.boxes)
    with pytest.raises(IndexError):
        gen.batch_indices(10)


def test_steps_per_epoch_windows_cover_each_pass_exactly_once(shapes_dir):
    gen = batches(shapes_dir, seed=2, steps_per_epoch=4)  # 20 samples per epoch, 48 per pass
    seen = []
    for epoch in range(12):  # 240 samples = 5 passes
        gen.set_epoch(epoch)
        seen += [i for b in range(len(gen)) for _, i in gen.batch_indices(b)]
    passes = np.array(seen).reshape(5, 48)
    for p in passes:
        assert sorted(p) == list(range(48))


def test_shards_split_an_epoch_between_workers(shapes_dir):
    shards = [batches(shapes_dir, seed=4, num_shards=2, shard_index=i) for i in range(2)]
    assert [len(g) for g in shards] == [5, 5]  # 10 batches per epoch, 5 each
    seen = [i for g in shards for b in range(len(g)) for _, i in g.batch_indices(b)]
    whole = batches(shapes_dir, seed=4)
    assert sorted(seen) == sorted(i for b in range(len(whole)) for _, i in whole.batch_indices(b))
    assert len(seen) == len(set(seen)) == 48
