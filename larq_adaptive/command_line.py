"""The contract every command of the package follows (``train.py``, ``larq-adaptive-export``,
``-plot``, ``-dwr-search``, ``-report``): bad input -> one line ``PROG: error: ...`` on
stderr, exit status 2, no traceback, nothing written."""

import argparse
import os

__all__ = ["Parser", "load_model_argument", "make_parent_folders", "output_path_argument"]


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line on stderr with exit status 2
    (argparse's own also print the usage first)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _first_line(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def load_model_argument(parser, path, option="model"):
    """``lqa.load_model(path, compile=False)``, or a one-line ``parser.error`` for a missing,
    unreadable or foreign file."""
    from larq_adaptive.saving import load_model

    if not os.path.exists(path):
        parser.error(f"{option} file {path!r} does not exist")
    try:
        return load_model(path, compile=False)
    except Exception as error:  # corrupt, truncated or not a Keras model: all one line
        parser.error(f"cannot load {option} {path!r} ({_first_line(error)}); expected a .keras, "
                     ".h5 or SavedModel file saved by larq-adaptive or Keras")


def output_path_argument(parser, path, option="output"):
    """``path`` if a file can be written there (its missing folders can be created: call
    :func:`make_parent_folders` once the other arguments are checked), else a one-line
    ``parser.error``."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        parser.error(f"{option} {path!r} is a directory, not a file name")
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        parser.error(f"{option} folder {folder!r} cannot be created: {existing!r} is a file")
    if not os.access(existing, os.W_OK):
        parser.error(f"{option} folder {existing!r} is not writable")
    return path


def make_parent_folders(path):
    """Create the missing folders of an output file, as ``train.py --output-dir`` does."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
