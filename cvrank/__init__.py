"""cvrank: rank CVs against a job description with GloVe embeddings trained by a TFX pipeline."""

__version__ = "0.1.0"
