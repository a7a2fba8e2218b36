"""``python -m detectlab COMMAND ...``: the same as the ``detectlab`` console script."""

from detectlab.commands import main

main()
