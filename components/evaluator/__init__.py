"""cvrank's Evaluator: TFX's Evaluator whose output records the headline metrics in ML Metadata."""
