"""The batch generator: a ``keras.utils.PyDataset`` with workers and multiprocessing.

Index-based, so any number of worker processes produce exactly the batches a single
process would:

- the order of an epoch is a permutation seeded by ``(seed, epoch)``; every sample is
  in exactly one batch of the epoch;
- each sample's augmentation is seeded by ``(seed, epoch, sample index)``;
- when the data size is not a multiple of the batch size, the *first* batch of the epoch
  holds the remainder (Keras fixes the batch dimension of its input signature from the
  first two batches, so a short first batch keeps it dynamic);
- with ``steps_per_epoch``, epochs are fixed-length windows on an endless stream of
  seeded permutations: every sample appears exactly once per pass over the data;
- under ``tf.distribute`` (``num_shards`` workers, each with ``local_replicas`` replicas,
  ``R`` replicas in all), ``batch_size`` is the *global* batch of one optimizer step: each
  global batch is split into ``R`` contiguous replica batches (``np.array_split``: sizes
  differ by at most one) and worker ``i`` yields the replica batches ``i*k .. i*k + k - 1``
  of every step, one item per replica, in replica order (``len`` is steps x ``k``). The
  union over all workers is exactly the single-process batch, so every image is seen once
  per epoch across workers; a remainder smaller than ``R`` joins the first full batch, so
  no replica gets an empty batch.

The model family supplies ``encoder(samples) -> (inputs, targets)``. With a ``composer``
(:class:`~detectlab.data.mosaic.MosaicAugment`), each sample is first composed (mosaic,
MixUp, random affine; the other images of a mosaic are drawn with the sample's own seed, so
each image is still the anchor of exactly one sample per epoch) and ``pipeline`` adds flips
and colour; mosaic and MixUp stop from epoch ``mosaic_epochs`` on (``augment.close_mosaic_epochs``).

Multi-scale training (``scales``: input size -> ``(pipeline, encoder)``): every ``scale_every``
batches the input size is drawn (seeded by seed, epoch and group) from the sizes. Batch 0 is
a group of its own and batch 1 always takes another size than batch 0: Keras fixes its input
signature from the first two batches, and two sizes there leave the image dimensions open.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from detectlab.data.mosaic import Instances, MosaicAugment
from detectlab.data.records import DetectionDataset
from detectlab.data.transforms import Sample, apply_pipeline


def epoch_permutation(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def replica_share(size: int, replicas: int, replica: int) -> tuple[int, int]:
    """``(offset, count)`` of replica ``replica``'s part of a batch of ``size`` split into
    ``replicas`` contiguous parts as ``np.array_split`` does (the first ``size % replicas``
    parts have one more)."""
    q, r = divmod(size, replicas)
    return replica * q + min(replica, r), q + (replica < r)


class DetectionBatches(keras.utils.PyDataset):
    """Batches of ``encoder([Sample, ...])`` over a :class:`DetectionDataset`."""

    def __init__(
        self,
        dataset: DetectionDataset,
        pipeline,
        encoder: Callable[[list[Sample]], tuple],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        steps_per_epoch: int | None = None,
        with_masks: bool = False,
        num_shards: int = 1,
        shard_index: int = 0,
        local_replicas: int = 1,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
        composer: MosaicAugment | None = None,
        image_size: int | None = None,
        mosaic_epochs: int | None = None,
        scales: dict | None = None,
        scale_every: int = 10,
    ):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
        if len(dataset) == 0:
            raise ValueError("the dataset has no images")
        self.dataset = dataset
        self.pipeline = pipeline
        self.encoder = encoder
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.steps_per_epoch = steps_per_epoch
        self.with_masks = with_masks
        self.num_shards = int(num_shards)
        self.shard_index = int(shard_index)
        self.local_replicas = int(local_replicas)
        self.composer, self.image_size, self.mosaic_epochs = composer, image_size, mosaic_epochs
        if composer is not None and image_size is None:
            raise ValueError("a composer needs the image_size it composes at")
        self.scales, self.scale_every = scales, max(1, int(scale_every))
        if scales is not None and len(scales) < 2:
            raise ValueError("multi-scale training needs at least two sizes")
        self.epoch = 0
        if self.batch_size < self.replicas:
            raise ValueError(f"a global batch of {batch_size} images cannot feed {self.replicas} replicas")
        if self.steps() == 0:
            raise ValueError(f"{len(dataset)} images give no batch of {batch_size} for {self.replicas} replicas")

    @property
    def replicas(self) -> int:
        """Replicas of the whole cluster (workers x local replicas)."""
        return self.num_shards * self.local_replicas

    def __len__(self) -> int:
        return self.steps() * self.local_replicas

    def steps(self) -> int:
        """Optimizer steps (global batches) per epoch."""
        if self.steps_per_epoch:
            return int(self.steps_per_epoch)
        n, b = len(self.dataset), self.batch_size
        remainder = n % b
        return n // b + (remainder >= self.replicas)  # a smaller remainder joins the first batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def batch_indices(self, index: int) -> list[tuple[int, int]]:
        """``(pass, sample index)`` pairs of item ``index`` (this worker's replica
        ``index % local_replicas`` of step ``index // local_replicas``) of the current epoch."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range (epoch has {len(self)})")
        step, local = divmod(index, self.local_replicas)
        start, stop = self._global_batch(step)
        offset, size = replica_share(stop - start, self.replicas, self.shard_index * self.local_replicas + local)
        positions = np.arange(start + offset, start + offset + size)
        n = len(self.dataset)
        if self.steps_per_epoch:
            passes = positions // n
            orders = {int(p): epoch_permutation(n, self.seed, int(p), self.shuffle) for p in np.unique(passes)}
            return [(int(p), int(orders[int(p)][pos % n])) for p, pos in zip(passes, positions)]
        order = epoch_permutation(n, self.seed, self.epoch, self.shuffle)
        return [(self.epoch, int(i)) for i in order[positions]]

    def _global_batch(self, step: int) -> tuple[int, int]:
        """Positions ``[start, stop)`` of global batch ``step``: in the stream of passes with
        ``steps_per_epoch``, else in this epoch's order (the first batch holds the remainder)."""
        b = self.batch_size
        if self.steps_per_epoch:
            start = (self.epoch * self.steps_per_epoch + step) * b
            return start, start + b
        first = len(self.dataset) - (self.steps() - 1) * b
        if step == 0:
            return 0, first
        return first + (step - 1) * b, first + step * b

    def size_of(self, index: int) -> int | None:
        """The input size of item ``index`` under multi-scale training (None without): drawn
        per optimizer step, so every replica of a step gets the same size."""
        if self.scales is None:
            return None
        sizes = sorted(self.scales)

        def draw(group: int, choices: list[int]) -> int:
            rng = np.random.default_rng([self.seed, self.epoch, group, 0x5CA1E])
            return choices[int(rng.integers(len(choices)))]

        step = index // self.local_replicas
        first = draw(0, sizes)
        if step == 0:
            return first
        group = 1 + (step - 1) // self.scale_every
        return draw(group, [s for s in sizes if s != first] if group == 1 else sizes)

    def load_sample(self, index: int, seed: int | None, size: int | None = None) -> Sample:
        """Sample of record ``index`` augmented with ``seed``, at ``size`` (multi-scale) or the
        generator's own size: the record as stored, or its composite (mosaic / affine), then
        the pipeline."""
        record = self.dataset.records[index]
        pipeline = self.pipeline if size is None else self.scales[size][0]
        if self.composer is None:
            source = self.instances(index)
        else:
            mosaic_on = self.mosaic_epochs is None or self.epoch < self.mosaic_epochs
            source = self.composer(self.instances, index, size or self.image_size, np.random.default_rng(seed), mosaic_on)
        image, boxes, kept, masks, transform = apply_pipeline(pipeline, source.image, source.boxes, source.masks, seed)
        return Sample(
            image=image,
            boxes=boxes,
            class_ids=source.class_ids[kept],
            iscrowd=source.iscrowd[kept],
            masks=masks,
            image_id=record.image_id,
            # a composite has no map back to the record's pixels
            transform=transform if self.composer is None else (1.0, 1.0, 0.0, 0.0),
            original_size=(record.height, record.width) if self.composer is None else source.image.shape[:2],
            seed=seed,
            dropped=source.dropped,
        )

    def instances(self, index: int) -> Instances:
        """Record ``index`` as stored: image, boxes, classes, crowd flags (and masks)."""
        record = self.dataset.records[index]
        masks = self.dataset.load_masks(index) if self.with_masks else None
        return Instances(self.dataset.load_image(index), record.boxes, record.class_ids, record.iscrowd, masks)

    def samples(self, index: int) -> list[Sample]:
        size = self.size_of(index)
        return [self.load_sample(i, sample_seed(self.seed, p, i), size) for p, i in self.batch_indices(index)]

    def __getitem__(self, index: int):
        size = self.size_of(index)
        encoder = self.encoder if size is None else self.scales[size][1]
        return encoder(self.samples(index))
