"""The fetch step (lingua_franca.fetch): which files of which repository revisions
and which data files each experiment config downloads, checked name by name with a
stand-in downloader over the file lists of the real repositories
(tests/hub_rehearsal.py); the cache it writes is read back by huggingface_hub and
transformers offline; the real downloader hands huggingface_hub exactly those files."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hub_rehearsal import (
    GRANTED_TOKEN,
    KEEP,
    LANGUAGES,
    PENDING_TOKEN,
    XSTORYCLOZE_CONFIGS,
    FakeHub,
    StandInDownloader,
    blob_name,
    overlay,
)
from lingua_franca import fetch
from lingua_franca.config import load_config, load_config_file
from lingua_franca.fetch import FetchError, HubDownloader, HubItem, fetch_all, plan, select_files

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "resources" / "experiments"

BLOOM_TOKENIZER = ("special_tokens_map.json", "tokenizer.json", "tokenizer_config.json")
LLAMA_TOKENIZER = (
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
)


SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"


def shards(n: int, stem="model", suffix="safetensors") -> tuple[str, ...]:
    names = tuple(f"{stem}-{i:05d}-of-{n:05d}.{suffix}" for i in range(1, n + 1))
    return (*names, f"{stem}.{suffix}.index.json")


def sharded(repo, revision, n, *other, stem="model", suffix="safetensors"):
    """The two downloads of a sharded checkpoint: its index (which names the shards),
    then everything, the shards it names included."""
    index = f"{stem}.{suffix}.index.json"
    files = tuple(sorted((*other, *shards(n, stem, suffix))))
    return [(repo, revision, "model", (index,), None), (repo, revision, "model", files, None)]


PYTHIA_STEP = ("config.json", "generation_config.json", *BLOOM_TOKENIZER)
#: what the fetch step downloads for each cut-down experiment config (tests/hub_rehearsal.py
#: KEEP): (repo, revision, type, files, local folder), in plan order
MODELS = {
    "bloom-scales": [
        ("bigscience/bloom-1b7", "main", "model", ("config.json", "model.safetensors", *BLOOM_TOKENIZER), None),
        # two safetensors shards, not the two .bin shards nor the Flax shards beside them
        *sharded("bigscience/bloom-7b1", "main", 2, "config.json", *BLOOM_TOKENIZER),
    ],
    "bloom-7b1-checkpoints": [
        ("bigscience/bloom-7b1-intermediate", "global_step100000", "model", ("config.json", "pytorch_model.bin"), None),
        ("bigscience/bloom-7b1-intermediate", "global_step200000", "model", ("config.json", "pytorch_model.bin"), None),
        # the final model's tokenizer (and config), never its weights
        ("bigscience/bloom-7b1", "main", "model", ("config.json", *BLOOM_TOKENIZER), None),
    ],
    "llama2-scales": [
        *sharded("meta-llama/Llama-2-7b-hf", "main", 2, "config.json", "generation_config.json", *LLAMA_TOKENIZER),
        *sharded("meta-llama/Llama-2-70b-hf", "main", 15, "config.json", "generation_config.json", *LLAMA_TOKENIZER),
    ],
    "pythia-checkpoints": [
        *sharded("EleutherAI/pythia-12b", "step0", 3, *PYTHIA_STEP, stem="pytorch_model", suffix="bin"),
        *sharded("EleutherAI/pythia-12b", "step1", 3, *PYTHIA_STEP, stem="pytorch_model", suffix="bin"),
    ],
}  # fmt: skip
OPUS = "https://object.pouta.csc.fi/OPUS-bible-uedin/v1/moses/{}.txt.zip"
DATA = [
    *((OPUS.format(p), f"data/bible-uedin/{p}.txt.zip") for p in ("en-zh", "en-fr", "en-es", "ar-en")),
    *(
        ("csebuetnlp/xlsum", "refs/convert/parquet", "dataset", (f"{c}/validation/0000.parquet",), "data/xlsum")
        for c in ("english", "chinese_simplified", "french", "spanish", "arabic")
    ),
    (
        "juletxara/xstory_cloze",
        "main",
        "dataset",
        # every XStoryCloze language, whatever the probe's (docs/method.md §6)
        tuple(f"spring2016.val.{c}.tsv.split_20_80_eval.tsv" for c in sorted(XSTORYCLOZE_CONFIGS)),
        "data/xstory_cloze",
    ),
]  # fmt: skip


def cut(name: str):
    return load_config(overlay(yaml.safe_load((EXPERIMENTS / f"{name}.yaml").read_text()), name))


@pytest.fixture
def fetched(remote, tmp_path, monkeypatch):
    """fetch(name) -> (downloader, manifests, HF_HOME), run in an empty folder."""

    def run(name):
        monkeypatch.chdir(tmp_path)
        downloader = StandInDownloader(remote, tmp_path / "hf")
        return downloader, fetch_all(cut(name), downloader), tmp_path / "hf"

    return run


@pytest.mark.parametrize("name", sorted(KEEP))
def test_the_fetch_step_downloads_exactly_what_a_config_reads(name, fetched):
    """Safetensors where a revision has them, else its .bin; config; tokenizer files
    from the tokenizer source; never READMEs, licences, Flax, ONNX, PDFs, the .bin
    beside safetensors; XL-Sum's validation files only; the configured languages'
    XStoryCloze files and Bible pairs."""
    downloader, manifests, _ = fetched(name)
    assert downloader.calls == MODELS[name] + DATA
    # an index's own download is followed by its item's
    calls = [c for c in downloader.calls if not (len(c) == 5 and c[3][0].endswith("index.json"))]
    for call, manifest in zip(calls, manifests.values(), strict=True):
        if len(call) == 5:
            assert manifest["files"] == list(call[3])
        else:
            assert manifest["path"] == call[1] and Path(call[1]).stat().st_size == manifest["bytes"]
    assert sorted(p.name for p in Path("data/fetched").iterdir()) == sorted(
        f"{item}.json" for item in manifests
    )


def test_the_cache_is_the_hubs_layout(fetched, remote):
    """huggingface_hub reads what the stand-in wrote as its own cache: refs, snapshot
    symlinks into blobs named by sha256 (weights) or git sha1; identical weights in two
    branches share one blob."""
    from huggingface_hub import scan_cache_dir, snapshot_download, try_to_load_from_cache

    _, manifests, hf_home = fetched("bloom-7b1-checkpoints")
    info = scan_cache_dir(hf_home / "hub")
    assert not info.warnings
    repos = {r.repo_id: r for r in info.repos}
    assert sorted(repos) == ["bigscience/bloom-7b1", "bigscience/bloom-7b1-intermediate"]
    revisions = repos["bigscience/bloom-7b1-intermediate"].revisions
    assert {ref for r in revisions for ref in r.refs} == {"global_step100000", "global_step200000"}
    step = "global_step100000"
    folder = snapshot_download(
        "bigscience/bloom-7b1-intermediate",
        revision=step,
        cache_dir=hf_home / "hub",
        local_files_only=True,
    )
    assert folder == manifests[f"model-bloom-7b1-intermediate-{step}"]["path"]
    weights = Path(folder) / "pytorch_model.bin"
    content = remote.repos["model", "bigscience/bloom-7b1-intermediate", step]["pytorch_model.bin"]
    assert os.readlink(weights).startswith("../../blobs/")
    assert Path(os.readlink(weights)).name == blob_name("pytorch_model.bin", content)
    twin = Path(manifests["model-bloom-7b1-intermediate-global_step200000"]["path"])
    assert (twin / "pytorch_model.bin").resolve() == weights.resolve()  # one blob
    assert (
        try_to_load_from_cache(
            "bigscience/bloom-7b1-intermediate",
            "tokenizer.json",
            revision=step,
            cache_dir=hf_home / "hub",
        )
        is None
    )  # the branches hold no tokenizer


STEP = ("bigscience/bloom-7b1-intermediate", "global_step100000")
LOAD = """
import json, sys
from lingua_franca.models import load_model, provenance_attrs
out = {}
try:  # a branch the fetch step did not download
    load_model("bigscience/bloom-7b1-intermediate", revision="global_step1000")
except OSError as err:
    out["unfetched"] = str(err)
try:
    load_model("bigscience/bloom-7b1-intermediate", revision="global_step100000")
except ValueError as err:
    out["without"] = str(err)
model, tok = load_model(
    "bigscience/bloom-7b1-intermediate",
    revision="global_step100000",
    tokenizer="bigscience/bloom-7b1",
    tokenizer_revision="main",
)
out["with"] = model.lingua_franca_source
out["commit"] = provenance_attrs(model, tok)["commit"]
out["vocab"] = len(tok)
out["embeddings"] = model.get_input_embeddings().weight.double().sum().item()
print("RESULT" + json.dumps(out))
"""


def test_an_intermediate_checkpoint_loads_offline_with_the_final_models_tokenizer(fetched, remote):
    """Break 1: bigscience/bloom-*-intermediate branches hold no tokenizer files. Loaded
    offline from the fetched cache, the checkpoint alone fails with a message naming
    the `tokenizer` entry; with the final model's tokenizer it loads (its .bin
    weights: the branches have no safetensors)."""
    _, _, hf_home = fetched("bloom-7b1-checkpoints")
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", LOAD],
        cwd=ROOT / "scripts",
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.split("RESULT", 1)[1])
    assert out["unfetched"].startswith(
        "cannot load the tokenizer of bigscience/bloom-7b1-intermediate (revision global_step1000)"
    )
    assert "snakemake --configfile CONFIG fetch" in out["unfetched"]
    assert "no usable tokenizer in bigscience/bloom-7b1-intermediate" in out["without"]
    assert "tokenizer: {hub_id: bigscience/bloom-7b1}" in out["without"]
    assert out["with"]["tokenizer"] == {"location": "bigscience/bloom-7b1", "revision": "main"}
    assert out["vocab"] == 400
    # provenance names the commit of the branch, read from the cache's snapshot folder
    assert out["commit"] == remote.commit(*STEP)
    # the weights are the branch's pytorch_model.bin
    state = torch.load(io.BytesIO(remote.repos["model", *STEP]["pytorch_model.bin"]))
    expected = next(v for k, v in state.items() if k.endswith("word_embeddings.weight"))
    assert out["embeddings"] == pytest.approx(expected.double().sum().item(), rel=1e-12)


def test_fetching_a_checkpoint_without_tokenizer_files_says_what_to_set(remote, tmp_path):
    """Break 1, caught on the login node: without the `tokenizer` entry the fetch step
    itself stops at the first intermediate branch."""
    config = overlay(
        yaml.safe_load((EXPERIMENTS / "bloom-7b1-checkpoints.yaml").read_text()),
        "bloom-7b1-checkpoints",
    )
    del config["models"]["bloom-7b1-intermediate"]["tokenizer"]
    item = plan(load_config(config))["model-bloom-7b1-intermediate-global_step100000"]
    with pytest.raises(
        FetchError, match=r"global_step100000\) holds no tokenizer files .*tokenizer: \{hub_id"
    ):
        fetch.fetch(item, StandInDownloader(remote, tmp_path))


@pytest.mark.parametrize(
    "listing, select, expected",
    [
        # safetensors beside .bin, Flax and ONNX: safetensors only
        (["config.json", "model.safetensors", "pytorch_model.bin", "flax_model.msgpack", "onnx/model.onnx"], "weights", ["config.json", "model.safetensors"]),
        # only .bin (a training branch): the .bin
        (["config.json", "pytorch_model.bin", ".gitattributes"], "weights", ["config.json", "pytorch_model.bin"]),
        # sharded .bin: its index (fetch reads the shards' names from it)
        (["config.json", "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin", "pytorch_model.bin.index.json", "tf_model.h5"], "weights", ["config.json", "pytorch_model.bin.index.json"]),
        # sharded safetensors beside sharded .bin: the safetensors index
        (["config.json", *shards(2), *shards(2, "pytorch_model", "bin")], "weights", ["config.json", SAFETENSORS_INDEX]),
        # a tokenizer source: its tokenizer files and config, no weights
        (["config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt", "README.md"], "tokenizer", ["config.json", "merges.txt", "tokenizer.json", "vocab.json"]),
    ],
)  # fmt: skip
def test_select_files(listing, select, expected):
    assert select_files(HubItem("org/m", "main", "model", select), listing) == expected


def test_a_sharded_checkpoint_fetches_the_shards_its_index_names(remote, tmp_path):
    """The index says which shards from_pretrained reads; what else a revision holds
    (a consolidated copy for another library, shards of an older upload, shards
    spelled model_0000N) is neither chosen by pattern nor downloaded."""
    weights = {"model_00001-of-00002.safetensors": b"1", "model_00002-of-00002.safetensors": b"2"}
    index = {
        "weight_map": {
            "a": "model_00001-of-00002.safetensors",
            "b": "model_00002-of-00002.safetensors",
        }
    }
    remote.repos["model", "org/odd", "main"] = {
        "config.json": b"{}",
        SAFETENSORS_INDEX: json.dumps(index).encode(),
        **weights,
        "consolidated.safetensors": b"12",  # e.g. mistralai/Mistral-7B-Instruct-v0.3
        "model-00001-of-00003.safetensors": b"stale",
        "tokenizer.json": b"{}",
    }
    downloader = StandInDownloader(remote, tmp_path / "hf")
    item = HubItem("org/odd", "main", "model", "weights+tokenizer")
    manifest = fetch.fetch(item, downloader)
    assert manifest["files"] == sorted(
        ["config.json", SAFETENSORS_INDEX, *weights, "tokenizer.json"]
    )
    assert [call[3] for call in downloader.calls] == [
        (SAFETENSORS_INDEX,),
        tuple(manifest["files"]),
    ]
    index["weight_map"]["c"] = "model_00003-of-00003.safetensors"
    remote.repos["model", "org/odd", "main"][SAFETENSORS_INDEX] = json.dumps(index).encode()
    with pytest.raises(
        FetchError,
        match=r"org/odd \(revision main\): .* names shards the revision does not hold: \['model_00003",
    ):
        fetch.fetch(item, StandInDownloader(remote, tmp_path / "hf2"))
    del remote.repos["model", "org/odd", "main"]


def test_select_files_errors():
    with pytest.raises(FetchError, match=r"org/m \(revision r\) holds no PyTorch weights"):
        select_files(
            HubItem("org/m", "r", "model", "weights"), ["config.json", "flax_model.msgpack"]
        )
    with pytest.raises(FetchError, match=r"org/m \(revision r\) has no config.json"):
        select_files(HubItem("org/m", "r", "model", "weights"), ["model.safetensors"])
    item = HubItem("d/x", "main", "dataset", "patterns", ("french/validation/*.parquet",), "data/x")
    with pytest.raises(
        FetchError, match=r"has no file matching \['french/validation/\*\.parquet'\]"
    ):
        select_files(item, ["english/validation/0000.parquet"])


LLAMA = ("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-70b-hf")


def test_gated_repositories_are_checked_before_anything_is_downloaded(
    remote, tmp_path, monkeypatch
):
    """The meta-llama repositories are gated: the Hub lists their files to anyone and
    refuses the downloads (401 without a token, 403 for an account not granted
    access). The fetch step asks first and stops before any download, with one message
    naming each refused repository, its licence page and the token to give."""
    config = overlay(
        yaml.safe_load((EXPERIMENTS / "bloom-scales.yaml").read_text()), "bloom-scales"
    )
    llama = overlay(
        yaml.safe_load((EXPERIMENTS / "llama2-scales.yaml").read_text()), "llama2-scales"
    )
    config["models"].update(llama["models"])  # the BLOOM models are planned first
    cfg = load_config(config)
    monkeypatch.chdir(tmp_path)
    for token, why in (
        (None, "gated, and no token was sent"),
        (PENDING_TOKEN, "gated, and the token's account has not been granted access (yet)"),
    ):
        downloader = StandInDownloader(remote, tmp_path / "hf", token=token)
        with pytest.raises(FetchError) as refused:
            fetch_all(cfg, downloader)
        assert downloader.calls == [] and not (tmp_path / "hf").exists()
        assert not (tmp_path / "data").exists()
        message = str(refused.value)
        assert message.startswith(
            "the Hugging Face Hub refuses 2 repositories this config reads; nothing was downloaded"
        )
        for repo, model in zip(LLAMA, ("llama2-7b", "llama2-70b"), strict=True):
            assert f"  - {repo} (models.{model}.checkpoints.main): {why}" in message
            assert f"licence and access request: https://huggingface.co/{repo}\n" in message
        assert "bigscience" not in message
        assert "`hf auth login`" in message and "HF_TOKEN" in message
        assert "1-2 days" in message and "e-mail" in message
    # granted: everything is fetched
    manifests = fetch_all(cfg, StandInDownloader(remote, tmp_path / "hf", token=GRANTED_TOKEN))
    assert {m["repo_id"] for m in manifests.values() if m["kind"] == "hub"} >= set(LLAMA)


def test_the_real_downloader_reads_the_hubs_answers_for_gated_repositories(remote, monkeypatch):
    """HubDownloader.check_access against a stand-in of the Hub that answers as the
    real one (status, X-Error-Code, X-Error-Message): huggingface_hub's own error
    parsing turns them into the refusal reasons the message explains."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # 127.0.0.1 only
    with FakeHub(remote) as endpoint:

        def check(repo, token, repo_type="model"):
            try:
                HubDownloader(token=token, endpoint=endpoint).check_access(repo, repo_type)
            except fetch.AccessRefused as err:
                return err.reason, err.detail
            return None

        assert check(LLAMA[0], False) == (
            "gated",
            (
                f"Access to model {LLAMA[0]} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in."
            ),
        )
        reason, detail = check(LLAMA[1], PENDING_TOKEN)
        assert reason == "not_granted" and "you are not in the authorized list" in detail
        assert f"Visit https://huggingface.co/{LLAMA[1]} to ask for access." in detail
        assert check(LLAMA[1], GRANTED_TOKEN) is None
        assert check("bigscience/bloom-7b1", False) is None
        assert check("csebuetnlp/xlsum", False, "dataset") is None
        assert check("org/no-such-model", GRANTED_TOKEN)[0] == "not_found"
        assert check("org/no-such-model", False)[0] == "not_found"
        assert check("bigscience/bloom-7b1", "hf_wrong")[0] == "token"


def test_the_real_downloader_asks_huggingface_hub_for_exactly_those_files(monkeypatch, tmp_path):
    import huggingface_hub

    seen = {}

    def snapshot_download(repo_id, **kwargs):
        seen[repo_id] = kwargs
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    HubDownloader().download("org/m", "step1", "model", ["config.json", "model.safetensors"], None)
    assert seen["org/m"] == {
        "repo_type": "model",
        "revision": "step1",
        "allow_patterns": ["config.json", "model.safetensors"],
        "local_dir": None,
        "token": None,
        "endpoint": None,
    }
    # a URL lands whole under its name, or not at all
    source = tmp_path / "en-fr.txt.zip"
    source.write_bytes(b"PK zip")
    dest = tmp_path / "data" / "bible-uedin" / "en-fr.txt.zip"
    HubDownloader().download_url(source.as_uri(), dest)
    assert dest.read_bytes() == b"PK zip" and not list(dest.parent.glob("*.part"))
    with pytest.raises(OSError):
        HubDownloader().download_url((tmp_path / "missing.zip").as_uri(), tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists() and not list(tmp_path.glob("*.part"))


def test_the_plan_of_every_experiment_config_names_its_whole_grid():
    for path in sorted(EXPERIMENTS.glob("*.yaml")):
        cfg = load_config_file(path)
        items = plan(cfg)
        for c in cfg.grid():
            item = items[f"model-{c.model}-{c.name}"]
            assert (item.repo_id, item.revision, item.repo_type) == (
                c.location,
                c.revision,
                "model",
            )
        assert len([n for n in items if n.startswith("bible-")]) == 8
    assert LANGUAGES[0] == "en"


LOCALRULES = """
import sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

with SnakemakeApi(OutputSettings()) as api:
    workflow = api.workflow(
        resource_settings=ResourceSettings(),
        config_settings=ConfigSettings(configfiles=[Path(sys.argv[1])]),
        snakefile=Path("Snakefile"),
        workdir=Path(sys.argv[2]),
    )._workflow
    print("LOCALRULES " + " ".join(sorted(workflow._localrules)))
"""


def snakemake(*args: str, env: dict | None = None):
    """Snakemake on the repository's workflow, in a subprocess; its CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.mark.workflow
def test_the_fetch_target_plans_one_local_job_per_item(tmp_path):
    """`snakemake --configfile X fetch` plans one fetch job per item of the plan, and
    the fetch rules are local rules: under --profile slurm they run where Snakemake
    runs (the login node), never as SLURM jobs. (A dry run prints every rule alike,
    so the workflow's own list of local rules is read.)"""
    path = EXPERIMENTS / "bloom-7b1-checkpoints.yaml"
    result = snakemake("-n", "--configfile", str(path), "--directory", str(tmp_path), "fetch")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    jobs = [line for line in output.splitlines() if line.endswith("rule fetch_item:")]
    assert len(jobs) == len(plan(load_config_file(path))) == 8 + 1 + 8 + 9 + 1
    # one access check, which every download waits for
    assert [line for line in output.splitlines() if line.endswith("rule check_hub_access:")]
    assert output.index("rule check_hub_access:") < output.index("rule fetch_item:")
    result = subprocess.run(
        [sys.executable, "-c", LOCALRULES, str(path), str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("LOCALRULES"))
    assert line.split()[1:] == ["check_hub_access", "fetch", "fetch_item"], result.stderr[-2000:]


@pytest.mark.workflow
def test_the_fetch_target_stops_at_the_access_check_when_a_gated_repo_is_refused(remote, tmp_path):
    """`snakemake fetch` with no token, against a stand-in of the Hub on 127.0.0.1
    (HF_ENDPOINT): rule check_hub_access asks for every repository of the plan with the
    real HubDownloader, the gated ones are refused, and no download job runs."""
    config = overlay(
        yaml.safe_load((EXPERIMENTS / "llama2-scales.yaml").read_text()), "llama2-scales"
    )
    config_path = tmp_path / "llama2.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    workdir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE_"))}
    env["HF_HOME"] = str(tmp_path / "hf")  # no saved token there
    hub = FakeHub(remote)
    with hub as endpoint:
        result = snakemake(
            *("--configfile", str(config_path), "--directory", str(workdir), "--cores", "1"),
            "fetch",
            env={**env, "HF_ENDPOINT": endpoint},
        )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    log = (workdir / "logs" / "fetch" / "check_hub_access.log").read_text()
    assert "the Hugging Face Hub refuses 2 repositories this config reads" in log, log
    for repo in LLAMA:
        assert f"licence and access request: https://huggingface.co/{repo}" in log
    checks = [(path, token) for path, token in hub.requests if path.endswith("/auth-check")]
    asked = {path.removesuffix("/auth-check") for path, _ in checks}
    assert asked == {
        "/api/models/meta-llama/Llama-2-7b-hf",
        "/api/models/meta-llama/Llama-2-70b-hf",
        "/api/datasets/csebuetnlp/xlsum",
        "/api/datasets/juletxara/xstory_cloze",
    }
    assert {token for _, token in checks} == {None}
    assert "rule fetch_item" not in output and not list(workdir.glob("data/*/*"))
