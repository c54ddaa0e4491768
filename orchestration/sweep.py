"""Parameter sweeps: every combination of some settings' values, each run as an ordinary pipeline run.

`cvrank sweep epochs=10,25 window_size=5,10` makes four runs. Each is a run like `cvrank run --set ...`:
recorded in ML Metadata with its settings and code version, and cached node by node, so a combination
that changes only a trainer setting reuses the ExampleGens, Transform and CooccurrenceGen of the first.
"""

from __future__ import annotations

import itertools
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from config import ConfigError, PipelineConfig


def parse_grid(items: Sequence[str]) -> Dict[str, List[str]]:
    """{setting: [values]} from `key=v1,v2` items, in their order. Raises ConfigError for an item without
    '=', an empty value list or value, a setting given twice, or an unknown setting. Values stay text
    (PipelineConfig converts them); a list setting (`beam_pipeline_args`) cannot be swept, as its values
    contain commas."""
    grid: Dict[str, List[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"sweep: {item!r} is not KEY=V1,V2,...")
        if key in grid:
            raise ConfigError(f"sweep: setting {key!r} is given twice")
        if key not in PipelineConfig.model_fields:
            raise ConfigError(f"sweep: unknown setting {key!r} (`cvrank config` lists them)")
        if key in ("workspace", "metadata_uri", "pipeline_name", "beam_pipeline_args"):
            raise ConfigError(f"sweep: {key} cannot be swept (every run of a sweep shares it)")
        parts = [v.strip() for v in values.split(",")]
        if not parts or any(not v for v in parts):
            raise ConfigError(f"sweep: {item!r} has an empty value")
        grid[key] = list(dict.fromkeys(parts))  # a value given twice is one run
    if not grid:
        raise ConfigError("sweep: give at least one KEY=V1,V2,...")
    return grid


def combinations(grid: Mapping[str, Sequence[str]]) -> List[Dict[str, str]]:
    """Every combination of the grid's values, the last setting varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def sweep_configs(base: Mapping[str, Any],
                  grid: Mapping[str, Sequence[str]]) -> List[Tuple[Dict[str, str], PipelineConfig]]:
    """Each combination with its PipelineConfig (`base` overrides, then the combination's). All are
    checked before any runs: raises ConfigError naming the combination of the first invalid one."""
    configs = []
    for combination in combinations(grid):
        try:
            configs.append((combination, PipelineConfig.create({**base, **combination})))
        except ConfigError as err:
            shown = " ".join(f"{k}={v}" for k, v in combination.items())
            raise ConfigError(f"sweep: combination {shown}: {err}") from None
    return configs
