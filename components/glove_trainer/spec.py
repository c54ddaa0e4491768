"""GloveTrainer's ComponentSpec and its input, output and parameter names."""

from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.cooccurrence.artifacts import CooccurrenceMatrix

COOCCURRENCE_KEY = "cooccurrence"
TRANSFORM_GRAPH_KEY = "transform_graph"
CVS_KEY = "cvs"
RANKING_EXAMPLES_KEY = "ranking_examples"
MODEL_KEY = "model"
MODEL_RUN_KEY = "model_run"

# GloVe hyperparameters (trainer.glove.GloveConfig fields, named as in config.PipelineConfig).
GLOVE_PARAMETERS = {
    "embedding_dim": int, "epochs": int, "x_max": float, "alpha": float, "learning_rate": float,
    "batch_size": int, "seed": int,
}
DOC_WEIGHTING_KEY = "doc_weighting"
TOP_K_KEY = "top_k"
CV_SPLIT_KEY = "cv_split"
HYBRID_RANKING_KEY = "hybrid_ranking"
FIT_SPLIT_KEY = "fit_split"
FIT_MAX_JOBS_KEY = "fusion_fit_max_jobs"


class GloveTrainerSpec(ComponentSpec):
    """GloveTrainer component spec."""

    PARAMETERS = {
        **{name: ExecutionParameter(type=kind) for name, kind in GLOVE_PARAMETERS.items()},
        DOC_WEIGHTING_KEY: ExecutionParameter(type=str),
        TOP_K_KEY: ExecutionParameter(type=int),
        CV_SPLIT_KEY: ExecutionParameter(type=str),
        HYBRID_RANKING_KEY: ExecutionParameter(type=int),
        FIT_SPLIT_KEY: ExecutionParameter(type=str),
        FIT_MAX_JOBS_KEY: ExecutionParameter(type=int),
    }
    INPUTS = {
        COOCCURRENCE_KEY: ChannelParameter(type=CooccurrenceMatrix),
        TRANSFORM_GRAPH_KEY: ChannelParameter(type=standard_artifacts.TransformGraph),
        CVS_KEY: ChannelParameter(type=standard_artifacts.Examples),
        RANKING_EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {
        MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        MODEL_RUN_KEY: ChannelParameter(type=standard_artifacts.ModelRun),
    }
