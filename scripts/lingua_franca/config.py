"""Load, validate and normalise the workflow config.

The only place that knows the config's shape. The JSON schema in
``resources/schemas/config.schema.yaml`` is the reference (types, defaults,
descriptions); this module fills its defaults, checks what a schema cannot (toy
checkpoints among the saved steps, languages known to the project), and turns the
result into plain objects that rules and scripts use.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from lingua_franca.languages import get_language

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "resources" / "schemas" / "config.schema.yaml"
STEP_FOLDER = re.compile(r"^step-(\d+)$")


class ConfigError(ValueError):
    """The config does not match the schema; the message names each offending key."""


@dataclass(frozen=True)
class Checkpoint:
    model: str
    name: str
    revision: str | None
    folder: str | None
    step: int | None
    # what from_pretrained gets: a Hub id or a local folder; None for a toy model's
    # checkpoint, a folder inside the one its training job writes (Config.job_settings)
    location: str | None


@dataclass(frozen=True)
class Model:
    name: str
    family: str
    hub_id: str | None
    path: str | None  # local folder (toy models: None, the workflow says where it trains them)
    toy: dict[str, Any] | None
    parameters: float | None
    dtype: str
    trust_remote_code: bool
    device_map: str | None
    gpus: int | None
    neuron_module: str | None
    context_length: int | None
    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)
    # {"location": ..., "revision": ...}; None: each checkpoint is its own tokenizer
    tokenizer: dict[str, str | None] | None = None

    def tokenizer_source(self, location: str, revision: str | None) -> dict[str, str | None]:
        """Where the checkpoint at ``location`` (a Hub id or a folder) and ``revision``
        takes its tokenizer from: the model's ``tokenizer`` entry, else itself."""
        if self.tokenizer is not None:
            return dict(self.tokenizer)
        return {"location": location, "revision": revision}


@dataclass(frozen=True)
class Config:
    languages: list[str]
    data: dict[str, Any]
    toy: dict[str, Any] | None
    models: dict[str, Model]
    analysis: dict[str, Any]

    def checkpoint(self, model: str, checkpoint: str) -> Checkpoint:
        return self.models[model].checkpoints[checkpoint]

    def identity(self, model: str, checkpoint: str) -> dict[str, Any]:
        """What names one model × checkpoint in results and summary tables."""
        m, c = self.models[model], self.checkpoint(model, checkpoint)
        return {
            "model": m.name,
            "checkpoint": c.name,
            "family": m.family,
            "hub_id": m.hub_id,
            "revision": c.revision,
            "step": c.step,
            "parameters": m.parameters,
        }

    def steered(self, model: str) -> bool:
        """Whether the steering experiment runs for ``model`` (docs/method.md §12)."""
        steering = self.analysis["steering"]
        return bool(steering["enabled"]) and model in (steering["models"] or self.models)

    def job_settings(
        self, model: str, checkpoint: str, model_folder: str | None = None
    ) -> dict[str, Any]:
        """What a model × checkpoint job needs to load and describe its model: plain
        values, so that Snakemake reruns the job when one of them changes.
        ``model_folder``: where a toy model was trained (its training job's output),
        which holds its checkpoints; required for toy models, unused otherwise."""
        m, c = self.models[model], self.checkpoint(model, checkpoint)
        location = c.location
        if m.toy is not None:
            if model_folder is None:
                raise ValueError(f"{model} is a toy model: give the folder its training job wrote")
            location = str(Path(model_folder) / c.folder)
        identity = self.identity(model, checkpoint)
        # the keys in the order that older runs recorded (Snakemake compares the repr)
        return {
            **{key: identity[key] for key in ("model", "checkpoint", "family")},
            "location": location,
            **{key: identity[key] for key in ("hub_id", "revision", "step", "parameters")},
            "dtype": m.dtype,
            "device_map": m.device_map,
            "trust_remote_code": m.trust_remote_code,
            "neuron_module": m.neuron_module,
            "context_length": m.context_length,
            "tokenizer": m.tokenizer_source(location, c.revision),
        }

    def grid(self) -> list[Checkpoint]:
        """Every model × checkpoint, in config order."""
        return [c for m in self.models.values() for c in m.checkpoints.values()]

    @property
    def uses_hub(self) -> bool:
        """Whether any model or data source may be read from the Hub (data sources: an
        ``hf://`` location; the fetch step copies Hub data into local folders)."""
        return any(m.hub_id for m in self.models.values()) or any(
            "://" in str(section["options"].get("dir", "")) for section in self.data.values()
        )

    @property
    def toy_models(self) -> list[Model]:
        return [m for m in self.models.values() if m.toy is not None]

    def data_languages(self, kind: str) -> list[str] | None:
        """The languages data section ``kind`` (probe, perplexity, xstorycloze) is read
        for: the probe languages, except for the stories, which have their own list
        (None: every language the story source holds; docs/method.md §6)."""
        if kind == "xstorycloze":
            return self.data["xstorycloze"].get("languages")
        return self.languages

    def local_paths(self) -> list[tuple[str, str, str]]:
        """(config key, path, kind) of every local file or folder the config names,
        for the planning-time checks (lingua_franca.checks). ``kind`` is ``file``,
        ``folder`` or ``model`` (a folder holding a Hugging Face ``config.json``).
        Hub locations and what the workflow makes itself (toy models) are left out;
        the files a data source reads inside its folder come from
        ``lingua_franca.corpora.source_files``."""
        paths = []
        for name, m in self.models.items():
            if m.toy is not None:
                continue
            if m.path is not None:
                paths.append((f"models.{name}.path", m.path, "folder"))
            paths += [
                (f"models.{name}.checkpoints.{c.name}.folder", c.location, "model")
                for c in m.checkpoints.values()
                if c.revision is None  # a local folder
            ]
        for i, text in enumerate((self.toy or {}).get("training_text", [])):
            paths.append((f"toy.training_text.{i}", text, "file"))
        for kind, section in self.data.items():
            for option, what in (("dir", "folder"), ("path", "file")):
                value = section["options"].get(option)
                if isinstance(value, str) and "://" not in value:
                    paths.append((f"data.{kind}.options.{option}", value, what))
        return paths


def load_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _extend_with_defaults(validator_class):
    """A validator that fills each property's ``default`` as it validates (the
    jsonschema FAQ recipe, as snakemake.utils.validate does)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _extend_with_defaults(jsonschema.Draft202012Validator)


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line per error, naming the key: what a researcher needs to fix it."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        if error.schema.get("additionalProperties") is False:
            keys = ", ".join(_key(path + [e]) for e in extra)
            hint = f" (allowed here: {', '.join(allowed)})" if allowed else ""
            return f"unknown key {keys}{hint}"
    if error.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        name = missing[0] if missing else error.message
        return f"missing required entry {_key(path + [name])}"
    if error.validator == "oneOf" and "errorMessage" in error.schema:
        return f"{_key(path)}: {error.schema['errorMessage']}"
    if "errorMessage" in error.schema:  # a plain sentence instead of the schema's text
        return f"{_key(path)}: {error.instance!r} {error.schema['errorMessage']}"
    if error.validator == "propertyNames":
        return f"{_key(path)}: invalid name {error.instance!r} ({error.message})"
    return f"{_key(path)}: {error.message}"


def validate(config: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate against the schema, fill defaults; return a new dict.

    Raises ConfigError listing every problem, each with its key.
    """
    config = copy.deepcopy(config) if config is not None else {}
    validator = _Validator(schema or load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n".join(f"  - {_describe(e)}" for e in errors)
        raise ConfigError(f"invalid config ({len(errors)} problem(s)):\n{lines}")
    return config


def _check_toy(name: str, toy: dict[str, Any]) -> None:
    """What the schema cannot say about a toy model, and training would find out
    only after minutes."""
    key = f"models.{name}.toy"
    late = sorted(s for s in toy["save_steps"] if s > toy["steps"])
    if late:
        raise ConfigError(f"{key}.save_steps: {late} go beyond steps ({toy['steps']})")
    if toy["hidden_size"] % toy["num_heads"]:
        raise ConfigError(
            f"{key}.num_heads: {toy['num_heads']} does not divide hidden_size ({toy['hidden_size']})"
        )
    if toy["architecture"] == "bloom" and toy["intermediate_size"] not in (
        None,
        4 * toy["hidden_size"],
    ):
        raise ConfigError(
            f"{key}.intermediate_size: BLOOM's MLP width is 4 × hidden_size; leave it unset"
        )


def _checkpoints(name: str, entry: dict[str, Any], model_root: str | None) -> dict[str, Checkpoint]:
    toy = entry.get("toy")
    if toy:
        _check_toy(name, toy)
    ckpts = entry.get("checkpoints")
    if ckpts is None:  # defaults: every saved toy step, the Hub's main, the folder itself
        if toy:
            ckpts = {f"step-{s}": {"folder": f"step-{s}"} for s in sorted(toy["save_steps"])}
        elif entry.get("hub_id"):
            ckpts = {"main": {"revision": "main"}}
        else:
            ckpts = {"final": {"folder": "."}}
    out = {}
    for cname, c in ckpts.items():
        key = f"models.{name}.checkpoints.{cname}"
        revision, folder, step = c.get("revision"), c.get("folder"), c.get("step")
        if toy:
            m = STEP_FOLDER.match(folder or "")
            if revision is not None or not m:
                raise ConfigError(f"{key}: a toy model's checkpoint is a folder 'step-N'")
            saved = int(m.group(1))
            if saved not in toy["save_steps"]:
                raise ConfigError(
                    f"{key}: step {saved} is not among models.{name}.toy.save_steps "
                    f"{sorted(toy['save_steps'])}; analyse a saved step, or add it there "
                    "(which retrains the model)"
                )
            step = saved if step is None else step
        if revision is not None:
            if entry.get("hub_id") is None:
                raise ConfigError(
                    f"{key}: 'revision' needs the model's 'hub_id' (use 'folder' for local checkpoints)"
                )
            location = entry["hub_id"]
        elif toy:
            location = None  # inside the folder the workflow trains the model in
        else:
            location = str(Path(model_root or ".") / folder)  # an absolute folder stays absolute
        out[cname] = Checkpoint(name, cname, revision, folder, step, location)
    return out


def _tokenizer(name: str, entry: dict[str, Any] | None) -> dict[str, str | None] | None:
    if entry is None:
        return None
    if entry.get("path") is not None and entry.get("revision") is not None:
        raise ConfigError(
            f"models.{name}.tokenizer: 'revision' needs 'hub_id' (a local 'path' has none)"
        )
    if entry.get("hub_id") is not None:
        return {"location": entry["hub_id"], "revision": entry.get("revision", "main")}
    return {"location": str(entry["path"]), "revision": None}


def _check_steering(config: dict[str, Any]) -> None:
    """Steered models must be configured, and the prompted continuations need enough
    sampled prompts of the other languages (docs/method.md §12)."""
    steering, generation = config["analysis"]["steering"], config["analysis"]["generation"]
    if not steering["enabled"]:
        return
    unknown = [m for m in steering["models"] or [] if m not in config["models"]]
    if unknown:
        raise ConfigError(
            f"analysis.steering.models: {unknown} are not models of this config "
            f"({', '.join(config['models'])})"
        )
    others = len(config["languages"]) - 1
    need = -(-steering["samples"] // others) if others else 0
    if generation["samples"] < need:
        raise ConfigError(
            f"analysis.steering.samples: {steering['samples']} prompted continuations per "
            f"target cycle through the other {others} languages' sampled prompts, {need} of "
            f"each; analysis.generation.samples is {generation['samples']}: raise it to "
            f"{need} or lower steering.samples"
        )


def normalise(config: dict[str, Any]) -> Config:
    """Plain objects from a validated config (see :func:`validate`)."""
    for i, code in enumerate(config["languages"]):
        try:
            get_language(code)
        except ValueError as err:
            raise ConfigError(f"languages.{i}: {err}") from None
    for i, code in enumerate(config["data"]["xstorycloze"].get("languages") or []):
        try:
            get_language(code)
        except ValueError as err:
            raise ConfigError(f"data.xstorycloze.languages.{i}: {err}") from None
    _check_steering(config)
    sampled = config["analysis"]["generation"]["methods"]
    absent = [m for m in sampled or [] if m not in config["analysis"]["key_neuron_methods"]]
    if absent:
        raise ConfigError(
            f"analysis.generation.methods: {absent} not in analysis.key_neuron_methods "
            f"({', '.join(config['analysis']['key_neuron_methods'])}): only the regions of a "
            "method that runs can be deactivated"
        )
    prompts = config["analysis"]["generation"]["prompts"]
    if prompts is not None:
        absent = [lang for lang in config["languages"] if lang not in prompts]
        if absent:
            raise ConfigError(
                f"analysis.generation.prompts: no prompts for {absent}; give every language "
                "its prompts, or remove the key (Genesis or the first probe items are used)"
            )
    models = {}
    for name, entry in config["models"].items():
        if entry.get("toy") is not None and config.get("toy") is None:
            raise ConfigError(f"models.{name}.toy: toy models need the top-level 'toy' section")
        root = entry.get("path")
        models[name] = Model(
            name=name,
            family=entry.get("family") or name,
            hub_id=entry.get("hub_id"),
            path=root,
            toy=entry.get("toy"),
            parameters=entry["parameters"],
            dtype=entry["dtype"],
            trust_remote_code=entry["trust_remote_code"],
            device_map=entry["device_map"],
            gpus=entry["gpus"],
            neuron_module=entry["neuron_module"],
            context_length=entry["context_length"],
            checkpoints=_checkpoints(name, entry, root),
            tokenizer=_tokenizer(name, entry.get("tokenizer")),
        )
    return Config(
        languages=list(config["languages"]),
        data=config["data"],
        toy=config.get("toy"),
        models=models,
        analysis=config["analysis"],
    )


def load_config(config: dict[str, Any]) -> Config:
    """Validate (filling defaults) and normalise: the Snakefile's one call."""
    return normalise(validate(config))


def load_config_file(path: str | Path) -> Config:
    with open(path, encoding="utf-8") as fh:
        return load_config(yaml.safe_load(fh))
