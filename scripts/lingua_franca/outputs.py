"""Where a job writes, and what its writers share (:func:`json_number`).

A writer (``metrics.write_outputs``, ``ablation.write_outputs``) takes a dataclass of
explicit file paths, one field per named output of the rule that runs it, named as
there: the rule's outputs are the one place the workflow spells a results path.
:meth:`OutputFiles.of` builds one from the rule's outputs; :meth:`OutputFiles.in_folder`
names every file in one folder, for use outside the workflow (tests, benchmarks).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class OutputFiles:
    """Base of the dataclasses of a writer's files: each field a path, with the file's
    suffix in its metadata (``field(metadata={"suffix": ".json"})``)."""

    @classmethod
    def of(cls, outputs: Mapping[str, str | os.PathLike]):
        """The files named in ``outputs`` (a rule's named outputs: name -> path),
        exactly this class's fields: a rule and its writer that disagree on a name
        stop the job before anything is computed."""
        expected, given = [f.name for f in fields(cls)], list(outputs)
        if sorted(expected) != sorted(given):
            missing = [n for n in expected if n not in given]
            extra = [n for n in given if n not in expected]
            raise ValueError(
                f"{cls.__name__}: outputs {given} do not match the files it writes "
                f"{expected} (missing {missing}, unknown {extra})"
            )
        return cls(**{name: Path(outputs[name]) for name in expected})

    @classmethod
    def in_folder(cls, folder: str | os.PathLike):
        """Every file in ``folder``, named after its field (``<field><suffix>``)."""
        folder = Path(folder)
        return cls(**{f.name: folder / f"{f.name}{f.metadata['suffix']}" for f in fields(cls)})

    def paths(self) -> dict[str, Path]:
        """Field name -> path, in field order."""
        return {f.name: Path(getattr(self, f.name)) for f in fields(self)}

    def make_folders(self) -> None:
        for path in self.paths().values():
            path.parent.mkdir(parents=True, exist_ok=True)


def json_number(x: float | None) -> float | None:
    """``x`` as a JSON number: a plain float, or None (null) for a missing or
    non-finite value, which JSON cannot hold and a reader must not take for one."""
    return None if x is None or not math.isfinite(x) else float(x)
