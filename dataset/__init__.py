"""cvrank's dataset: the file contract of a dataset directory and its one reader (dataset.files).

Standard library only, so that serving and scripts can read and check dataset files without TFX.
"""
