"""cvrank's pipeline configuration: one validated model holding every setting of a run, its type, its
allowed values, its default and its description. Overridable from the CLI (`--set key=value`) and from
an Airflow DAG run's conf (a JSON object of the same keys); `bin/cvrank config` lists them.

This package imports nothing else of cvrank, so every layer can take its defaults from here.
"""

from __future__ import annotations

import difflib
import json
import os
import urllib.parse
from typing import Any, Dict, Iterable, List, Literal, Mapping, Optional

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from config.errors import ConfigError, format_validation_error

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DocWeighting = Literal["mean", "idf", "sif"]


class Settings(BaseModel):
    """Base of cvrank's settings models: immutable, unknown keys rejected, and every invalid value a
    ConfigError naming the key, the value and what is allowed (not pydantic's ValidationError)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    def __init__(self, **values: Any):
        known = list(type(self).model_fields)
        unknown = [k for k in values if k not in known]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, known, n=1)
                hints.append(f"unknown setting {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError("; ".join(hints) + f". Settings: {', '.join(known)}")
        try:
            super().__init__(**values)
        except pydantic.ValidationError as err:
            raise ConfigError(format_validation_error(err, values)) from None

    @classmethod
    def create(cls, overrides: Optional[Mapping[str, Any]] = None):
        """The defaults with `overrides` applied (see `with_overrides`)."""
        return cls(**dict(overrides or {}))

    def with_overrides(self, overrides: Mapping[str, Any]):
        """A copy with `overrides` applied. Values may be text (CLI) or JSON values (DAG run conf); text is
        converted to the setting's type. Raises ConfigError naming each bad key, its value and what is
        allowed."""
        return type(self)(**{**self.model_dump(), **overrides})

    def to_dict(self) -> Dict[str, Any]:
        return self.model_dump()


class PipelineConfig(Settings):
    """Every setting of a cvrank pipeline run. Instances are immutable and valid: construction (or
    `with_overrides`) raises ConfigError naming the key, the value and what is allowed. `data_dir` and
    `workspace` are absolute (a relative path is taken relative to the working directory)."""

    pipeline_name: str = Field(
        "cvrank", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Pipeline name: ML Metadata contexts, workspace sub-directories and the served model's directory")
    data_dir: str = Field(
        os.path.join(PROJECT_ROOT, "data", "onet"),
        description="Dataset directory: cvs/*.csv, jobs/*.csv, judgments/*.csv and optional corpus/*.csv")
    workspace: str = Field(
        os.path.join(PROJECT_ROOT, "workspace"),
        description="Where artifacts, ML Metadata, run logs and pushed models go")
    metadata_uri: str = Field(
        "",
        description="ML Metadata store: empty for SQLite at <workspace>/metadata/<pipeline_name>.sqlite (one "
                    "writer at a time); postgresql://USER@HOST[:PORT]/DBNAME for PostgreSQL (concurrent writers: "
                    "Airflow's Celery workers), its password from PGPASSWORD or ~/.pgpass")
    beam_pipeline_args: List[str] = Field(
        [], description="Apache Beam options of every Beam-based node (JSON list or space-separated on the CLI); "
                        "empty: the DirectRunner, in one process for a small dataset, else with one worker "
                        "process per core (the size that decides: pipeline/beam.py)")
    # Transform.
    vocab_min_count: int = Field(5, ge=1, description="Transform: a word enters the vocabulary from this many occurrences")
    vocab_max_size: int = Field(0, ge=0, description="Transform: largest vocabulary, most frequent words first (0: no limit)")
    # CooccurrenceGen.
    window_size: int = Field(10, ge=1, description="CooccurrenceGen: words counted on each side of a word")
    symmetric: bool = Field(True, description="CooccurrenceGen: count left and right context (GloVe's -symmetric 1)")
    distance_weighting: bool = Field(True, description="CooccurrenceGen: a pair d words apart adds 1/d (GloVe's default) instead of 1")
    # GloveTrainer.
    embedding_dim: int = Field(100, ge=1, le=4096, description="GloVe: word vector size")
    epochs: int = Field(25, ge=1, description="GloVe: passes over the co-occurrence matrix")
    # glove.c's x_max is 100 (for corpora of billions of tokens); on the bundled ~1 M-token corpus x_max 5
    # gave eval MAP 0.285 against 0.233 at 100 and 0.278 at 10 (sif weighting, 25 epochs).
    x_max: float = Field(5.0, gt=0, description="GloVe: co-occurrence count at which a cell's weight f(x) reaches 1")
    alpha: float = Field(0.75, gt=0, le=1, description="GloVe: exponent of the weighting function f(x) = (x / x_max) ** alpha")
    learning_rate: float = Field(0.05, gt=0, le=1, description="GloVe: AdaGrad's initial step (glove.c's eta)")
    batch_size: int = Field(16384, ge=1, description="GloVe: matrix cells per mini-batch")
    seed: int = Field(42, ge=0, description="GloVe: seed of the initial vectors and the per-epoch shuffles")
    # Serving model.
    doc_weighting: DocWeighting = Field(
        "sif", description="Serving model: how word vectors make a document vector: mean, idf or sif "
                           "(smooth inverse frequency); the mean CV vector is then subtracted")
    top_k: int = Field(10, ge=1, description="Serving model: CVs returned per query")
    hybrid_ranking: bool = Field(
        True, description="Serving model: rank by embeddings fused with BM25 and pseudo-relevance feedback, "
                          "weights fitted on the eval jobs (false: embedding cosine only)")
    fusion_fit_max_jobs: int = Field(
        500, ge=1, description="Serving model: most eval jobs the fusion weights are fitted on (evenly spaced "
                               "among them); the fit ranks every CV for each, so its cost grows with jobs x CVs")
    # Evaluator.
    map_floor: float = Field(0.05, ge=0, le=1, description="Evaluator: a model is blessed only with MAP at least this")
    bless_over_bm25: bool = Field(
        False, description="Evaluator: bless only a model whose overall MAP is at least BM25's on the same eval "
                           "jobs (the jobs its fusion weights were fitted on)")
    map_tolerance: float = Field(0.01, ge=-1, le=1, description="Evaluator: largest MAP drop against the last blessed model that still blesses (negative: the MAP must rise by that much)")
    confidence_intervals: bool = Field(
        True, description="Evaluator: TFMA's confidence intervals of every metric (jackknife, 20 buckets; "
                          "blessing compares the point values)")

    @pydantic.field_validator("data_dir", "workspace")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a directory path")
        return os.path.abspath(os.path.expanduser(value))

    @pydantic.field_validator("metadata_uri")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if value:
            url = urllib.parse.urlsplit(value)
            if url.scheme != "postgresql" or not url.path.strip("/") or "/" in url.path.strip("/"):
                raise ValueError("must name one database: postgresql://USER@HOST[:PORT]/DBNAME")
            url.port  # raises ValueError on a bad port
            if url.password is not None:  # settings are shown by the DAG spec, run IRs and Airflow's UI
                raise ValueError("must not hold a password; give it to every process that opens ML Metadata "
                                 "as PGPASSWORD or in ~/.pgpass")
        return value

    @pydantic.field_validator("beam_pipeline_args", mode="before")
    @classmethod
    def _args_from_text(cls, value: Any) -> Any:
        if isinstance(value, str):  # the CLI gives text: a JSON list, or space-separated flags
            return json.loads(value) if value.strip().startswith("[") else value.split()
        return value

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.workspace, "pipelines", self.pipeline_name)

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.workspace, "metadata", f"{self.pipeline_name}.sqlite")

    def metadata_connection(self, sqlite_path: Optional[str] = None):
        """The ML Metadata ConnectionConfig of `metadata_uri`: SQLite at `sqlite_path` (default
        `metadata_path`) when it is empty, else PostgreSQL."""
        from ml_metadata.proto import metadata_store_pb2  # the protos only; config stays light to import

        connection = metadata_store_pb2.ConnectionConfig()
        if not self.metadata_uri:
            connection.sqlite.filename_uri = sqlite_path or self.metadata_path
            connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
            return connection
        url = urllib.parse.urlsplit(self.metadata_uri)
        postgres = connection.postgresql
        postgres.host = url.hostname or "127.0.0.1"
        postgres.port = str(url.port or 5432)
        postgres.dbname = url.path.lstrip("/")
        if url.username:
            postgres.user = urllib.parse.unquote(url.username)
        return connection

    @property
    def serving_dir(self) -> str:
        """TF Serving model base path: `<serving_dir>/<integer version>/saved_model.pb`."""
        return os.path.join(self.workspace, "serving", self.pipeline_name)

    @property
    def logs_dir(self) -> str:
        """Where each run's log file goes."""
        return os.path.join(self.workspace, "logs", self.pipeline_name)

def default(name: str) -> Any:
    """The default of pipeline setting `name`: components and libraries take their defaults from here."""
    field = PipelineConfig.model_fields[name]
    return field.get_default(call_default_factory=True)


def parse_set_args(items: Optional[Iterable[str]]) -> Dict[str, str]:
    """Parses CLI `key=value` items into a dict; raises ConfigError on an item without '='."""
    result: Dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        result[key.strip()] = value
    return result
