"""Iterate a batch generator with worker processes outside ``fit`` (the alternating loop).

Batches come back in order; at most ``max_queue_size`` are in flight. As with Keras'
enqueuer, the pool is created per epoch (after the generator's epoch is set) and forks,
so workers see the generator's current state; an exception raised in a worker (a bad
image) is re-raised here unchanged.
"""

from __future__ import annotations

import collections
import multiprocessing
from multiprocessing.pool import ThreadPool
from typing import Iterator


def iterate_batches(generator, workers: int = 0, use_multiprocessing: bool = True, max_queue_size: int = 10) -> Iterator:
    count = len(generator)
    if workers <= 0:
        for i in range(count):
            yield generator[i]
        return
    pool = multiprocessing.get_context("fork").Pool(workers) if use_multiprocessing else ThreadPool(workers)
    try:
        pending = collections.deque()
        submitted = 0
        while submitted < count or pending:
            while submitted < count and len(pending) < max(1, max_queue_size):
                pending.append(pool.apply_async(generator.__getitem__, (submitted,)))
                submitted += 1
            yield pending.popleft().get()
    finally:
        pool.terminate()
        pool.join()
