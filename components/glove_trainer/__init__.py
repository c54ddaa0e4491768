"""GloveTrainer: the TFX component around the GloVe library (trainer/glove.py): word vectors from the
co-occurrence matrix, then the serving model (serving/model.py)."""
