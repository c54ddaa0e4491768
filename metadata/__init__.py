"""ML Metadata as cvrank reads and writes it: `metadata.mlmd` is the one module for it (run states, node
outputs, lineage, cvrank's own executions). It imports nothing else of cvrank, so the orchestration,
serving and benchmarks all use it without depending on each other."""
