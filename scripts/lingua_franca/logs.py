"""Send a job's output to its Snakemake log file (rule scripts use this)."""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def log_to(path: str | Path | None) -> Iterator[None]:
    """Redirect stdout, stderr (progress bars included) and ``logging`` to ``path``.

    A failure's traceback is written there too before it propagates, so the log
    says what went wrong even when Snakemake only reports the exit status.
    """
    if not path:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", buffering=1) as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
                try:
                    yield
                except BaseException:
                    traceback.print_exc(file=fh)
                    raise
        finally:
            root.removeHandler(handler)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
