"""cvrank: serving."""
