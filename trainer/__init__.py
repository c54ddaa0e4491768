"""cvrank: trainer."""
