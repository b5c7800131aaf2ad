"""Run configuration: the keys a user may set for a run, with their defaults and checks.

A run's configuration comes from object metadata, a sidecar `<stem>.droptune.yaml`, the nearest
folder `droptune.yaml`, and the deployment defaults (environment), first match wins per key.
This module defines the keys and builds a `RunConfig` from merged mappings; unknown keys and
wrong values are errors with a sentence that says what to write instead.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Self, get_args

import yaml

from droptune.errors import ConfigError

Backend = Literal["custom", "gemini"]
BACKENDS: tuple[str, ...] = get_args(Backend)
DeployStrategy = Literal["alongside", "replace"]
DEPLOY_STRATEGIES: tuple[str, ...] = get_args(DeployStrategy)
DEFAULT_CUSTOM_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_GEMINI_MODEL = "gemini-2.5-flash"


def setting(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


def read_settings(path: str | Path) -> dict[str, Any]:
    """The keys and values a YAML settings file sets itself (no defaults filled in)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    return parse_settings(text, str(path))


def merge_settings(
    layers: Iterable[tuple[str, Mapping[str, Any]]],
) -> tuple[dict[str, Any], dict[str, str]]:
    """(settings, the source of each) of several sources, first to set a key wins (`-` in a
    key read as `_`).

    >>> merge_settings([("sidecar", {"epochs": 2}), ("folder", {"epochs": 5, "test-fraction": 0.2})])
    ({'epochs': 2, 'test_fraction': 0.2}, {'epochs': 'sidecar', 'test_fraction': 'folder'})
    """
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, values in layers:
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in merged:
                merged[name], sources[name] = value, source
    return merged, sources


def relative_holdout(value: str) -> str | None:
    """A `validation_file` that names a file relative to the data file's folder, as it is;
    None for a gs:// URI (read where it is); ConfigError for anything else."""
    if value.startswith("gs://"):
        return None
    if value.startswith("/") or ".." in value.split("/") or "://" in value:
        raise ConfigError(
            f"validation_file {value!r}: give a gs:// URI or a name relative to the data "
            "file's folder (e.g. _holdout/val.jsonl)"
        )
    return value


def parse_settings(text: str | bytes, where: str) -> dict[str, Any]:
    """The keys and values of YAML settings read from `where`."""
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot read {where}: it is not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values (key: value per line)")
    return string_keys(values)


def string_keys(value: Any) -> Any:
    """YAML reads `0:` as a number; every key droptune reads is text (`'0'` names a column).

    >>> string_keys({"column_map": {0: "prompt"}})
    {'column_map': {'0': 'prompt'}}
    """
    if isinstance(value, dict):
        return {str(key): string_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [string_keys(item) for item in value]
    return value


class Settings:
    """Mixin for config dataclasses: build from mappings and YAML (unknown keys rejected with a
    did-you-mean, strings from metadata or the command line coerced), dump, and describe."""

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str = "configuration") -> Self:
        """Build from a mapping; unknown keys and wrong types raise `ConfigError`."""
        known = {f.name: f for f in fields(cls)}
        unknown = [key for key in values if key.replace("-", "_") not in known]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key.replace("-", "_"), known, n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError(
                f"unknown key(s) in {source}: {', '.join(hints)}. Known keys: {', '.join(known)}"
            )
        kwargs = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            kwargs[name] = _coerce(name, value, known[name], source)
            _check_storable(name, kwargs[name], source)
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> Self:
        return cls.from_mapping(read_settings(path), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def require_positive(self, *names: str) -> None:
        """Raise `ConfigError` for the first of the counts `names` below 1."""
        for name in names:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1; got {getattr(self, name)}")

    @classmethod
    def help_table(cls) -> list[tuple[str, str, str]]:
        """(key, default, help) for docs and `--help`."""
        rows = []
        for f in fields(cls):
            default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
            rows.append((f.name, repr(default), f.metadata["help"]))
        return rows


@dataclass
class RunConfig(Settings):
    backend: Backend = setting(
        "Which tuning backend: custom (open model, LoRA) or gemini.", default="custom"
    )
    base_model: str | None = setting(
        "Base model: HF hub id, local dir, gs:// dir or .gguf file (custom); Gemini model id "
        "(gemini). Default: the deployment's, else SmolLM2-135M-Instruct / gemini-2.5-flash.",
        default=None,
    )
    format: str | None = setting("Force the dataset format instead of detecting it.", default=None)
    column_map: dict[str, str] = setting(
        "Rename fields (or CSV columns; '0', '1', ... for files without header) before "
        "detection, e.g. {query: prompt, reply: completion}.",
        default_factory=dict,
    )
    system_instruction: str | None = setting(
        "A system turn given to every conversation that has none, e.g. the task and its labels "
        "for text + label data; `droptune runs ask` sends it too.",
        default=None,
    )
    max_length: int = setting(
        "Custom backend: tokens per example; longer ones are truncated.", default=2048
    )
    epochs: int | None = setting(
        "Passes over the training data (the trainer's and Gemini tuning's, and the token and "
        "cost totals'); none: sized to the data (droptune/sizing.py, docs/training.md), and "
        "Gemini tuning's own default.",
        default=None,
    )
    validation_fraction: float = setting("Share of examples held out for validation.", default=0.1)
    test_fraction: float = setting(
        "Share of examples held out for the baseline-vs-tuned test.", default=0.1
    )
    validation_file: str | None = setting(
        "A separate validation file (path or gs://); it replaces the validation split.",
        default=None,
    )
    min_examples: int = setting("Fewest valid examples a run accepts.", default=10)
    max_issues_per_code: int = setting(
        "Issue examples stored per code (all are counted).", default=20
    )
    price_per_million_tokens: float | None = setting(
        "USD per 1M training tokens for the cost estimate; default: droptune's price table.",
        default=None,
    )
    training: dict[str, Any] = setting(
        "Custom backend: trainer settings (list them with `droptune-trainer config`), "
        "e.g. {max_steps: 200, lora_rank: 8}.",
        default_factory=dict,
    )
    gate: dict[str, Any] = setting(
        "Quality gate: {metric: accuracy|macro_f1|exact_match|rouge_l, min_delta: 0.0, "
        "require_significance: true}; a tuned model that misses it is not deployed (GATED). "
        "Default metric: accuracy for labelled data, else rouge_l. By default the delta's 95% "
        "interval must lie above min_delta (from fewer than 20 test examples: the delta "
        "itself); require_significance: false asks only delta > min_delta.",
        default_factory=dict,
    )
    machine_type: str = setting(
        "Custom backend: Vertex AI machine type of the training job.", default="g2-standard-8"
    )
    accelerator_type: str = setting(
        "Custom backend: GPU of the training job (NVIDIA_L4, NVIDIA_H100_80GB, ...; "
        "ACCELERATOR_TYPE_UNSPECIFIED for none).",
        default="NVIDIA_L4",
    )
    accelerator_count: int = setting("Custom backend: GPUs per training job.", default=1)
    training_machines: int = setting(
        "Custom backend: machines that train data-parallel, each a machine_type with "
        "accelerator_count GPUs (one process per GPU on every machine).",
        default=1,
    )
    serving_machine_type: str = setting(
        "Custom backend: machine type of the endpoint that serves the tuned model.",
        default="g2-standard-8",
    )
    serving_accelerator_type: str = setting(
        "Custom backend: GPU of the serving machine (ACCELERATOR_TYPE_UNSPECIFIED for none).",
        default="NVIDIA_L4",
    )
    serving_accelerator_count: int = setting("Custom backend: GPUs per serving machine.", default=1)
    deploy_strategy: DeployStrategy = setting(
        "Custom backend: alongside (the new model is deployed and smoke-tested beside the one "
        "serving, then that one is retired: no downtime, two serving machines' GPU quota "
        "during the switch) or replace (earlier models are undeployed first: one machine's "
        "quota, and the endpoint answers nothing until the new model is deployed).",
        default="alongside",
    )
    training_timeout_minutes: int = setting(
        "How long the workflow waits for training before it cancels the job.", default=360
    )
    learning_rate_multiplier: float | None = setting(
        "Gemini backend: scales the service's recommended learning rate (default: 1.0).",
        default=None,
    )
    adapter_size: str | None = setting(
        "Gemini backend: LoRA adapter size (ADAPTER_SIZE_ONE, _TWO, _FOUR, _EIGHT or _SIXTEEN); "
        "default: the service's choice for the base model.",
        default=None,
    )
    eval_max_output_tokens: int = setting(
        "Most tokens generated per test answer when base and tuned models are compared.",
        default=256,
    )

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}; got {self.backend!r}")
        if self.deploy_strategy not in DEPLOY_STRATEGIES:
            raise ConfigError(
                f"deploy_strategy must be one of {', '.join(DEPLOY_STRATEGIES)}; "
                f"got {self.deploy_strategy!r}"
            )
        if self.format is not None:
            from droptune.formats import BY_NAME  # local: formats imports nothing from here

            if self.format not in BY_NAME:
                raise ConfigError(
                    f"format {self.format!r} is unknown; choose one of {', '.join(BY_NAME)}"
                )
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ConfigError(f"{name} must be in [0, 1); got {value}")
        for name in ("accelerator_count", "serving_accelerator_count"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or more; got {getattr(self, name)}")
        if self.validation_fraction + self.test_fraction >= 1:
            raise ConfigError(
                "validation_fraction + test_fraction must leave examples for training"
            )
        _check_gate(self.gate)
        if self.training:
            # The trainer's settings, as the trainer will build them from this run, checked
            # here so that a misspelt key rejects the upload instead of failing a GPU job. The
            # trainer's config module ships in the same distribution and imports nothing of
            # droptune but this module.
            from droptune_trainer.config import TrainConfig, from_run_config

            TrainConfig.from_mapping(from_run_config(self.to_dict()), source="training")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.column_map.items()):
            raise ConfigError(
                f"column_map maps column names to field names, both text; got {self.column_map!r}"
            )
        if self.system_instruction is not None and not self.system_instruction.strip():
            raise ConfigError("system_instruction is blank; give it text or leave it out")
        if self.adapter_size is not None and self.adapter_size not in ADAPTER_SIZES:
            raise ConfigError(
                f"adapter_size must be one of {', '.join(ADAPTER_SIZES)}; got {self.adapter_size!r}"
            )
        if self.learning_rate_multiplier is not None and self.learning_rate_multiplier <= 0:
            raise ConfigError(
                f"learning_rate_multiplier must be above 0; got {self.learning_rate_multiplier}"
            )
        # Vertex AI takes "no accelerator" as the unspecified type with a count of 0.
        if self.accelerator_type == NO_ACCELERATOR:
            self.accelerator_count = 0
        if self.serving_accelerator_type == NO_ACCELERATOR:
            self.serving_accelerator_count = 0
        if self.epochs is not None:
            self.require_positive("epochs")
        self.require_positive(
            "training_machines",
            "max_length",
            "min_examples",
            "max_issues_per_code",
            "training_timeout_minutes",
            "eval_max_output_tokens",
        )
        if self.base_model is None:
            env = os.environ.get("DROPTUNE_DEFAULT_BASE_MODEL")
            fallback = DEFAULT_GEMINI_MODEL if self.backend == "gemini" else DEFAULT_CUSTOM_MODEL
            self.base_model = env if env and _model_fits(env, self.backend) else fallback


CONFIG_SUFFIXES = (".droptune.yaml", ".droptune.yml")  # a sidecar: <data file stem> + one


def one_sidecar(found: Sequence[Any]) -> Any:
    """The sidecar found beside a data file (either spelling), or None; both is an error:
    neither may silently win."""
    if len(found) > 1:
        raise ConfigError(f"two sidecars for one file: {found[0]} and {found[1]}; keep one")
    return found[0] if found else None


GATE_METRICS = ("accuracy", "macro_f1", "exact_match", "rouge_l")
GATE_KEYS = ("metric", "min_delta", "require_significance")
ADAPTER_SIZES = tuple(f"ADAPTER_SIZE_{n}" for n in ("ONE", "TWO", "FOUR", "EIGHT", "SIXTEEN"))
NO_ACCELERATOR = "ACCELERATOR_TYPE_UNSPECIFIED"


def _check_gate(gate: dict[str, Any]) -> None:
    unknown = set(gate) - set(GATE_KEYS)
    if unknown:
        raise ConfigError(
            f"gate takes {', '.join(GATE_KEYS)}; unknown: {', '.join(sorted(unknown))}"
        )
    if "metric" in gate and gate["metric"] not in GATE_METRICS:
        raise ConfigError(
            f"gate.metric must be one of {', '.join(GATE_METRICS)}; got {gate['metric']!r}"
        )
    if "min_delta" in gate and (
        isinstance(gate["min_delta"], bool) or not isinstance(gate["min_delta"], int | float)
    ):
        raise ConfigError(f"gate.min_delta must be a number; got {gate['min_delta']!r}")
    if not isinstance(gate.get("require_significance", False), bool):
        raise ConfigError(
            f"gate.require_significance must be true or false; got {gate['require_significance']!r}"
        )


def _model_fits(model: str, backend: str) -> bool:
    return model.startswith("gemini") == (backend == "gemini")


def parse_pairs(pairs: list[str], option: str) -> dict[str, str]:
    """`KEY=VALUE` command-line pairs (`--set`, `--env`) as a mapping.

    >>> parse_pairs(["epochs=2", "note=a=b"], "--set")
    {'epochs': '2', 'note': 'a=b'}
    """
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{option} {pair!r}: write KEY=VALUE")
        values[key] = value
    return values


_BOOLEANS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


def parse_flag(text: str) -> bool | None:
    """true/false, yes/no or 1/0 in any case as a bool; None for any other text.

    >>> parse_flag(" Yes "), parse_flag("0"), parse_flag("maybe")
    (True, False, None)
    """
    return _BOOLEANS.get(text.strip().lower())


INT64 = range(-(2**63), 2**63)


def _check_storable(name: str, value: Any, source: str) -> None:
    """Every setting is stored in run.json and read back by the workflow and the trainer: JSON
    has no NaN or infinity, integers there are 64-bit, and text must be valid UTF-8."""
    problem = None
    if isinstance(value, float) and not math.isfinite(value):
        problem = "must be a finite number"
    elif isinstance(value, int) and not isinstance(value, bool) and value not in INT64:
        problem = "is beyond a 64-bit integer (at most 9,223,372,036,854,775,807)"
    elif isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            problem = "holds text that is not valid Unicode (an unpaired surrogate)"
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_storable(f"{name}.{key}", item, source)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_storable(f"{name}[{index}]", item, source)
    if problem:
        raise ConfigError(f"{source}: {name} {problem}; got {value!r}")


def _coerce(name: str, value: Any, spec: Any, source: str) -> Any:
    """Values from metadata arrive as strings: turn '0.2' into 0.2 where the key wants a number."""
    kind = str(spec.type)
    try:
        if isinstance(value, str) and ("int" in kind or "float" in kind) and value.strip():
            return int(value) if kind.startswith("int") else float(value)
        if isinstance(value, str) and kind.startswith("dict"):
            parsed = yaml.safe_load(value)
            if isinstance(parsed, dict):
                return string_keys(parsed)  # YAML's `{0: prompt}` has text keys, as in a file
    except (ValueError, yaml.YAMLError):
        pass
    if value is None and "None" in kind:
        return value
    if isinstance(value, str) and kind.startswith("bool") and parse_flag(value) is not None:
        return parse_flag(value)
    expected = {
        "bool": (bool, "true or false"),
        "int": (int, "an integer"),
        "float": ((int, float), "a number"),
        "dict": (dict, "a mapping"),
        "str": (str, "text"),
    }
    for prefix, (types, noun) in expected.items():
        if kind.startswith(prefix) and not isinstance(value, types):
            raise ConfigError(f"{source}: {name} must be {noun}; got {value!r}")
    return value
