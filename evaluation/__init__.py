"""Ranking evaluation for cvrank: NumPy ranking metrics (``ranking``) and their TFMA metrics
(``tfma_metrics``, for the TFX Evaluator)."""
