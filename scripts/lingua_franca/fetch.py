"""The fetch step: download, on a machine with a network (a cluster's login node),
everything a config's jobs read, so that every other job runs offline
(``HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1``; README "Running on a cluster").

:func:`plan` turns a config into named items, one per thing to download:

- ``model-<model>-<checkpoint>``: a Hub checkpoint's config and weights (and its
  tokenizer files, unless the model names another tokenizer source), into the Hugging
  Face cache (``HF_HOME``), where ``from_pretrained(hub_id, revision=...)`` finds it;
- ``tokenizer-<model>``: a model's ``tokenizer`` source on the Hub, its tokenizer
  files (and config) only;
- ``xlsum-<lang>``: one language's XL-Sum validation files of the Hub's parquet
  branch, into the perplexity source's ``dir`` (default ``data/xlsum``);
- ``xstorycloze``: the configured split's TSV of every configured language that
  XStoryCloze has, into the story source's ``dir`` (default ``data/xstory_cloze``);
- ``bible-<pair>``: one OPUS bible-uedin Moses zip, into the probe source's ``dir``.

Data sources that point elsewhere (a local corpus of one's own, an ``hf://``
location read at job time) have nothing to fetch. :func:`fetch` downloads one item
through a :class:`Downloader` (the real one, :class:`HubDownloader`, or a stand-in
in tests) and returns a manifest: what was asked, which files, which commit, where.

Which files of a model repository: ``config.json`` (and ``generation_config.json``),
the weights ``from_pretrained`` reads (``models.WEIGHT_FILES``): the safetensors when
the revision has them, else its PyTorch ``.bin`` (published training branches often
have only those), each as one file or as the shards of a sharded checkpoint with its
index, never both kinds; and the tokenizer files. Never Flax, TensorFlow, ONNX or GGUF
files, READMEs or licences. Top-level files only: the subfolders of these repositories
hold exports the jobs never read.

Before anything is downloaded, :func:`check_access` asks the Hub whether every
repository of the plan can be read (gated ones such as meta-llama's LLaMA-2 need an
accepted licence and a token): a refusal stops the step with one message naming
each repository, the page where its licence is accepted and how to give the token.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
import tempfile
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lingua_franca.config import Config
from lingua_franca.corpora.bible import OPUS_CORPUS, PIVOT
from lingua_franca.corpora.perplexity import (
    XLSUM_DIR,
    XLSUM_PATTERN,
    XLSUM_REPO,
    XLSUM_REVISION,
)
from lingua_franca.corpora.stories import XSTORYCLOZE_DIR, XSTORYCLOZE_FILE, XSTORYCLOZE_REPO
from lingua_franca.languages import LANGUAGES, get_language

log = logging.getLogger(__name__)

OPUS_URL = "https://object.pouta.csc.fi/OPUS-bible-uedin/v1/moses/{pair}.txt.zip"
MANIFEST_DIR = "data/fetched"  # one JSON manifest per item (the fetch rules' outputs)

CONFIG_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "chat_template.jinja",
)
#: (index of a sharded checkpoint, single file), in ``from_pretrained``'s order of
#: preference (as ``models.WEIGHT_FILES``, which this module does not import: torch)
WEIGHT_LAYOUTS = (
    ("model.safetensors.index.json", "model.safetensors"),
    ("pytorch_model.bin.index.json", "pytorch_model.bin"),
)
HUB = "https://huggingface.co"
ACCESS_RECORD = f"{MANIFEST_DIR}/hub_access.json"  # the access check's output


class FetchError(RuntimeError):
    """Something a config needs cannot be fetched; the message says what and where."""


class AccessRefused(Exception):
    """The Hub refuses a repository (a key of ``WHY``): ``gated`` (a gated repository,
    and no token sent: 401), ``not_granted`` (a token whose account has not been
    granted access, or not yet: 403), ``token`` (a token the Hub rejects) or
    ``not_found`` (no such repository, or a private one); ``detail`` is the Hub's own
    message."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class HubItem:
    """Files of one Hub repository revision. ``select``: ``weights`` (config and
    weights), ``weights+tokenizer``, ``tokenizer`` (tokenizer files and config), or
    ``patterns`` (the files matching ``patterns``). ``local_dir``: a folder to copy
    them into; None: the Hugging Face cache."""

    repo_id: str
    revision: str
    repo_type: str
    select: str
    patterns: tuple[str, ...] = ()
    local_dir: str | None = None
    purpose: str = ""


@dataclass(frozen=True)
class UrlItem:
    url: str
    dest: str
    purpose: str = ""


Item = HubItem | UrlItem


class Downloader(Protocol):
    """What the fetch step needs from the Hub and the web (tests pass a stand-in)."""

    def check_access(self, repo_id: str, repo_type: str) -> None:
        """Return if the repository's files can be downloaded; else raise AccessRefused."""
        ...

    def list_files(self, repo_id: str, revision: str, repo_type: str) -> list[str]: ...

    def download(
        self,
        repo_id: str,
        revision: str,
        repo_type: str,
        files: list[str],
        local_dir: str | None,
    ) -> str:
        """Download ``files``; return the folder holding them (the cache's snapshot
        folder ``.../snapshots/<commit>``, or ``local_dir``)."""
        ...

    def download_url(self, url: str, dest: Path) -> None: ...


@dataclass
class HubDownloader:
    """The real downloader: huggingface_hub (``HF_HOME``, ``HF_TOKEN`` or ``hf auth
    login`` for gated repositories such as meta-llama's) and urllib."""

    token: str | bool | None = None
    endpoint: str | None = None  # None: HF_ENDPOINT, else https://huggingface.co
    calls: list = field(default_factory=list)

    def check_access(self, repo_id: str, repo_type: str) -> None:
        """The Hub's own access check (``HfApi.auth_check``): a gated repository answers
        401 without a token and 403 with a token not (yet) granted, ``X-Error-Code:
        GatedRepo``, which huggingface_hub raises as GatedRepoError. Listing a gated
        repository's files works without access; only downloads fail, so the listing
        proves nothing."""
        from huggingface_hub import HfApi
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            RepositoryNotFoundError,
        )

        try:
            HfApi(endpoint=self.endpoint).auth_check(repo_id, repo_type=repo_type, token=self.token)
        except GatedRepoError as err:
            status = err.response.status_code if err.response is not None else None
            reason = "gated" if status == 401 else "not_granted"
            raise AccessRefused(reason, _hub_message(err)) from None
        except RepositoryNotFoundError as err:
            raise AccessRefused("not_found", _hub_message(err)) from None
        except HfHubHTTPError as err:
            if err.response is not None and err.response.status_code == 401:
                raise AccessRefused("token", _hub_message(err)) from None
            raise

    def list_files(self, repo_id: str, revision: str, repo_type: str) -> list[str]:
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint).list_repo_files(
            repo_id, revision=revision, repo_type=repo_type, token=self.token
        )

    def download(self, repo_id, revision, repo_type, files, local_dir) -> str:
        from huggingface_hub import snapshot_download

        return snapshot_download(
            repo_id,
            repo_type=repo_type,
            revision=revision,
            allow_patterns=list(files),  # exact names: fnmatch matches each only itself
            local_dir=local_dir,
            token=self.token,
            endpoint=self.endpoint,
        )

    def download_url(self, url: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".part") as tmp:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    shutil.copyfileobj(response, tmp)
                tmp.close()
                os.replace(tmp.name, dest)  # never a half-written file under the real name
            except BaseException:
                Path(tmp.name).unlink(missing_ok=True)
                raise


def _hub_message(err: Exception) -> str:
    """The Hub's explanation (its X-Error-Message), without the request id."""
    server = getattr(err, "server_message", None)
    return str(server or err).strip().splitlines()[-1]


# ------------------------------------------------------------------ the plan


def plan(cfg: Config) -> dict[str, Item]:
    """Everything ``cfg`` reads that lives on the Hub or the web: item name -> item.
    Names are file-name safe (they name the manifests)."""
    items: dict[str, Item] = {}
    for model in cfg.models.values():
        if model.hub_id is None:
            continue  # a local folder or a toy model: nothing to download
        for c in model.checkpoints.values():
            items[f"model-{model.name}-{c.name}"] = HubItem(
                model.hub_id,
                c.revision,
                "model",
                "weights" if model.tokenizer else "weights+tokenizer",
                purpose=f"models.{model.name}.checkpoints.{c.name}",
            )
        if model.tokenizer and model.tokenizer["revision"] is not None:  # a Hub id
            items[f"tokenizer-{model.name}"] = HubItem(
                model.tokenizer["location"],
                model.tokenizer["revision"],
                "model",
                "tokenizer",
                purpose=f"models.{model.name}.tokenizer",
            )
    items.update(_data_items(cfg))
    return items


def fetched_data(cfg: Config) -> set[str]:
    """The data kinds (probe, perplexity, xstorycloze) whose local files the fetch
    step writes: they need not exist before it has run."""
    return {item.purpose.split()[0].removeprefix("data.") for item in _data_items(cfg).values()}


def _local_dir(section: dict, default: str) -> str | None:
    """The source's folder when it is local (what the fetch step fills), else None."""
    folder = str(section["options"].get("dir", default))
    return None if "://" in folder else folder


def _data_items(cfg: Config) -> dict[str, Item]:
    items: dict[str, Item] = {}
    probe = cfg.data["probe"]
    if probe["source"] == "bible_opus" and probe["options"].get("dir"):
        pivot = get_language(PIVOT).bible
        for lang in cfg.languages:
            if lang == PIVOT:
                continue
            pair = "-".join(sorted([pivot, get_language(lang).bible]))
            items[f"bible-{pair}"] = UrlItem(
                OPUS_URL.format(pair=pair),
                str(Path(probe["options"]["dir"]) / f"{pair}.txt.zip"),
                purpose=f"data.probe ({OPUS_CORPUS} {pair})",
            )
    ppl = cfg.data["perplexity"]
    folder = _local_dir(ppl, XLSUM_DIR)
    if ppl["source"] == "xlsum" and folder is not None:
        pattern = ppl["options"].get("pattern", XLSUM_PATTERN)
        split = ppl["options"].get("split", "validation")
        for lang in cfg.languages:
            config = get_language(lang).xlsum
            if config is None:
                continue  # the job says so; nothing to fetch
            items[f"xlsum-{lang}"] = HubItem(
                XLSUM_REPO,
                XLSUM_REVISION,
                "dataset",
                "patterns",
                (pattern.format(config=config, split=split, lang=lang),),
                folder,
                purpose=f"data.perplexity ({lang})",
            )
    stories = cfg.data["xstorycloze"]
    folder = _local_dir(stories, XSTORYCLOZE_DIR)
    if stories["source"] == "xstorycloze" and folder is not None:
        split = stories["options"].get("split", "eval")
        languages = cfg.data_languages("xstorycloze") or [
            lang.code for lang in LANGUAGES.values() if lang.xstorycloze is not None
        ]  # None: every language XStoryCloze holds
        names = [
            XSTORYCLOZE_FILE.format(config=get_language(lang).xstorycloze, split=split)
            for lang in languages
            if get_language(lang).xstorycloze is not None
        ]
        if names:
            items["xstorycloze"] = HubItem(
                XSTORYCLOZE_REPO,
                "main",
                "dataset",
                "patterns",
                tuple(names),
                folder,
                purpose="data.xstorycloze",
            )
    return items


# ------------------------------------------------------------------ choosing files


def _top_level(listing: list[str], patterns: tuple[str, ...]) -> list[str]:
    return sorted(
        name
        for name in listing
        if "/" not in name and any(fnmatch.fnmatchcase(name, p) for p in patterns)
    )


def select_files(item: HubItem, listing: list[str]) -> list[str]:
    """The files of ``listing`` (a repository revision's file names) that ``item``
    needs; a FetchError names what is missing."""
    where = f"{item.repo_id} (revision {item.revision})"
    if item.select == "patterns":
        chosen, problems = set(), []
        for pattern in item.patterns:
            matched = [name for name in listing if fnmatch.fnmatchcase(name, pattern)]
            if not matched:
                problems.append(pattern)
            chosen.update(matched)
        if problems:
            raise FetchError(f"{where} has no file matching {problems} ({item.purpose})")
        return sorted(chosen)
    files = _top_level(listing, CONFIG_FILES)
    if "config.json" not in files:
        raise FetchError(f"{where} has no config.json ({item.purpose})")
    if "weights" in item.select:
        weights = weight_files(listing)
        if not weights:
            raise FetchError(
                f"{where} holds no PyTorch weights (safetensors or pytorch_model*.bin): "
                f"{sorted(listing)} ({item.purpose})"
            )
        files += weights
    if "tokenizer" in item.select:
        tokenizer = _top_level(listing, TOKENIZER_FILES)
        if not tokenizer:
            raise FetchError(
                f"{where} holds no tokenizer files ({item.purpose}). Checkpoints published "
                "without a tokenizer (e.g. bigscience/bloom-*-intermediate) need the model's "
                "`tokenizer` entry, e.g. tokenizer: {hub_id: bigscience/bloom-7b1}"
            )
        files += tokenizer
    return sorted(set(files))


def weight_files(listing: list[str]) -> list[str]:
    """What ``from_pretrained`` reads from a revision holding ``listing``, of the first
    layout of WEIGHT_LAYOUTS the revision has: the single file, or the index of a
    sharded checkpoint (``fetch`` reads it for the shards' names: their spelling
    varies between repositories). Nothing of another layout (the .bin beside the
    safetensors), nor other safetensors files (adapters, consolidated copies)."""
    for index, single in WEIGHT_LAYOUTS:
        if index in listing:
            return [index]
        if single in listing:
            return [single]
    return []


def shard_files(item: HubItem, folder: str | Path, index: str, listing: list[str]) -> list[str]:
    """The shards a downloaded index names; FetchError if the revision lacks one."""
    try:
        weight_map = json.loads((Path(folder) / index).read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as err:
        raise FetchError(f"{item.repo_id} (revision {item.revision}): {index} unreadable ({err})")
    absent = [name for name in shards if name not in listing]
    if absent or not shards:
        raise FetchError(
            f"{item.repo_id} (revision {item.revision}): {index} names shards the revision "
            f"does not hold: {absent or 'none at all'}"
        )
    return shards


# ------------------------------------------------------------------ access


def hub_repos(items: dict[str, Item]) -> dict[tuple[str, str], list[str]]:
    """(repo type, repo id) -> the purposes of the plan's items it serves."""
    repos: dict[tuple[str, str], list[str]] = {}
    for item in items.values():
        if isinstance(item, HubItem):
            repos.setdefault((item.repo_type, item.repo_id), []).append(item.purpose)
    return repos


WHY = {
    "gated": "gated, and no token was sent",
    "not_granted": "gated, and the token's account has not been granted access (yet)",
    "token": "the Hub rejects the token",
    "not_found": "no such repository, or a private one this token cannot see",
}


def check_access(items: dict[str, Item], downloader: Downloader) -> list[dict[str, str]]:
    """Ask the Hub about every repository of ``items`` before anything is downloaded
    (``check_repos``)."""
    return check_repos(hub_repos(items), downloader)


def check_repos(
    repos: dict[tuple[str, str], list[str]], downloader: Downloader
) -> list[dict[str, str]]:
    """Ask the Hub about every repository of ``repos`` ((type, id) -> purposes); return
    what was checked. A refusal raises one FetchError naming every refused
    repository, the page to accept its licence on and the token to give, so that a
    gated model is not found missing after hours of downloading the others."""
    checked, refused = [], []
    for (repo_type, repo_id), purposes in repos.items():
        try:
            downloader.check_access(repo_id, repo_type)
        except AccessRefused as err:
            refused.append((repo_type, repo_id, purposes, err))
        checked.append({"repo_type": repo_type, "repo_id": repo_id})
    if refused:
        raise FetchError(_refusal_message(refused))
    log.info("the Hub grants access to %d repositories", len(checked))
    return checked


def _refusal_message(refused) -> str:
    many = "repository" if len(refused) == 1 else "repositories"
    lines = [
        f"the Hugging Face Hub refuses {len(refused)} {many} this config reads; nothing was downloaded:"
    ]
    for repo_type, repo_id, purposes, err in refused:
        page = f"{HUB}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
        lines.append(f"  - {repo_id} ({', '.join(purposes)}): {WHY[err.reason]}")
        lines.append(f"    licence and access request: {page}")
        if err.detail:
            lines.append(f"    the Hub says: {err.detail}")
    lines.append(
        "Accept each licence on its page with your Hub account, wait until access is "
        "granted (the repository's authors decide: for meta-llama's LLaMA-2 it takes 1-2 "
        "days, and the e-mail of the Hub account must be the one given to Meta), then give "
        "the fetch step a read token of that account: `hf auth login`, or the environment "
        f"variable HF_TOKEN (tokens: {HUB}/settings/tokens), and run it again."
    )
    return "\n".join(lines)


def check_access_to_record(
    repos: dict[tuple[str, str], list[str]], out: str | Path, downloader=None
) -> None:
    """The access rule's job: check every repository; write what was checked (nothing
    when one is refused)."""
    checked = check_repos(repos, downloader or HubDownloader())
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"repositories": checked}, indent=1) + "\n", encoding="utf-8")


# ------------------------------------------------------------------ fetching


def fetch(item: Item, downloader: Downloader) -> dict[str, Any]:
    """Download one item; return its manifest (what, which files, which commit, where)."""
    if isinstance(item, UrlItem):
        dest = Path(item.dest)
        if not dest.exists():  # a zip never changes under its versioned URL
            downloader.download_url(item.url, dest)
        return {**asdict(item), "kind": "url", "path": str(dest), "bytes": dest.stat().st_size}
    listing = downloader.list_files(item.repo_id, item.revision, item.repo_type)
    files = select_files(item, listing)
    index = next((name for name in files if name.endswith(".index.json")), None)
    if index is not None and "weights" in item.select:  # the index names the shards
        first = downloader.download(
            item.repo_id, item.revision, item.repo_type, [index], item.local_dir
        )
        files = sorted({*files, *shard_files(item, first, index, listing)})
    folder = downloader.download(item.repo_id, item.revision, item.repo_type, files, item.local_dir)
    missing = [name for name in files if not (Path(folder) / name).exists()]
    if missing:
        raise FetchError(f"{item.repo_id} (revision {item.revision}): {missing} not downloaded")
    commit = Path(folder).name if item.local_dir is None else None
    return {
        **asdict(item),
        "patterns": list(item.patterns),
        "kind": "hub",
        "files": files,
        "path": str(folder),
        "commit": commit,
    }


def fetch_to_manifest(item: Item, out: str | Path, downloader: Downloader | None = None) -> None:
    """The fetch rule's job: one item, its manifest written last (so that an
    interrupted download leaves no manifest and is fetched again)."""
    manifest = fetch(item, downloader or HubDownloader())
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def fetch_all(cfg: Config, downloader: Downloader, manifest_dir: str | Path = MANIFEST_DIR):
    """Every item of ``plan(cfg)``, in order, once the Hub has granted access to every
    repository (``check_access``); {name: manifest}."""
    items = plan(cfg)
    check_access(items, downloader)
    manifests = {}
    for name, item in items.items():
        fetch_to_manifest(item, Path(manifest_dir) / f"{name}.json", downloader)
        manifests[name] = json.loads((Path(manifest_dir) / f"{name}.json").read_text())
    return manifests


def as_params(item: Item) -> dict[str, Any]:
    """An item as plain values (a rule's params)."""
    return {"kind": "url" if isinstance(item, UrlItem) else "hub", **asdict(item)}


def from_params(params: dict[str, Any]) -> Item:
    values = {k: v for k, v in params.items() if k != "kind"}
    if params["kind"] == "url":
        return UrlItem(**values)
    return HubItem(**{**values, "patterns": tuple(values.get("patterns", ()))})
