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


def test_workers_and_replicas_split_each_global_batch(shapes_dir):
    """batch_size is the global batch: 2 workers x 2 replicas share every step's 5 images, and
    together they yield exactly what one process yields, every image once per epoch."""
    whole = batches(shapes_dir, seed=4)
    shards = [batches(shapes_dir, seed=4, num_shards=2, shard_index=i, local_replicas=2) for i in range(2)]
    # 48 = 9 x 5 + 3: the remainder 3 < 4 replicas joins the first batch (8 images), 9 steps
    assert [g.steps() for g in shards] == [9, 9] and [len(g) for g in shards] == [18, 18]
    for step in range(9):
        parts = [g.batch_indices(2 * step + local) for g in shards for local in range(2)]
        assert all(len(p) >= 1 for p in parts) and max(map(len, parts)) - min(map(len, parts)) <= 1
        union = [i for p in parts for _, i in p]
        expected = [i for _, i in whole.batch_indices(0)] + [i for _, i in whole.batch_indices(1)] if step == 0 \
            else [i for _, i in whole.batch_indices(step + 1)]
        assert union == expected
    seen = [i for g in shards for b in range(len(g)) for _, i in g.batch_indices(b)]
    assert sorted(seen) == list(range(48))


def test_a_remainder_as_large_as_the_replicas_is_its_own_step(shapes_dir):
    gens = [batches(shapes_dir, seed=1, num_shards=3, shard_index=i) for i in range(3)]  # 48 % 5 = 3 replicas
    assert [len(g) for g in gens] == [10, 10, 10]
    assert [len(g.batch_indices(0)) for g in gens] == [1, 1, 1] and [len(g.batch_indices(1)) for g in gens] == [2, 2, 1]
    assert sorted(i for g in gens for b in range(10) for _, i in g.batch_indices(b)) == list(range(48))


def test_steps_per_epoch_counts_global_steps_across_workers(shapes_dir):
    gens = [batches(shapes_dir, seed=2, steps_per_epoch=4, num_shards=2, shard_index=i) for i in range(2)]
    whole = batches(shapes_dir, seed=2, steps_per_epoch=4)
    for epoch in (0, 3):
        for g in (*gens, whole):
            g.set_epoch(epoch)
        for step in range(4):
            union = [i for g in gens for _, i in g.batch_indices(step)]
            assert union == [i for _, i in whole.batch_indices(step)]


def test_too_few_images_for_the_replicas_is_an_error(shapes_dir):
    with pytest.raises(ValueError, match="cannot feed 8 replicas"):
        batches(shapes_dir, num_shards=4, local_replicas=2)
