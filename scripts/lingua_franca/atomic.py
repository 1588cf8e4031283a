"""Outputs written under a temporary name beside them and renamed once complete, and
the removal of what a killed writer left behind.

A job killed outright (SIGKILL, as the out-of-memory killer sends) runs no clean-up
of its own, so its temporary stays. Snakemake never runs two jobs for the same
output at once, so the next writer of an output removes every temporary of that
output it finds, whichever process left it (a process id says nothing across the
nodes of a cluster).
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


def temporary_path(path: str | os.PathLike) -> Path:
    """``.<name>.tmp-<pid>`` beside ``path``: hidden, and never taken for the output."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove every ``.<name>.tmp-*`` beside ``path`` (files and folders); return them."""
    path = Path(path)
    removed = []
    for tmp in sorted(path.parent.glob(f".{glob.escape(path.name)}.tmp-*")):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        log.info("removed %s, left by an earlier writer that did not finish", tmp)
        removed.append(tmp)
    return removed
