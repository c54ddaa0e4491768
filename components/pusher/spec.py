"""Pusher's ComponentSpec: TFX's PusherSpec plus the Evaluator's output, whose MAP the push records."""

from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter

EVALUATION_KEY = "evaluation"


class PusherSpec(standard_component_specs.PusherSpec):
    """TFX's PusherSpec with an optional `evaluation` input (ModelEvaluation)."""

    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
    }
