"""DatasetExampleGen: the ExampleGen for the dataset's CSV files (dataset.files), replacing TFX's
CsvExampleGen: byte order marks, CRLF and quoted multi-line fields are read, column types are
declared instead of inferred, and file problems are reported with file and line."""
