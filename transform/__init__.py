"""cvrank: transform."""
