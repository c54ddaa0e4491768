"""Ranking evaluation for cvrank: NumPy ranking metrics (``ranking``), their TFMA metrics (``tfma_metrics``,
for the TFX Evaluator), the outputs of the model's ``evaluate`` signature (``outputs``) and reading stored
evaluation results (``results``)."""
