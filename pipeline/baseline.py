"""Which model a candidate is compared with: the latest blessed model other than the candidate itself.

TFX's LatestBlessedModelStrategy returns the latest blessed model, which after a push is the very model a
later unchanged run produces from cache; its Evaluator would then see a new baseline (the candidate) and
execute again, and the Pusher push the same model twice. Leaving the candidate out keeps an unchanged
run's Evaluator inputs, hence its cache hit, and compares a new model with the one it would replace.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from tfx import types
from tfx.dsl.components.common import resolver
from tfx.types import standard_artifacts

CANDIDATE_KEY = "candidate"
MODEL_KEY = "model"
MODEL_BLESSING_KEY = "model_blessing"


class PreviousBlessedModelStrategy(resolver.ResolverStrategy):
    """Resolves `model` / `model_blessing` to the latest blessed Model whose id is not among the
    `candidate` artifacts (and its ModelBlessing); both empty when there is none."""

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        candidates = {a.id for a in input_dict.get(CANDIDATE_KEY, [])}
        blessings = {
            b.get_int_custom_property("current_model_id"): b
            for b in input_dict.get(MODEL_BLESSING_KEY, [])
            if b.get_int_custom_property("blessed") == 1
        }
        result = {CANDIDATE_KEY: list(input_dict.get(CANDIDATE_KEY, [])), MODEL_KEY: [], MODEL_BLESSING_KEY: []}
        for model in sorted(input_dict.get(MODEL_KEY, []), key=lambda a: a.id, reverse=True):
            if model.id not in candidates and model.id in blessings:
                result[MODEL_KEY] = [model]
                result[MODEL_BLESSING_KEY] = [blessings[model.id]]
                break
        return result


def previous_blessed_model_resolver(candidate: types.BaseChannel) -> resolver.Resolver:
    """The resolver node giving the Evaluator its baseline for `candidate` (the trainer's model)."""
    return resolver.Resolver(
        strategy_class=PreviousBlessedModelStrategy,
        candidate=candidate,
        model=types.Channel(type=standard_artifacts.Model),
        model_blessing=types.Channel(type=standard_artifacts.ModelBlessing),
    ).with_id("previous_blessed_model_resolver")
