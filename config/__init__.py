"""cvrank's configuration: `PipelineConfig` (a pipeline run) and `ServingConfig` (`cvrank serve`)."""

from config.errors import ConfigError
from config.pipeline_config import PROJECT_ROOT, PipelineConfig, default, parse_set_args
from config.serving_config import ServingConfig

__all__ = ["ConfigError", "PROJECT_ROOT", "PipelineConfig", "ServingConfig", "default", "parse_set_args"]
