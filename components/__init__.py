"""cvrank: components."""
