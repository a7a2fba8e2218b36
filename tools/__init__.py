"""The command-line tools; installed as ``detectlab.tools`` (see ``detectlab/commands.py``)."""
