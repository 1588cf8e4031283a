"""Label the language of every text in a file (docs/method.md §11).

    .venv/bin/python scripts/identify_language.py FILE [--column NAME] [--languages en,fr,...]

FILE is a CSV or a JSON-lines file (by its suffix: .csv, .jsonl or .json); the
column defaults to the first of continuation, text, sentence that the file has.
Writes CSV to stdout, one row per input row, in order:
``row,label,probability,second_label`` (``label``: a project language code, another
language's lid.176 code, or ``unknown``; ``second_label``: py3langid restricted to
``--languages``, default the paper's nine). A missing file or column, or a file that
cannot be read, is a one-line error on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

COLUMNS = ("continuation", "text", "sentence")


class InputError(Exception):
    """What is wrong with the command's input, in one line."""


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
        if suffix == ".csv":
            return list(csv.DictReader(io.StringIO(text, newline="")))
        if suffix in (".jsonl", ".json"):
            rows = []
            for number, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise InputError(f"{path}: line {number} is not JSON ({err.msg})") from None
                if not isinstance(row, dict):
                    raise InputError(f"{path}: line {number} is not a JSON object")
                rows.append(row)
            return rows
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except csv.Error as err:
        raise InputError(f"{path}: not a readable CSV ({err})") from None
    raise InputError(f"{path}: unknown file type {suffix!r}; give a .csv or .jsonl file")


def choose_column(rows: list[dict], path: Path, column: str | None) -> str:
    present = list(dict.fromkeys(key for row in rows for key in row))
    if column is not None:
        if column not in present:
            raise InputError(f"{path}: no column {column!r} (columns: {', '.join(present)})")
        return column
    for name in COLUMNS:
        if name in present:
            return name
    raise InputError(
        f"{path}: none of the columns {', '.join(COLUMNS)} (columns: {', '.join(present)});"
        " name one with --column"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--column", help=f"default: the first of {', '.join(COLUMNS)}")
    parser.add_argument(
        "--languages",
        default="en,zh,fr,es,pt,ar,vi,hi,id",
        help="the study's languages, comma-separated (default: the paper's nine)",
    )
    args = parser.parse_args(argv)
    try:
        rows = read_rows(args.file)
        column = choose_column(rows, args.file, args.column)
        from lingua_franca.language_id import Identifier

        identifier = Identifier(
            [code.strip() for code in args.languages.split(",") if code.strip()]
        )
    except (InputError, ValueError) as err:
        print(f"identify_language: {err}", file=sys.stderr)
        return 2
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["row", "label", "probability", "second_label"])
    for i, row in enumerate(rows):
        value = row.get(column)
        label = identifier.label("" if value is None else str(value))
        probability = "" if label.probability != label.probability else f"{label.probability:.4f}"
        out.writerow([i, label.label, probability, label.second or ""])
    return 0


if __name__ == "__main__":
    sys.exit(main())
