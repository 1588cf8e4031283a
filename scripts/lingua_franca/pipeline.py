"""One function per workflow job: read the job's inputs, call the package, write
its outputs. Rule scripts unpack ``snakemake`` and call exactly one of these, so
every job can also be run (and tested) without Snakemake.

``settings`` is ``Config.job_settings(model, checkpoint)``: plain values naming
the model, its checkpoint and how to load it. ``outputs`` is a rule's named outputs
(name -> path): each job writes exactly the files its rule declares.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from lingua_franca.logs import get_logger

log = get_logger(__name__)


def load_checkpoint(settings: dict[str, Any], device: str):
    """(model, tokenizer) of one model × checkpoint: Hub revision or local folder."""
    from lingua_franca.models import load_model

    if settings["revision"] is None and not Path(settings["location"]).is_dir():
        # from_pretrained would take the path for a Hub id and say the id is malformed
        raise FileNotFoundError(
            f"{settings['model']} {settings['checkpoint']}: no model folder {settings['location']}"
        )
    log.info(
        "loading %s (revision %s, %s)",
        settings["location"],
        settings["revision"],
        settings["dtype"],
    )
    model, tokenizer = load_model(
        settings["location"],
        revision=settings["revision"],
        dtype=settings["dtype"],
        device=device,
        device_map=settings["device_map"],
        trust_remote_code=settings["trust_remote_code"],
        tokenizer=settings["tokenizer"]["location"],
        tokenizer_revision=settings["tokenizer"]["revision"],
    )
    return model, tokenizer


def _identity(settings: dict[str, Any]) -> dict[str, Any]:
    keys = ("model", "checkpoint", "family", "hub_id", "revision", "step", "location", "tokenizer")
    return {key: settings[key] for key in keys}


def _provenance(settings: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """What made a JSON result: model, checkpoint, revision, package versions, code,
    torch's CPU threads (a float sum, hence now and then a sampled token, can differ
    in its last bit between one thread and two)…"""
    import torch

    from lingua_franca.provenance import code_provenance, package_versions

    return {
        "source": _identity(settings),
        "package_versions": package_versions(),
        "code": code_provenance(),
        "torch_threads": torch.get_num_threads(),
        **extra,
    }


def extract(
    settings: dict[str, Any],
    probe_path: str | Path,
    out: str | Path,
    *,
    languages: list[str],
    batch_size: int,
    device: str,
    add_special_tokens: bool,
) -> None:
    """Probe → activations.zarr. The probe is checked before the model is loaded."""
    from lingua_franca.activations import extract_to_store
    from lingua_franca.atomic import remove_stale_temporaries
    from lingua_franca.corpora import read_probe

    remove_stale_temporaries(out)  # a killed run's store, before this one needs the room
    probe = read_probe(probe_path, languages)
    model, tokenizer = load_checkpoint(settings, device)
    extract_to_store(
        model,
        tokenizer,
        probe,
        out,
        batch_size=batch_size,
        add_special_tokens=add_special_tokens,
        neuron_module=settings["neuron_module"],
        attrs={"source": _identity(settings), "n_parameters": model.num_parameters()},
    )


def metrics(
    store_path: str | Path,
    outputs: dict[str, str | Path],
    *,
    z_threshold: float,
    block_width: int,
    bootstrap: dict[str, Any] | None = None,
    device: str = "cpu",
    threads: int | None = None,
) -> None:
    """activations.zarr → metrics.json, key_neurons.parquet, similarity map, figures;
    with ``bootstrap`` (analysis.bootstrap) their intervals too (docs/method.md §10)."""
    from lingua_franca.bootstrap import BootstrapSettings
    from lingua_franca.metrics import MetricsFiles, compute_metrics, write_outputs
    from lingua_franca.provenance import code_provenance
    from lingua_franca.store import ActivationStore

    files = MetricsFiles.of(outputs)
    store = ActivationStore(store_path)
    result = compute_metrics(
        store,
        z_threshold=z_threshold,
        block_width=block_width,
        bootstrap=BootstrapSettings(**bootstrap) if bootstrap else None,
        device=device,
        workers=threads,
    )
    source = store.attrs.get("source", {})
    provenance = {
        key: store.attrs.get(key)
        for key in (
            "weights_fingerprint",
            "activations_fingerprint",
            "n_parameters",
            "dtype",
            "config_hash",
            "package_versions",
        )
    }
    provenance["code"] = code_provenance()  # this job's; the store's own is in its attrs
    title = f"{source.get('model', '?')} @ {source.get('checkpoint', '?')}"
    write_outputs(result, files, title=title, extra={"source": source, "provenance": provenance})
    log.info("%s: LRDS %.4f, SADS %.4f, SKLR %d", title, result.lrds, result.sads, result.sklr)
    if result.bootstrap is not None:
        ci = result.summary()["ci"]
        log.info(
            "%s: %g%% intervals over %d item resamples: LRDS %s, SADS %s, SKLR %s",
            title,
            100 * ci["level"],
            ci["resamples"],
            ci["lrds"],
            ci["sads"],
            ci["sklr"],
        )


def evaluate(
    settings: dict[str, Any],
    stories_path: str | Path,
    out: str | Path,
    *,
    device: str,
    batch_size: int,
    limit: int | None,
) -> None:
    """XStoryCloze (cross-lingual and monolingual) through lm-eval on the model this
    job loads: the one load serves every task."""
    import tempfile

    from lingua_franca.evaluation import evaluate_xstorycloze, write_results

    data = json.loads(Path(stories_path).read_text(encoding="utf-8"))
    model, tokenizer = load_checkpoint(settings, device)
    with tempfile.TemporaryDirectory(prefix="lf-lm-eval-") as workdir:
        result = evaluate_xstorycloze(
            model,
            tokenizer,
            data["stories"],
            data["missing"],
            workdir,
            batch_size=batch_size,
            limit=limit,
            label=f"model {settings['model']}, checkpoint {settings['checkpoint']}",
        )
    write_results({**result, **_provenance(settings)}, out)


def ablate(
    settings: dict[str, Any],
    metrics_path: str | Path,
    key_neurons_path: str | Path,
    texts: dict[str, str | Path],
    prompts_path: str | Path,
    outputs: dict[str, str | Path],
    *,
    languages: list[str],
    device: str,
    seqlen: int | None,
    batch_size: int,
    seeds: list[int],
    max_new_tokens: int,
    prompts_per_language: int,
    methods: dict[str, str | Path] | None = None,
    bootstrap: dict[str, Any] | None = None,
    sampling: dict[str, Any] | None = None,
    steering: dict[str, Any] | None = None,
    store_path: str | Path | None = None,
) -> None:
    """metrics.json and key neurons + perplexity texts → perplexity under every
    deactivation, the increase table and heatmap, generations. One model load serves
    all conditions, and the further key-neuron methods' regions too: ``methods`` maps
    each to its key_neurons.parquet, and its files are the named outputs
    ``methods_<file>``, lists in the order of ``methods`` (docs/method.md §9). With
    ``bootstrap`` (analysis.bootstrap) each increase gets its interval
    (docs/method.md §10). With ``sampling`` (analysis.generation: samples, temperature,
    top_p, seed, batch_size, methods) the prompts' ``samples`` are continued by sampling
    under every condition of every method (or of ``methods``) and their languages
    identified: the named outputs
    ``language_<file>`` (docs/method.md §11). With ``steering`` (analysis.steering, for
    a steered model) and ``store_path`` (the activation store, for the per-language
    statistics), every method's regions are forced towards each target language: the
    named outputs ``steering_<file>`` (docs/method.md §12; written, saying so, when the
    model is not steered)."""
    import pandas as pd

    from lingua_franca import language_of_generations as language
    from lingua_franca import steering as steer
    from lingua_franca.ablation import (
        AblationFiles,
        compute_ablation,
        compute_method_ablation,
        write_method_outputs,
        write_outputs,
    )
    from lingua_franca.bootstrap import BootstrapSettings

    methods = dict(methods or {})
    outputs = {k: v for k, v in outputs.items() if v not in ([], None)}  # off: empty lists
    files = AblationFiles.of(
        {k: v for k, v in outputs.items() if not k.startswith((METHODS_, LANGUAGE_, STEERING_))}
    )
    steering_outputs = {k: v for k, v in outputs.items() if k.startswith(STEERING_)}
    steering_files = steer.SteeringFiles.of(steering_outputs) if steering_outputs else None
    if steering and (steering_files is None or store_path is None):
        raise ValueError("steering needs the activation store and the steering_* outputs")
    method_files = _method_files(outputs, list(methods))
    language_outputs = {k: v for k, v in outputs.items() if k.startswith(LANGUAGE_)}
    language_files = language.LanguageFiles.of(language_outputs) if language_outputs else None
    method_tables = {name: pd.read_parquet(path) for name, path in methods.items()}
    summary = json.loads(Path(metrics_path).read_text(encoding="utf-8"))
    key_neurons = pd.read_parquet(key_neurons_path)
    widths = [layer["width"] for layer in summary["per_layer"]]
    evaluation_texts = {lang: Path(texts[lang]).read_text(encoding="utf-8") for lang in languages}
    all_prompts = json.loads(Path(prompts_path).read_text(encoding="utf-8"))
    prompts, samples = all_prompts["prompts"], all_prompts.get("samples") or {}
    if samples and language_files is None:
        raise ValueError(f"sampled prompts in {prompts_path}, but no {LANGUAGE_}* outputs")
    intervals = BootstrapSettings(**bootstrap) if bootstrap else None
    from lingua_franca.language_id import Identifier

    identifier = Identifier(languages)  # a language it cannot name stops here, before the model
    model, tokenizer = load_checkpoint(settings, device)
    result = compute_ablation(
        model,
        tokenizer,
        key_neurons,
        widths,
        evaluation_texts,
        prompts,
        languages,
        seqlen=seqlen or settings["context_length"],  # None: the model's own context
        batch_size=batch_size,
        seeds=seeds,
        max_new_tokens=max_new_tokens,
        prompts_per_language=prompts_per_language,
        neuron_module=settings["neuron_module"],
        label=f"model {settings['model']}, checkpoint {settings['checkpoint']}",
        bootstrap=intervals,
    )
    further = {
        name: compute_method_ablation(
            model,
            tokenizer,
            table,
            widths,
            evaluation_texts,
            languages,
            method=name,
            reference=result,
            seqlen=seqlen or settings["context_length"],
            batch_size=batch_size,
            seeds=seeds,
            neuron_module=settings["neuron_module"],
            label=f"model {settings['model']}, checkpoint {settings['checkpoint']}, {name} regions",
            bootstrap=intervals,
        )
        for name, table in method_tables.items()
    }
    label_greedy(result.generations, tokenizer, identifier)
    label = f"{settings['model']} @ {settings['checkpoint']}"
    from lingua_franca.interventions import intervene
    from lingua_franca.methods import PAPER_METHOD

    if samples:
        regions = {PAPER_METHOD: result.regions} | {n: r.regions for n, r in further.items()}
        if sampling.get("methods"):  # analysis.generation.methods: a subset
            regions = {n: r for n, r in regions.items() if n in sampling["methods"]}
        languages_of = language.run(
            model,
            tokenizer,
            language.conditions_of(regions),
            samples,
            languages,
            max_new_tokens=max_new_tokens,
            batch_size=sampling["batch_size"],
            sampling=_sampling(sampling),
            apply=lambda interventions: intervene(model, interventions, settings["neuron_module"]),
            identifier=identifier,
            label=label,
        )
    else:
        languages_of = language.LanguageResult(pd.DataFrame(), pd.DataFrame(), {}, label)
    steered = steer.SteeringResult(pd.DataFrame(), pd.DataFrame(), {"steered": False}, label)
    if steering:
        tables = {PAPER_METHOD: key_neurons} | method_tables
        steered = _steer(
            model,
            tokenizer,
            tables,
            widths,
            samples,
            languages,
            store_path,
            settings,
            steering,
            sampling,
            max_new_tokens,
            identifier,
            label,
            batch_size,
        )
    fingerprint = summary.get("provenance", {}).get("weights_fingerprint")
    extra = _provenance(
        settings, weights_fingerprint=fingerprint, n_parameters=model.num_parameters()
    )
    shown = language.shown_texts(languages_of, PAPER_METHOD)
    write_outputs(
        result,
        files,
        extra=extra,
        sampled=shown,
        sampled_caption=(
            f"sampled continuations of {max_new_tokens} new tokens (temperature "
            f"{sampling['temperature']}, top-p {sampling['top_p']}, end-of-sequence suppressed; "
            f"docs/method.md §11), the first {len({r['prompt_index'] for r in shown})} "
            "prompts of each language; all in sampled_generations.jsonl"
        )
        if shown
        else "",
    )
    for name, method_result in further.items():
        write_method_outputs(method_result, method_files[name], extra=extra)
    if language_files is not None:
        language.write_outputs(languages_of, language_files, extra=extra)
    if steering_files is not None:
        steer.write_outputs(steered, steering_files, extra=extra)
    log.info(
        "ablation of %s @ %s written to %s",
        settings["model"],
        settings["checkpoint"],
        files.summary.parent,
    )


def _steer(
    model,
    tokenizer,
    tables,
    widths,
    samples,
    languages,
    store_path,
    settings,
    steering,
    sampling,
    max_new_tokens,
    identifier,
    label,
    score_batch_size,
):
    """The steering experiment on the loaded model (docs/method.md §12): every method's
    regions (``tables``: method → key-neuron table) forced towards each target, with the
    per-language median and mean pooled activations of the store; the fluency pass in
    batches of ``score_batch_size`` (analysis.batch_size)."""
    from lingua_franca import steering as steer
    from lingua_franca.interventions import intervene_rows
    from lingua_franca.store import ActivationStore, language_statistics

    options = steer.SteeringSettings(
        samples=steering["samples"],
        alpha=steering["alpha"],
        sweep=tuple(steering["sweep"]),
        start=steering["start"],
        seed=steering["seed"],
    )
    store = ActivationStore(store_path)
    median, mean = (language_statistics(store, s) for s in ("median", "mean"))
    regions = steer.regions(tables, languages, widths, options.sweep)
    return steer.run(
        model,
        tokenizer,
        steer.conditions(regions, median, mean, widths, options),
        samples,
        languages,
        settings=options,
        max_new_tokens=max_new_tokens,
        batch_size=sampling["batch_size"],
        sampling=_sampling(sampling),
        apply_rows=lambda conditions, rows: intervene_rows(
            model, conditions, rows, settings["neuron_module"]
        ),
        identifier=identifier,
        label=label,
        score_batch_size=score_batch_size,
    )


def _sampling(options: dict[str, Any]):
    """analysis.generation's sampling protocol, and the rows a generate call computes."""
    from lingua_franca.generations import Sampling

    return Sampling(
        options["temperature"], options["top_p"], options["seed"], options.get("rows_per_call")
    )


def label_greedy(records: list[dict], tokenizer, identifier) -> None:
    """The language of each greedy continuation (without special tokens), added to its
    record (``label``, ``probability``; docs/method.md §11)."""
    texts = [tokenizer.decode(r["continuation_ids"], skip_special_tokens=True) for r in records]
    labels = identifier.labels(texts)
    for record, row in zip(records, labels.itertuples()):
        record["label"] = row.label
        record["probability"] = None if row.probability != row.probability else row.probability


METHODS_ = "methods_"  # the ablation rule's outputs of the further key-neuron methods
LANGUAGE_ = "language_"  # its outputs of the language statistics (docs/method.md §11)
STEERING_ = "steering_"  # its outputs of the steering experiment (docs/method.md §12)


def _method_files(outputs: dict[str, Any], methods: list[str]) -> dict[str, Any]:
    """{method: MethodAblationFiles} from the named outputs ``methods_<file>``, each a
    list with one path per method, in the order of ``methods``."""
    from lingua_franca.ablation import MethodAblationFiles

    lists = {
        k.removeprefix(METHODS_): list(v) for k, v in outputs.items() if k.startswith(METHODS_)
    }
    wrong = {kind: len(paths) for kind, paths in lists.items() if len(paths) != len(methods)}
    if wrong or (methods and not lists):
        raise ValueError(
            f"the ablation's outputs {sorted(METHODS_ + k for k in lists)} must hold one "
            f"file per key-neuron method {methods}: {wrong or 'none given'}"
        )
    return {
        name: MethodAblationFiles.of({kind: paths[i] for kind, paths in lists.items()})
        for i, name in enumerate(methods)
    }


def select_key_neurons(
    method: str,
    store_path: str | Path,
    outputs: dict[str, str | Path],
    *,
    settings: dict[str, Any],
    block_width: int,
) -> None:
    """activations.zarr → a further method's regions (key_neurons.parquet, counts per
    language and per layer, selection.json; docs/method.md §9). A store written before
    extraction counted activity stops LAPE here, saying to re-extract it."""
    from lingua_franca.methods import SelectionFiles, select
    from lingua_franca.provenance import code_provenance
    from lingua_franca.store import ActivationStore

    files = SelectionFiles.of(outputs)
    store = ActivationStore(store_path)
    selection = select(method, store, settings, block_width)
    source = store.attrs.get("source", {})
    provenance = {key: store.attrs.get(key) for key in ("weights_fingerprint", "config_hash")}
    provenance["code"] = code_provenance()
    selection.write(files, extra={"settings": settings, "source": source, "provenance": provenance})
    log.info(
        "%s @ %s: %s regions, %d neurons over %d languages",
        source.get("model", "?"),
        source.get("checkpoint", "?"),
        method,
        len(selection.table),
        len(selection.languages),
    )


def compare_key_neurons(
    metrics_path: str | Path,
    tables: dict[str, str | Path],
    outputs: dict[str, str | Path],
) -> None:
    """Each method's key_neurons.parquet ({method: path}, the paper's first) →
    overlap.csv and its figure (docs/method.md §9). metrics.json gives the languages,
    the layer widths and the checkpoint's name."""
    import pandas as pd

    from lingua_franca.comparison import OverlapFiles, overlap_table, write_overlap

    files = OverlapFiles.of(outputs)
    summary = json.loads(Path(metrics_path).read_text(encoding="utf-8"))
    widths = [layer["width"] for layer in summary["per_layer"]]
    frames = {name: pd.read_parquet(path) for name, path in tables.items()}
    overlap = overlap_table(frames, summary["languages"], widths)
    source = summary.get("source", {})
    title = f"{source.get('model', '?')} @ {source.get('checkpoint', '?')}: key-neuron methods"
    write_overlap(overlap, files, title=title)


def aggregate(
    checkpoints: list[dict[str, Any]],
    inputs: dict[str, list[str | Path]],
    outputs: list[str | Path],
    methods: list[str] | None = None,
    samples: int = 0,
    steering: bool = False,
) -> None:
    """Per-checkpoint results → CSV tables, figures across checkpoints and scales, and
    summary.html (the main tables, for the report). ``checkpoints``: each one's
    identity (Config.identity); ``inputs``: kind (metrics, xstorycloze, ablation) ->
    one file per checkpoint, in the same order; ``outputs``: every file the rule
    declares, in one folder of their own. ``methods``: the key-neuron methods, the
    paper's first; with further ones, ``inputs`` also holds ``overlap`` (one per
    checkpoint) and ``methods_ablation`` (per checkpoint, one per further method).
    ``samples`` (analysis.generation.samples): with the language statistics on,
    ``inputs`` holds ``language`` (each checkpoint's language_of_generations.json);
    with ``steering`` (analysis.steering.enabled), ``steering`` (each checkpoint's
    steering.json)."""
    import pandas as pd

    from lingua_franca.aggregate import (
        PROVENANCE,
        SUMMARY_PAGE,
        checkpoint_records,
        write_provenance,
        write_summary,
    )
    from lingua_franca.comparison import write_method_summary
    from lingua_franca.language_of_generations import SUMMARY_TABLE, write_language_summary
    from lingua_franca.steering import SUMMARY_TABLE as STEERING_TABLE
    from lingua_franca.steering import write_steering_summary

    by_name = {Path(p).name: Path(p) for p in outputs}
    folders = {path.parent for path in by_name.values()}
    if (
        len(by_name) != len(outputs)
        or len(folders) != 1
        or not {SUMMARY_PAGE, PROVENANCE} <= set(by_name)
    ):
        raise ValueError(
            f"the summary's outputs must be distinct names in one folder, {SUMMARY_PAGE}"
            f" and {PROVENANCE} among them: {[str(p) for p in outputs]}"
        )
    inputs = dict(inputs)
    overlap, methods_ablation = inputs.pop("overlap", []), inputs.pop("methods_ablation", [])
    language, steered = inputs.pop("language", []), inputs.pop("steering", [])
    records = checkpoint_records(checkpoints, **inputs)
    paths = write_summary(records, by_name)
    methods = list(methods or ["zscore"])
    further = methods[1:]
    if further:
        if len(overlap) != len(records) or len(methods_ablation) != len(records) * len(further):
            raise ValueError(
                f"{len(overlap)} overlap and {len(methods_ablation)} method ablation files "
                f"for {len(records)} checkpoints × methods {further}"
            )
        for i, record in enumerate(records):
            record["overlap"] = overlap[i]
            per = methods_ablation[i * len(further) : (i + 1) * len(further)]
            record["methods_ablation"] = dict(zip(further, per))
        paths.update(write_method_summary(records, methods, by_name))
    write_provenance(records, by_name[PROVENANCE])
    if samples:
        language_records = checkpoint_records(checkpoints, language=language)
        paths.update(write_language_summary(language_records, by_name, samples))
    if steering:
        steering_records = checkpoint_records(checkpoints, steering=steered)
        paths.update(write_steering_summary(steering_records, by_name, steering))
    sections = []
    names = ["metrics.csv", "changes.csv", "xstorycloze.csv"]
    names += ["methods.csv"] * bool(further) + [SUMMARY_TABLE] * bool(samples)
    names += [STEERING_TABLE] * bool(steering)
    for name in names:
        table = pd.read_csv(paths[name])
        html = table.to_html(index=False, na_rep="—", float_format="{:.4g}".format)
        sections.append(f"<h2>{name}</h2>\n{html}")
    style = (
        "body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse} "
        "td,th{border:1px solid #ccc;padding:2px 6px}"
    )
    page = (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><style>{style}</style></head>"
        f"<body>\n{chr(10).join(sections)}\n</body></html>\n"
    )
    by_name[SUMMARY_PAGE].write_text(page, encoding="utf-8")
    # the folder is this job's alone: what the grid no longer makes (figures of a
    # model removed from the config) would otherwise sit beside the fresh files
    (folder,) = folders
    for stale in sorted(folder.iterdir()):
        if stale.name not in by_name:
            log.info("removing %s: not part of the current grid's summary", stale)
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            else:
                stale.unlink()
