"""FileCheck: the TFX component that checks the dataset's files (dataset.files) before anything
reads them, and fails the run with every file problem (file, line, problem) at once."""
