"""cvrank's configuration: one typed object, with defaults, overridable from the CLI (`--set key=value`)
and from an Airflow DAG run's conf (a JSON object of the same keys)."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class PipelineConfig:
    """Every setting of a cvrank pipeline run. Paths are absolute after `resolved()`."""

    pipeline_name: str = "cvrank"
    data_dir: str = os.path.join(PROJECT_ROOT, "data", "onet")
    workspace: str = os.path.join(PROJECT_ROOT, "workspace")
    # Apache Beam: DirectRunner in multi-processing mode; any runner's flags go here.
    beam_pipeline_args: List[str] = dataclasses.field(
        default_factory=lambda: [
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=0",
        ]
    )
    # Transform: vocabulary.
    vocab_min_count: int = 5
    vocab_max_size: int = 0  # 0 = unlimited
    # CooccurrenceGen.
    window_size: int = 10
    symmetric: bool = True
    distance_weighting: bool = True
    # GloVe trainer.
    embedding_dim: int = 100
    epochs: int = 25
    # glove.c's x_max is 100 (for corpora of billions of tokens); on the bundled ~1 M-token corpus
    # x_max 5 gave eval MAP 0.285 against 0.233 at 100 and 0.278 at 10 (sif weighting, 25 epochs).
    x_max: float = 5.0
    alpha: float = 0.75
    learning_rate: float = 0.05
    batch_size: int = 16384
    seed: int = 42
    # Serving model: how word vectors make a document vector (mean, idf, sif), and how many CVs to return.
    doc_weighting: str = "sif"
    top_k: int = 10
    # Evaluator: absolute MAP floor and tolerated drop against the latest blessed model.
    map_floor: float = 0.05
    map_tolerance: float = 0.01

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.workspace, "pipelines", self.pipeline_name)

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.workspace, "metadata", f"{self.pipeline_name}.sqlite")

    @property
    def serving_dir(self) -> str:
        """TF Serving model base path: `<serving_dir>/<integer version>/saved_model.pb`."""
        return os.path.join(self.workspace, "serving", self.pipeline_name)

    def resolved(self) -> "PipelineConfig":
        """A copy with data_dir and workspace made absolute."""
        return dataclasses.replace(
            self, data_dir=os.path.abspath(self.data_dir), workspace=os.path.abspath(self.workspace)
        )

    def with_overrides(self, overrides: Mapping[str, Any]) -> "PipelineConfig":
        """A copy with `overrides` applied. Values may be strings (CLI) or JSON values (DAG run conf);
        strings are converted to the field's type. Unknown keys raise ValueError naming the key."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        changes: Dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in fields:
                raise ValueError(f"unknown setting {key!r}; known settings: {', '.join(sorted(fields))}")
            changes[key] = _coerce(key, fields[key].type, value)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def parse_set_args(items: Optional[Iterable[str]]) -> Dict[str, str]:
    """Parses CLI `key=value` items into a dict; raises ValueError on an item without '='."""
    result: Dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        result[key.strip()] = value
    return result


def _coerce(key: str, type_name: Any, value: Any) -> Any:
    type_name = str(type_name)
    try:
        if type_name == "bool":
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if type_name == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if type_name == "float":
            return float(value)
        if type_name.startswith("List"):
            if isinstance(value, str):
                value = json.loads(value) if value.strip().startswith("[") else value.split()
            return [str(v) for v in value]
        return str(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"setting {key!r} expects {type_name}, got {value!r}") from err


@dataclasses.dataclass
class ServingConfig:
    """Settings of `cvrank serve`, the TF Serving-compatible model server (see serving/server.py)."""

    model_name: str = "cvrank"
    # TF Serving's model base path; default: where `cvrank run` pushes with the default workspace.
    model_base_path: str = PipelineConfig().serving_dir
    host: str = "127.0.0.1"         # loopback only unless told otherwise
    port: int = 8501                # REST (TF Serving's default REST port)
    grpc_port: int = 8500           # gRPC (TF Serving's default port); 0 turns gRPC off
    poll_seconds: float = 1.0       # how often the base path is checked for new versions
    max_batch_size: int = 64        # rows merged into one TensorFlow call
    batch_threads: int = 2          # TensorFlow calls running at once
    max_body_bytes: int = 16 * 1024 * 1024  # larger request bodies get HTTP 413
    access_log: str = "-"           # '-' (stderr), a file path, or 'off'

    def __post_init__(self):
        for key in ("port", "grpc_port"):
            if not 0 <= getattr(self, key) <= 65535:
                raise ValueError(f"{key} must be a port number (0-65535), got {getattr(self, key)}")
        if self.max_batch_size < 1 or self.batch_threads < 1 or self.max_body_bytes < 1 or self.poll_seconds <= 0:
            raise ValueError("max_batch_size, batch_threads, max_body_bytes and poll_seconds must be positive")
