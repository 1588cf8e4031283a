"""What every result records about how it was made: versions, config hash, seeds, and
the code that made it.

The code is recorded twice over. Every result holds :func:`code_provenance`: the
sha256 of the package's sources and, in a git checkout, the commit and whether the
tree had changes. And every rule takes :func:`code_version` of its script as a
parameter (rules/common.smk), so that Snakemake reruns exactly the rules whose code
changed (README "What reruns when"). A rule's code is its script and every module of
this package the script imports, followed transitively through the package: at
module level, inside the functions and classes that are used, and through modules
named in strings (the key-neuron registry imports its methods by name). Nothing is
listed by hand, so a module added to the package is covered once a rule imports it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import io
import json
import os
import platform
import re
import subprocess
import tokenize
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "lingua-franca",
    "torch",
    "transformers",
    "tokenizers",
    "datasets",
    "zarr",
    "numpy",
    "pandas",
    "matplotlib",
    "lm_eval",
    "snakemake",
)
PACKAGE = "lingua_franca"  # the import name of this package
MODULE_NAME = re.compile(rf"^{PACKAGE}(\.[A-Za-z_]\w*)*$")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages results depend on (``None`` if absent)."""
    from lingua_franca import __version__

    versions = {"python": platform.python_version(), "lingua-franca": __version__}
    for name in PACKAGES[1:]:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal objects give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def config_hash(obj: Any) -> str:
    """sha256 of an object's canonical JSON (first 16 hex digits)."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]


# ------------------------------------------------------------------ the code of a result


def _digest(files: Iterable[Path], root: Path) -> str:
    """sha256 of the files' paths (relative to ``root``) and contents, in path order."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        data = path.read_bytes()
        name = path.relative_to(root).as_posix().encode()
        digest.update(b"%d:%s:%d:" % (len(name), name, len(data)) + data)
    return digest.hexdigest()


def package_hash(folder: str | os.PathLike | None = None) -> str:
    """sha256 of every Python source of the package in ``folder`` (default: this one)."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parent
    return _digest((p for p in folder.rglob("*.py") if "__pycache__" not in p.parts), folder)


def git_state(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The git commit of the work tree holding ``folder``, whether tracked files differ
    from it (``dirty``) and which (``changed``, at most 50); None outside git."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(folder), *args],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    if commit is None or status is None:
        return None
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    return {"commit": commit.strip(), "dirty": bool(changed), "changed": changed[:50]}


@functools.cache
def code_provenance() -> dict[str, Any]:
    """What every result records about the code that made it: ``package``, the sha256
    of this package's sources, and ``git``, the checkout's commit and dirty state
    (None when the code is not in a git work tree)."""
    folder = Path(__file__).resolve().parent
    return {"package": package_hash(folder), "git": git_state(folder)}


# ------------------------------------------------------------- what a result records

CI_KEYS = ("level", "resamples", "seed", "unit")


def recorded_settings(path: str | os.PathLike) -> dict[str, Any]:
    """What the JSON result at ``path`` records about the settings and code that made
    it, for the report's captions: ``ci`` (level, resamples, seed, unit; None without
    intervals), ``z_threshold``, ``method``, ``generation`` (max_new_tokens),
    ``code``; for the aggregate's provenance.json, its ``recorded`` section. {} when
    the file is not there (yet) or is not JSON."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict):
        return {}
    if isinstance(doc.get("recorded"), dict):
        return doc["recorded"]
    ci = doc.get("ci") if isinstance(doc.get("ci"), dict) else None
    found: dict[str, Any] = {"ci": {k: ci.get(k) for k in CI_KEYS} if ci else None}
    for key in ("z_threshold", "method"):
        if key in doc:
            found[key] = doc[key]
    if isinstance(doc.get("generation"), dict):
        found["generation"] = {"max_new_tokens": doc["generation"].get("max_new_tokens")}
    provenance = doc.get("provenance") if isinstance(doc.get("provenance"), dict) else {}
    found["code"] = doc.get("code") or provenance.get("code")
    return found


# ------------------------------------------------------------------- a rule's code


def code_files(script: str | os.PathLike) -> list[Path]:
    """The files a rule script runs: itself and every module of the package beside it
    (``<script's folder>/lingua_franca``, where Snakemake finds it) that it imports,
    followed transitively (see the module docstring)."""
    script = Path(script).resolve()
    return sorted(_graph(script.parent).files(script))


def code_version(script: str | os.PathLike) -> str:
    """A rule's code version: sha256 (first 16 hex digits) of :func:`code_files`'
    paths and contents. Editing any of them changes it; touching one does not."""
    script = Path(script).resolve()
    return _digest(code_files(script), script.parent)[:16]


ALL = None  # every function and class of a module


def _type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): imports for type checkers."""
    test = getattr(node, "test", None) if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def _tokens(text: str) -> tuple[dict[int, set[str]], dict[int, set[str]]]:
    """By line (0-based): the names, and the strings that name a module of the
    package, in Python source ``text`` (comments and other strings left out)."""
    names: dict[int, set[str]] = {}
    strings: dict[int, set[str]] = {}
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        line = token.start[0] - 1
        if token.type == tokenize.NAME:
            names.setdefault(line, set()).add(token.string)
        elif token.type == tokenize.STRING:
            prefix = token.string[: min(token.string.find(q) for q in "\"'" if q in token.string)]
            if "f" in prefix.lower():  # an f-string's fields are code (one token before 3.12)
                names.setdefault(line, set()).update(IDENTIFIER.findall(token.string))
            value = token.string[len(prefix) :].strip("\"'")
            if MODULE_NAME.match(value):
                strings.setdefault(line, set()).add(value)
    return names, strings


def _imports(nodes: Iterable[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements among ``nodes`` and the statements nested in them
    (imports are statements: expressions need no visit), ``if TYPE_CHECKING:`` apart."""
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif _type_checking(node):
            stack.extend(node.orelse)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                stack.extend(getattr(node, field, None) or [])


class _Module:
    """One parsed module: what its top-level statements (those that run when it is
    imported) and each of its functions and classes import and name. Names are read
    from the source text (identifiers, strings naming modules of the package): a
    name that only looks used costs a rerun too many, never one too few."""

    def __init__(self, name: str, path: Path, graph: _ImportGraph):
        self.name, self.path = name, path
        self.package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        tree = ast.parse(text, str(path))
        top, defs = [], {}
        stack = list(tree.body)
        while stack:
            node = stack.pop(0)
            if _type_checking(node):
                stack[:0] = node.orelse
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defs[node.name] = node
            else:
                top.append(node)
        names, strings = _tokens(text)
        inside: set[int] = set()
        self.defs = {}  # (imports, names used) of each function and class
        for key, node in defs.items():
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            span = range(first - 1, node.end_lineno)
            inside.update(span)
            self.defs[key] = graph.references([node], span, names, strings, self)
        outside = [i for i in range(len(lines)) if i not in inside]
        self.top = graph.references(top, outside, names, strings, self)


class _ImportGraph:
    """The package's modules as imported from ``root`` (the folder holding it)."""

    def __init__(self, root: Path):
        self.root = root
        self.modules: dict[str, _Module | None] = {}

    def module(self, name: str) -> _Module | None:
        """The module ``name`` of the package, parsed; None when it is not one."""
        if name not in self.modules:
            self.modules[name] = None  # while it is parsed: a module naming itself
            base = self.root.joinpath(*name.split("."))
            path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
            if MODULE_NAME.match(name) and path.is_file():
                self.modules[name] = _Module(name, path, self)
        return self.modules[name]

    def references(self, nodes, lines, names, strings, within: _Module | None):
        """(the (module, names) that the statements ``nodes``, on ``lines``, import,
        the names they use); ``names`` and ``strings`` by line, as _tokens gives them."""
        imports: list[tuple[str, set[str] | None]] = []
        for node in _imports(nodes):
            if isinstance(node, ast.ImportFrom):
                base = self._absolute(node.module, node.level, within)
                if base is None or not MODULE_NAME.match(base):
                    continue
                wanted: set[str] = set()
                for alias in node.names:
                    if alias.name == "*":
                        imports.append((base, ALL))
                    elif self._exists(f"{base}.{alias.name}"):
                        imports.append((f"{base}.{alias.name}", ALL))
                    else:
                        wanted.add(alias.name)
                imports.append((base, wanted))
            else:
                imports += [(a.name, ALL) for a in node.names if MODULE_NAME.match(a.name)]
        used: set[str] = set()
        for line in lines:
            used |= names.get(line, set())
            for named in strings.get(line, ()):  # a module imported by its name
                if self._exists(named):
                    imports.append((named, ALL))
        return imports, used

    def _exists(self, name: str) -> bool:
        base = self.root.joinpath(*name.split("."))
        return (base / "__init__.py").is_file() or base.with_suffix(".py").is_file()

    def _absolute(self, module: str | None, level: int, within: _Module | None) -> str | None:
        if level == 0:
            return module
        if within is None:
            return None
        parts = within.package.split(".")
        if level - 1 > len(parts):
            return None
        base = parts[: len(parts) - (level - 1)]
        return ".".join(base + ([module] if module else []))

    def files(self, script: Path) -> set[Path]:
        tree = ast.parse(script.read_text(encoding="utf-8"), str(script))
        done_top: set[str] = set()
        done_defs: dict[str, set[str]] = {}
        queue: list[tuple[str, set[str] | None]] = []

        def need(imports) -> None:
            for name, wanted in imports:
                parts = name.split(".")
                queue.extend((".".join(parts[:i]), set()) for i in range(1, len(parts)))
                queue.append((name, wanted))

        text = script.read_text(encoding="utf-8")
        lines = range(len(text.splitlines()))
        need(self.references(tree.body, lines, *_tokens(text), None)[0])
        while queue:
            name, wanted = queue.pop()
            module = self.module(name)
            if module is None:
                continue
            todo = set(module.defs) if wanted is ALL else set(wanted) & set(module.defs)
            if name not in done_top:
                done_top.add(name)
                need(module.top[0])
                todo |= module.top[1] & set(module.defs)
            done = done_defs.setdefault(name, set())
            while todo - done:
                definition = (todo - done).pop()
                done.add(definition)
                imports, used = module.defs[definition]
                need(imports)
                todo |= used & set(module.defs)
        return {script} | {self.modules[name].path for name in done_top}


_GRAPHS: dict[Path, tuple[tuple, _ImportGraph]] = {}


def _graph(root: Path) -> _ImportGraph:
    """The import graph of the package in ``root``, parsed again only when one of its
    files changed (a workflow asks for every rule's code at each planning)."""
    stamp = tuple(
        (str(p), p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted((root / PACKAGE).rglob("*.py"))
        if "__pycache__" not in p.parts
    )
    cached = _GRAPHS.get(root)
    if cached is None or cached[0] != stamp:
        _GRAPHS[root] = cached = (stamp, _ImportGraph(root))
    return cached[1]
