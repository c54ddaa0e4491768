"""Pusher executor: writes the version under a staging name; the orchestrator publishes it once ML
Metadata holds the record this executor returns (serving/pushes.py)."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.pusher.spec import EVALUATION_KEY
from serving import base_path as bp
from serving import pushes

RECORD_FILE = "push.json"


class PushError(Exception):
    """The model could not be written to the model base path; nothing was published."""


def base_directory(exec_properties: Dict[str, Any]) -> str:
    """The model base path of a Pusher's `push_destination` (a filesystem destination)."""
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
    if destination.WhichOneof("destination") != "filesystem":
        raise ValueError("cvrank's Pusher only pushes to a filesystem destination")
    return os.path.abspath(destination.filesystem.base_directory)


def _overall_map(input_dict: Dict[str, List[types.Artifact]]):
    evaluations = input_dict.get(EVALUATION_KEY)
    if not evaluations:
        return None
    from evaluation.results import OVERALL, load_slice_metrics

    return load_slice_metrics(artifact_utils.get_single_uri(evaluations)).get(OVERALL, {}).get("map")


class Executor(tfx_pusher_executor.Executor):
    """Stages the blessed model as the next version and records it on the `pushed_model` artifact; an
    unblessed model is recorded as not pushed. A failed write removes what it wrote and raises PushError
    naming the version, the base path and the cause."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed)
            return
        model_path = self.GetModelPath(input_dict)
        base = base_directory(exec_properties)
        map_value = _overall_map(input_dict)
        served = bp.served_version(base)
        try:
            version, staged, manifest = bp.stage_version(base, lambda d: bp.copy_saved_model(model_path, d))
        except OSError as err:
            still = f"version {served} is still served" if served is not None else "no version is served"
            raise PushError(f"could not write the model to {base}: {err}; nothing was published, {still}") from err
        destination = os.path.join(base, str(version))
        try:
            record = pushes.push_properties(version, destination, manifest, map_value)
            os.makedirs(pushed.uri, exist_ok=True)
            with open(os.path.join(pushed.uri, RECORD_FILE), "w") as f:
                json.dump({"version": version, "destination": destination, "files": manifest}, f, indent=1)
            for key, value in record.items():
                if isinstance(value, int):
                    pushed.set_int_custom_property(key, value)
                elif isinstance(value, float):
                    pushed.set_float_custom_property(key, value)
                else:
                    pushed.set_string_custom_property(key, value)
        except BaseException:
            bp.discard_staged(base, version)
            raise
        logging.info("Model staged as version %d at %s; published once recorded.", version, staged)
