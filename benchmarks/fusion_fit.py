"""Benchmark of the served ranking's fusion fit (trainer/fusion.py `fit_fusion`), the grid search the
GloveTrainer runs on the eval jobs after training.

Takes the newest GloveTrainer model of a workspace (rebuilt from its SavedModel's variables) and the
eval jobs of the DataCheck output it was trained with, scores every job against every CV once, then
times `fit_fusion` on those score matrices. Prints the figures and the chosen parameters; asserts
nothing.

    bin/cvrank exec -- python benchmarks/fusion_fit.py --workspace workspace [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import PipelineConfig  # noqa: E402
from metadata import mlmd  # noqa: E402


def _inputs(workspace: str):
    """(labels, embedding, bm25, tfidf, model uri) of the newest GloveTrainer execution's eval jobs."""
    from tfx.types import standard_artifacts

    from components.glove_trainer.executor import read_examples
    from evaluation import outputs
    from serving.model import load_for_indexing
    from trainer import fusion

    config = PipelineConfig(workspace=workspace)
    store = mlmd.open_store(config.metadata_connection(), read_only=True)
    trainers = [e for e in mlmd.node_executions(store, config.pipeline_name, "GloveTrainer")
                if e.last_known_state == mlmd.Execution.COMPLETE]
    if not trainers:
        raise SystemExit(f"no GloveTrainer execution in {workspace}: run the pipeline first")
    execution = trainers[-1]
    model_uri = mlmd.execution_outputs(store, execution.id)["model"][0].uri
    examples_record = mlmd.execution_inputs(store, execution.id)["ranking_examples"][0]
    examples = standard_artifacts.Examples()
    examples.uri = examples_record.uri
    examples.split_names = examples_record.properties["split_names"].string_value
    jobs = read_examples(examples, "eval")
    with tempfile.TemporaryDirectory() as work:
        model = load_for_indexing(os.path.join(model_uri, "Format-Serving"), work)
        scores = model.score_examples(jobs)
        labels = model.labels_of_examples(jobs)
        tfidf = fusion.tfidf_matrix(model.lexical_index(), len(model.cv_ids.numpy()))
    return labels, scores[outputs.EMBEDDING], scores[outputs.BM25], tfidf, model_uri


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", default="workspace", help="a workspace with a trained model")
    parser.add_argument("--repeat", type=int, default=3, help="timed fits (default %(default)s)")
    args = parser.parse_args(argv)

    from trainer import fusion

    labels, embedding, bm25, tfidf, model_uri = _inputs(os.path.abspath(args.workspace))
    grid = len(fusion.LEXICAL_WEIGHTS) * (1 + sum(1 for g in fusion.FEEDBACK_WEIGHTS if g > 0) * len(fusion.FEEDBACK_DOCS))
    print(f"model {model_uri}")
    print(f"{labels.shape[0]} eval jobs x {labels.shape[1]} CVs, {grid} grid points, {os.cpu_count()} CPUs")
    walls = []
    for _ in range(args.repeat):
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        fit = fusion.fit_fusion(labels, embedding, bm25, tfidf)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        walls.append(wall)
        print(f"fit_fusion: {wall:6.2f} s wall, {after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime:6.2f} s CPU"
              f" -> {fit.params} objective {fit.objective:.6f}")
    print(f"best of {len(walls)}: {min(walls):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
