"""Outputs written under a temporary name beside them and renamed once complete; which
writer of an output is the current one; and the removal of what a killed writer left.

A job killed outright (SIGKILL, as the out-of-memory killer sends) runs no clean-up of
its own, so its temporary stays. And a job can outlive the Snakemake that started it
(Snakemake killed with SIGKILL leaves its jobs running), so two writers of one output
can run at once: the orphan and the job of the rerun. Hence:

- every temporary is named ``.<output>.tmp-<pid>@<host>`` after the process writing
  it, and is removed by a later writer only once that process is gone: on the same
  host when no process has that id; on another host (a cluster node; its processes
  cannot be seen from here) when the temporary has not been written to for
  ``STALE_AFTER`` seconds (a writer refreshes its temporary's time while it runs,
  :class:`Heartbeat`);
- a writer claims its output when it starts (:class:`Claim`: a small file beside the
  output, ``.<output>.writer``, that the next writer replaces), and renames its
  temporary into place only while the claim is still its own: an orphan's work never
  replaces the output of the run that took over.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Self

log = logging.getLogger(__name__)

STALE_AFTER = 3600.0  # seconds without a write after which another host's temporary is stale
HEARTBEAT = 60.0  # seconds between a running writer's refreshes of its temporary's time
KINDS = ("tmp", "old", "damaged")  # what may lie beside an output: see sibling()
WRITER = re.compile(r"\.(?:tmp|old|damaged)-(\d+)(?:@([^@]+))?$")  # pid and host of a sibling


def _host() -> str:
    return socket.gethostname()


def sibling(path: str | os.PathLike, kind: str = "tmp") -> Path:
    """``.<name>.<kind>-<pid>@<host>`` beside ``path``: hidden, never taken for the
    output, and named after this process. ``kind``: ``tmp`` (being written), ``old``
    (the output a rename is replacing), ``damaged`` (set aside by a reader)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}@{_host()}")


def temporary_path(path: str | os.PathLike) -> Path:
    """Where this process writes ``path`` before renaming it into place."""
    return sibling(path, "tmp")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OSError:
        return False
    return True


def writer_gone(leftover: Path, now: float | None = None) -> bool:
    """Whether the process that named ``leftover`` (see :func:`sibling`) is gone: on
    this host, no process has its id; on another host, or with no host in the name
    (named before hosts were), nothing was written to it for ``STALE_AFTER`` s."""
    named = WRITER.search(leftover.name)
    if named and named.group(2) == _host():
        return not _process_alive(int(named.group(1)))
    try:
        written = leftover.lstat().st_mtime
    except FileNotFoundError:
        return False  # removed meanwhile
    return (now if now is not None else time.time()) - written > STALE_AFTER


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove what writers that are gone left beside ``path`` (files and folders named
    as :func:`sibling` names them), and every damaged copy set aside (nobody writes
    to one); keep what running writers are writing. Return what was removed."""
    path = Path(path)
    removed = []
    for kind in KINDS:
        for leftover in sorted(path.parent.glob(f".{glob.escape(path.name)}.{kind}-*")):
            if kind != "damaged" and not writer_gone(leftover):
                log.info("kept %s: the process writing it is still running", leftover)
                continue
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
            log.info("removed %s, left by an earlier writer or reader", leftover)
            removed.append(leftover)
    return removed


def replace(tmp: Path, path: Path) -> None:
    """Put ``tmp`` (a file or folder) in place of ``path``; an existing ``path`` is
    moved aside first (a folder cannot be renamed over one) and then removed."""
    old = sibling(path, "old")
    had = path.exists() or path.is_symlink()
    if had:
        os.replace(path, old)
    os.replace(tmp, path)
    if had:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def set_aside(path: str | os.PathLike) -> Path:
    """Move ``path`` to ``.<name>.damaged-<pid>@<host>`` beside it, so that it is no
    longer taken for the output (the next writer of the output removes it)."""
    path = Path(path)
    aside = sibling(path, "damaged")
    os.replace(path, aside)
    return aside


class Claim:
    """This process's claim to be the current writer of ``path``: ``.<name>.writer``
    beside it says which writer started last. A newer writer replaces it; a writer
    puts its output in place only while :meth:`check` finds its own claim."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.file = self.path.with_name(f".{self.path.name}.writer")
        self.record = {
            "token": uuid.uuid4().hex,
            "pid": os.getpid(),
            "host": _host(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        }

    def take(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = sibling(self.file)
        tmp.write_text(json.dumps(self.record), encoding="utf-8")
        os.replace(tmp, self.file)

    def current(self) -> dict | None:
        """The claim on file (None: none, or unreadable)."""
        try:
            return json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def check(self) -> None:
        """Raise :class:`TakenOver` unless the claim on file is still this one."""
        current = self.current()
        if current is not None and current.get("token") == self.record["token"]:
            return
        if current is None:
            newer = "another writer (since finished)"
        else:
            newer = (
                f"another writer (process {current.get('pid')} on {current.get('host')},"
                f" started {current.get('started')})"
            )
        raise TakenOver(
            f"{self.path}: {newer} took over this output after this writer (process"
            f" {self.record['pid']} on {self.record['host']}, started"
            f" {self.record['started']}) began, as a rerun of the job does: this writer's"
            f" work is discarded and {self.path} is left as the newer writer makes it"
        )

    def release(self) -> None:
        """Remove the claim if it is still this writer's."""
        current = self.current()
        if current is not None and current.get("token") == self.record["token"]:
            self.file.unlink(missing_ok=True)


class TakenOver(RuntimeError):
    """A newer writer of the same output started: this one must not finish."""


class Heartbeat:
    """Refresh ``path``'s modification time every ``HEARTBEAT`` s while it runs, so that
    writers on other hosts see that its writer is alive (:func:`writer_gone`)."""

    def __init__(self, path: Path, every: float = HEARTBEAT):
        self.path, self.every = Path(path), every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="heartbeat")

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.beat()

    def beat(self) -> None:
        try:
            os.utime(self.path)
        except OSError:
            pass  # removed meanwhile: nothing to keep alive

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
