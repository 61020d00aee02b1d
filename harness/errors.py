"""The one exception type the command line turns into a one-line message and exit status 2, and what of a
URL may reach a message or a file (``redact``)."""

from __future__ import annotations

import re
import threading


class HarnessError(Exception):
    """Bad input: a study file, a data file, a model name or a results directory.

    The message names the file, key or column and says what was expected; the
    command line prints it on one line and exits with status 2, before anything
    in ``results/`` is touched.
    """

    exit_code = 2


INTERRUPTED = threading.Event()  # set by Ctrl-C (harness.__main__); runs check it at every epoch


def stop_if_interrupted() -> None:
    """Raise KeyboardInterrupt when Ctrl-C came while Python could not raise it where it landed
    (inside a garbage-collection callback, which swallows exceptions)."""
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt


def redact(url: str) -> str:
    """A URL without its ``user:password@``, for every message, log, manifest and report (data sources,
    shared storages): ``https://u:p@host/x`` -> ``https://***@host/x``; anything else unchanged."""
    return re.sub(r"^([A-Za-z][\w+.-]*://)[^/@]*@", r"\1***@", url)
