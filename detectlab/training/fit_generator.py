"""``fit_generator``: Keras 2's generator-driven training call, for migrating users.

    from detectlab.training.fit_generator import fit_generator
    fit_generator(model, train_batches, steps_per_epoch=100, epochs=10, workers=4,
                  use_multiprocessing=True, validation_data=val_batches, callbacks=[...])

It is ``model.fit`` underneath. ``workers``, ``use_multiprocessing`` and
``max_queue_size`` are applied to the ``PyDataset`` (where Keras 3 reads them);
``steps_per_epoch`` on a :class:`DetectionBatches` makes epochs fixed windows over its
seeded stream, so no sample is skipped or repeated within a pass; ``class_weight``
(``{class index: weight}``) weights the class loss terms of detectlab models.
"""

from __future__ import annotations

import keras

from detectlab.data.generator import DetectionBatches


def fit_generator(
    model,
    generator,
    steps_per_epoch=None,
    epochs=1,
    verbose=1,
    callbacks=None,
    validation_data=None,
    validation_steps=None,
    validation_freq=1,
    class_weight=None,
    max_queue_size=10,
    workers=1,
    use_multiprocessing=False,
    shuffle=True,
    initial_epoch=0,
):
    for data in (generator, validation_data):
        if isinstance(data, keras.utils.PyDataset):
            data.workers = workers
            data.use_multiprocessing = use_multiprocessing
            data.max_queue_size = max_queue_size
    if isinstance(generator, DetectionBatches):
        generator.steps_per_epoch = steps_per_epoch
        generator.shuffle = shuffle
        generator.set_epoch(initial_epoch)
        steps_per_epoch = None
    if class_weight is not None:
        if not hasattr(model, "set_class_weights"):
            raise ValueError("class_weight needs a detectlab model (per-class weights of its class loss)")
        model.set_class_weights(class_weight)
    return model.fit(
        generator,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        verbose=verbose,
        callbacks=callbacks,
        validation_data=validation_data,
        validation_steps=validation_steps,
        validation_freq=validation_freq,
        initial_epoch=initial_epoch,
    )
