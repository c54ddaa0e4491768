"""Pusher: pushes a blessed model to a TF Serving model base path, atomically and recorded."""

from __future__ import annotations

from typing import Optional

from tfx import types
from tfx.components.pusher import component as tfx_pusher
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts

from components.pusher import executor
from components.pusher.spec import PusherSpec


class Pusher(tfx_pusher.Pusher):
    """TFX's Pusher (same node id, inputs, output and `pushed_*` properties) whose version appears under
    the base path only complete and only after ML Metadata recorded it; version numbers never repeat.

    Inputs: `model`, `model_blessing` (pushes only a blessed model) and optionally `evaluation` (the
    Evaluator output the blessing came from; its overall MAP is recorded with the push). Output:
    `pushed_model`, whose directory holds `push.json` (version, destination, file manifest).
    """

    SPEC_CLASS = PusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, model_blessing: types.BaseChannel,
                 push_destination: pusher_pb2.PushDestination, evaluation: Optional[types.BaseChannel] = None):
        spec = PusherSpec(model=model, model_blessing=model_blessing, evaluation=evaluation,
                          push_destination=push_destination,
                          pushed_model=types.Channel(type=standard_artifacts.PushedModel))
        super(tfx_pusher.Pusher, self).__init__(spec=spec)
