"""Dataset programs (convert, split, shapes); installed as ``detectlab.datasets`` for the ``detectlab`` command."""
