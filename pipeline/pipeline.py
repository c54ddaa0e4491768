"""The cvrank pipeline definition: which TFX nodes, wired how, configured from one PipelineConfig."""

from __future__ import annotations

import glob
import hashlib
import os
from typing import List

# TFX's modules directly, not `tfx.v1`: that also imports its Google Cloud extensions (1.5 s per process).
from tfx.components.example_validator.component import ExampleValidator
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.components.statistics_gen.component import StatisticsGen
from tfx.components.transform.component import Transform
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import example_gen_pb2, pusher_pb2, transform_pb2

from components.cooccurrence.component import CooccurrenceGen
from components.data_check.component import DataCheck
from components.example_gen.component import DatasetExampleGen
from components.file_check.component import FileCheck
from components.evaluator.component import Evaluator
from components.pusher.component import Pusher
from config import PROJECT_ROOT, PipelineConfig
from pipeline import beam
from pipeline.baseline import previous_blessed_model_resolver
from pipeline.eval_config import build_eval_config
from components.glove_trainer.component import GloveTrainer

SCHEMA_DIR = os.path.join(PROJECT_ROOT, "pipeline", "schemas")


def source_fingerprint(*packages: str) -> str:
    """A hash of the Python sources of `packages` (project-relative directories or `.py` files)."""
    digest = hashlib.sha256()
    for package in packages:
        pattern = package if package.endswith(".py") else os.path.join(package, "**", "*.py")
        for path in sorted(glob.glob(os.path.join(PROJECT_ROOT, pattern), recursive=True)):
            digest.update(os.path.relpath(path, PROJECT_ROOT).encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()[:16]


def track_sources(node, *packages: str):
    """Makes the project code that `node` runs part of its cache key: TFX keys cached executions on the
    executor spec (with inputs and parameters), so a flag holding the hash of that code means changed
    code re-executes the node instead of reusing a stale output. Returns the node."""
    node.executor_spec = node.executor_spec.copy()
    node.executor_spec.add_extra_flags([f"--cvrank_sources={source_fingerprint(*packages)}"])
    return node


def _single_split(name: str, pattern: str) -> example_gen_pb2.Input:
    return example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name=name, pattern=pattern)])


def _one_output(name: str) -> example_gen_pb2.Output:
    return example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
        splits=[example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=1)]))


def _has_corpus(data_dir: str) -> bool:
    return bool(glob.glob(os.path.join(data_dir, "corpus", "*.csv")))


def text_splits(config: PipelineConfig) -> List[str]:
    """Splits of the texts examples: CVs, plus the unlabelled corpus when the dataset has one."""
    return ["cvs", "corpus"] if _has_corpus(config.data_dir) else ["cvs"]


def create_pipeline(config: PipelineConfig) -> Pipeline:
    """The whole cvrank pipeline for `config` (see docs/architecture.md)."""
    splits = text_splits(config)
    texts_input = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name=s, pattern=f"{s}/*.csv") for s in splits])
    # Every file-level problem (file, line, problem) stops the run here, before any ExampleGen reads a file.
    file_check = FileCheck(input_base=config.data_dir)
    texts_gen = DatasetExampleGen(
        input_base=config.data_dir, input_config=texts_input,
        output_config=_one_output("cvs") if len(splits) == 1 else None,
    ).with_id("texts_example_gen")
    jobs_gen = DatasetExampleGen(
        input_base=config.data_dir, input_config=_single_split("jobs", "jobs/*.csv"),
        # A stable hash of job_id decides which jobs tune (eval) and which are held out (test).
        output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
            splits=[example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1),
                    example_gen_pb2.SplitConfig.Split(name="test", hash_buckets=1)],
            partition_feature_name="job_id")),
    ).with_id("jobs_example_gen")
    judgments_gen = DatasetExampleGen(
        input_base=config.data_dir, input_config=_single_split("judgments", "judgments/*.csv"),
        output_config=_one_output("all"),
    ).with_id("judgments_example_gen")
    for gen in (texts_gen, jobs_gen, judgments_gen):
        gen.add_upstream_node(file_check)

    validation = []
    anomalies = {}
    for name, gen in (("texts", texts_gen), ("jobs", jobs_gen), ("judgments", judgments_gen)):
        stats = StatisticsGen(examples=gen.outputs["examples"]).with_id(f"{name}_statistics_gen")
        schema = ImportSchemaGen(
            schema_file=os.path.join(SCHEMA_DIR, f"{name}.pbtxt")).with_id(f"{name}_schema_gen")
        validator = ExampleValidator(
            statistics=stats.outputs["statistics"], schema=schema.outputs["schema"]).with_id(f"{name}_example_validator")
        validation += [stats, schema, validator]
        anomalies[name] = validator.outputs["anomalies"]
        if name == "texts":
            texts_schema = schema

    data_check = DataCheck(
        texts=texts_gen.outputs["examples"], jobs=jobs_gen.outputs["examples"],
        judgments=judgments_gen.outputs["examples"], texts_anomalies=anomalies["texts"],
        jobs_anomalies=anomalies["jobs"], judgments_anomalies=anomalies["judgments"])

    custom_config = {"vocab_min_count": config.vocab_min_count}
    if config.vocab_max_size > 0:
        custom_config["vocab_max_size"] = config.vocab_max_size
    transform = Transform(
        examples=texts_gen.outputs["examples"], schema=texts_schema.outputs["schema"],
        preprocessing_fn="transform.preprocessing.preprocessing_fn",
        splits_config=transform_pb2.SplitsConfig(analyze=splits, transform=splits),
        custom_config=custom_config)
    # Nothing is trained on data that failed validation.
    transform.add_upstream_node(data_check)

    cooccurrence = CooccurrenceGen(
        examples=transform.outputs["transformed_examples"], transform_graph=transform.outputs["transform_graph"],
        window_size=config.window_size, symmetric=config.symmetric, distance_weighting=config.distance_weighting)

    trainer = GloveTrainer(
        cooccurrence=cooccurrence.outputs["cooccurrence"], transform_graph=transform.outputs["transform_graph"],
        cvs=texts_gen.outputs["examples"], ranking_examples=data_check.outputs["ranking_examples"],
        embedding_dim=config.embedding_dim, epochs=config.epochs,
        x_max=config.x_max, alpha=config.alpha, learning_rate=config.learning_rate,
        batch_size=config.batch_size, seed=config.seed, doc_weighting=config.doc_weighting,
        top_k=config.top_k, hybrid_ranking=config.hybrid_ranking,
        fusion_fit_max_jobs=config.fusion_fit_max_jobs)

    baseline = previous_blessed_model_resolver(trainer.outputs["model"])
    evaluator = Evaluator(
        examples=data_check.outputs["ranking_examples"], model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"], example_splits=["eval"],
        eval_config=build_eval_config(config))
    pusher = Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        evaluation=evaluator.outputs["evaluation"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=config.serving_dir)))

    track_sources(file_check, "components/file_check", "dataset")
    for gen in (texts_gen, jobs_gen, judgments_gen):
        track_sources(gen, "components/example_gen", "dataset")
    track_sources(data_check, "components/data_check")
    track_sources(transform, "transform")
    track_sources(cooccurrence, "components/cooccurrence")
    track_sources(trainer, "components/glove_trainer", "trainer", "serving/model.py", "serving/lexical.py",
                  "components/cooccurrence", "transform", "evaluation/ranking.py", "evaluation/outputs.py")
    track_sources(evaluator, "components/evaluator", "evaluation")
    track_sources(pusher, "components/pusher", "serving/base_path.py", "serving/pushes.py", "evaluation/results.py",
                  "evaluation/outputs.py")

    return Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[file_check, texts_gen, jobs_gen, judgments_gen, *validation, data_check, transform, cooccurrence,
                    trainer, baseline, evaluator, pusher],
        enable_cache=True,
        metadata_connection_config=config.metadata_connection(),
        beam_pipeline_args=beam.beam_pipeline_args(config),
    )
