"""The argument parser of the dataset programs, importable without detectlab (so without
TensorFlow): ``--help`` and flag errors answer at once."""

import argparse
import sys


class ArgumentParser(argparse.ArgumentParser):
    """A bad flag is one line naming it (as ``detectlab.cli.ArgumentParser``)."""

    def __init__(self, *args, **kwargs):
        if sys.argv and sys.argv[0].startswith("detectlab "):  # run as `detectlab COMMAND`: say so in usage
            kwargs["prog"] = sys.argv[0]
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
