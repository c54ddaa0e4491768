"""Settings of `cvrank serve`, the TF Serving-compatible model server (serving/server.py)."""

from __future__ import annotations

from pydantic import Field

from config.pipeline_config import PipelineConfig, Settings


class ServingConfig(Settings):
    """Every setting of `cvrank serve`; construction raises ConfigError on an invalid value."""

    model_name: str = Field("cvrank", min_length=1, description="Model name in URLs (/v1/models/<name>)")
    model_base_path: str = Field(
        default_factory=lambda: PipelineConfig().serving_dir,
        description="TF Serving model base path, <path>/<integer version>/saved_model.pb; "
                    "by default where `cvrank run` pushes")
    host: str = Field("127.0.0.1", min_length=1, description="Address to bind (0.0.0.0 for every interface)")
    port: int = Field(8501, ge=0, le=65535, description="REST port (TF Serving's default REST port)")
    grpc_port: int = Field(8500, ge=0, le=65535, description="gRPC port (TF Serving's default); 0 turns gRPC off")
    poll_seconds: float = Field(1.0, gt=0, description="How often the base path is checked for new versions")
    max_batch_size: int = Field(64, ge=1, description="Rows merged into one TensorFlow call")
    batch_threads: int = Field(2, ge=1, description="TensorFlow calls running at once")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1, description="Larger request bodies get HTTP 413")
    access_log: str = Field("-", description="Access log: '-' (stderr), a file path, or 'off'")
