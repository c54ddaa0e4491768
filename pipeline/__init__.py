"""cvrank: pipeline."""
