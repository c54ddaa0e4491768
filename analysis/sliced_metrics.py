"""The sliced-metrics analysis behind `notebooks/sliced_metrics.ipynb`: which Evaluator output to look at,
its metrics per slice as a table (with TFMA's confidence intervals when the evaluation has them), and
static plots saved as PNG files.

Choosing the evaluation (`find_evaluation`), by one string `run`:

- ``"latest"``: the evaluation of the newest run of the pipeline whose Evaluator finished (COMPLETE or
  CACHED; a CACHED Evaluator's evaluation is the artifact it reused);
- a run id (``20261207T032023.748277Z``, or an Airflow run id): that run's Evaluator output;
- a pushed model version (digits only, ``3``): the evaluation the Pusher that pushed that version under
  the workspace's model base path was given (the evaluation of the run that pushed it).

Anything else raises `EvaluationNotFound`, whose message names the workspace, what was asked for and
what exists.

Metrics (`metrics_frame`) are read from the TFMA output with the Evaluator's slice names
(`evaluation.results.slice_name`: ``Overall``, ``major_group=13``, ``text_words_bucket=short``), for the
candidate and, when the Evaluator had a baseline model, the baseline; names are those of
`evaluation.tfma_metrics` (``map``, ``ndcg@10``, ...) plus TFMA's ``example_count``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from typing import Any, List, Mapping, Optional, Sequence

from analysis import reports_dir
from config.pipeline_config import default, PipelineConfig
from evaluation import outputs, ranking
from evaluation.results import BASELINE, CANDIDATE, OVERALL, metric_values
from evaluation.slices import SLICE_FEATURES
from metadata import mlmd
from serving import pushes

# The notebook's parameters, as environment variables (analysis/report.py sets them for a headless run).
RUN_ENV = "CVRANK_RUN"
WORKSPACE_ENV = "CVRANK_WORKSPACE"
# JSON object: the settings besides the workspace that say where its runs are recorded (`metadata_uri`,
# `pipeline_name`), when they are not the defaults; `cvrank report` and `cvrank notebook` set it.
SETTINGS_ENV = "CVRANK_SETTINGS"
REPORT_DIR_ENV = "CVRANK_REPORT_DIR"
LATEST = "latest"

MAP = ranking.MAP_NAME
NDCG10 = ranking.NDCG_NAME
EXAMPLE_COUNT = "example_count"  # TFMA's ExampleCount: the jobs in a slice
PLOTTED = ((MAP, "MAP"), (NDCG10, "NDCG@10"))  # (metric name, label) of each plotted metric
# Table columns, in this order, when present: lenient and strict ranking metrics of one output.
TABLE_METRICS = (EXAMPLE_COUNT, MAP, f"{MAP}{ranking.STRICT_SUFFIX}", NDCG10, f"{NDCG10}{ranking.STRICT_SUFFIX}",
                 f"precision@{ranking.DEFAULT_PRECISION_K}",
                 f"precision@{ranking.DEFAULT_PRECISION_K}{ranking.STRICT_SUFFIX}",
                 f"recall@{ranking.DEFAULT_RECALL_K}", "map_over_bm25")
# A slicing column's values in reading order where alphabetical order is not it (DataCheck's buckets).
_VALUE_ORDER = {"text_words_bucket": ("short", "medium", "long")}

# The PNG files the plots are saved as, in the output directory.
HISTORY_PNG = "map_history.png"
BASELINE_PNG = "candidate_vs_baseline.png"
METRICS_CSV = "metrics.csv"


def slices_png(column: str) -> str:
    """The PNG file of the per-slice plot of slicing column `column`."""
    return f"slices_{column}.png"


class EvaluationNotFound(LookupError):
    """The evaluation asked for does not exist; the message says what was asked for and what exists."""


def quiet_tensorflow() -> None:
    """Keeps TensorFlow's start-up notes and deprecation warnings out of the notebook's cell outputs
    (errors still show); imports TensorFlow. Call it before anything else imports TensorFlow.

    The notebook computes nothing with TensorFlow (it reads TFMA's output files), so turning oneDNN's
    optimisations off changes no number; it is what silences their start-up note, which TensorFlow
    prints whatever TF_CPP_MIN_LOG_LEVEL says."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow as tf

    # In an interactive kernel TensorFlow sets its logger to INFO on first use; set it after import.
    tf.get_logger().setLevel(logging.ERROR)


# -- which evaluation -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """An Evaluator output chosen by `find_evaluation`."""
    run_id: str  # the run whose Evaluator output it is (for a version: the run that pushed it)
    uri: str  # the TFMA output directory
    artifact_id: int
    requested: str  # the `run` it was found for
    pushed_version: Optional[str] = None  # the version asked for, when `run` was one


def default_workspace() -> str:
    """`$CVRANK_WORKSPACE`, or the pipeline's default workspace."""
    return os.path.abspath(os.environ.get(WORKSPACE_ENV) or default("workspace"))


def location_settings(config: PipelineConfig) -> dict:
    """The settings of `config` besides its workspace that say where its runs are recorded
    (`metadata_uri`, `pipeline_name`), those that are not the defaults."""
    return {name: getattr(config, name) for name in ("metadata_uri", "pipeline_name")
            if getattr(config, name) != default(name)}


def default_output_dir(workspace: str, run_id: str) -> str:
    """Where a report of run `run_id` goes by default: `<workspace>/reports/<run id>`."""
    return os.path.join(reports_dir(workspace), run_id)


def open_workspace(workspace: str, settings: Optional[Mapping[str, Any]] = None):
    """(PipelineConfig, read-only ML Metadata store) of `workspace`, with `settings` (default: those of
    $CVRANK_SETTINGS, else none) saying where its runs are recorded. Raises EvaluationNotFound when there
    is no ML Metadata store (nothing ever ran there)."""
    if settings is None:
        settings = json.loads(os.environ.get(SETTINGS_ENV) or "{}")
    config = PipelineConfig.create({**settings, "workspace": os.path.abspath(workspace)})
    connection = config.metadata_connection()
    if not mlmd.has_store(connection):
        raise EvaluationNotFound(
            f"workspace {config.workspace} has no runs: there is no ML Metadata store at "
            f"{mlmd.describe(connection)} (run the pipeline with `bin/cvrank run --workspace {config.workspace}`)")
    return config, mlmd.open_store(connection, read_only=True)


def _finished_evaluation(store, pipeline_name: str, run_id: str):
    """(evaluation artifact or None, Evaluator state or None) of run `run_id`."""
    state = mlmd.run_node_states(store, pipeline_name, run_id).get("Evaluator")
    if state not in ("COMPLETE", "CACHED"):
        return None, state
    artifacts = mlmd.run_node_outputs(store, pipeline_name, run_id, "Evaluator").get("evaluation") or []
    return (artifacts[0] if artifacts else None), state


def _checked(artifact, run_id: str, requested: str, version: Optional[str] = None) -> Evaluation:
    if artifact.state == mlmd.Artifact.DELETED:
        raise EvaluationNotFound(f"the evaluation of run {run_id} ({artifact.uri}) was removed by `cvrank gc`")
    if not os.path.isdir(artifact.uri):
        raise EvaluationNotFound(f"the evaluation of run {run_id} is recorded at {artifact.uri}, which does not exist")
    return Evaluation(run_id, artifact.uri, artifact.id, requested, version)


def _recent(run_ids: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(reversed(run_ids[-n:]))
    return f"{shown} and {len(run_ids) - n} older" if len(run_ids) > n else shown


def find_evaluation(store, pipeline_name: str, run: str = LATEST, serving_dir: Optional[str] = None,
                    workspace: str = "") -> Evaluation:
    """The Evaluator output of `run` (see the module docstring) in the ML Metadata `store`; a version is
    looked up under the model base path `serving_dir`. `workspace` only names the workspace in messages.
    Raises EvaluationNotFound when there is no such run or version, the run has no finished Evaluator,
    the version was not pushed by a pipeline run, or the evaluation's files were removed."""
    where = f" in workspace {workspace}" if workspace else ""
    run = (run or LATEST).strip()
    runs = [ctx.name for ctx, _ in mlmd.pipeline_runs(store, pipeline_name)]
    if not runs:
        raise EvaluationNotFound(f"pipeline {pipeline_name!r} has no runs{where}")

    if run == LATEST:
        states = []
        for run_id in reversed(runs):
            artifact, state = _finished_evaluation(store, pipeline_name, run_id)
            if artifact is not None:
                return _checked(artifact, run_id, run)
            states.append(state or "not run")
        raise EvaluationNotFound(
            f"none of the {len(runs)} runs of {pipeline_name!r}{where} has an Evaluator output (the newest "
            f"run's Evaluator: {states[0]})")

    if run.isdigit():
        if serving_dir is None:
            raise EvaluationNotFound(f"{run!r} is a model version, and no model base path was given to look it up")
        records = pushes.push_records(store, serving_dir)
        record = records.get(int(run))
        if record is None:
            known = ", ".join(str(v) for v in sorted(records)) or "none"
            raise EvaluationNotFound(
                f"no model version {run} was pushed to {serving_dir}{where} (pushed versions: {known})")
        inputs = mlmd.execution_inputs(store, record.execution.id) if record.execution is not None else {}
        artifact = (inputs.get("evaluation") or [None])[0]
        if artifact is None and record.run_id in runs:
            artifact, _ = _finished_evaluation(store, pipeline_name, record.run_id)
        if artifact is None:
            if record.model_uri and record.model_uri.startswith("index update"):
                made_by = f"an {record.model_uri} (`cvrank index`)"
            else:
                made_by = f"run {record.run_id}" if record.run_id else (record.execution_type or "an unrecorded push")
            raise EvaluationNotFound(
                f"model version {run} was pushed by {made_by}, which has no Evaluator output; give a version "
                "the pipeline pushed, or a run id")
        return _checked(artifact, record.run_id or "", run, version=run)

    if run not in runs:
        raise EvaluationNotFound(
            f"no run {run!r} of pipeline {pipeline_name!r}{where} (its runs, newest first: {_recent(runs)}); "
            f"give a run id, a pushed model version or {LATEST!r}")
    artifact, state = _finished_evaluation(store, pipeline_name, run)
    if artifact is None:
        raise EvaluationNotFound(
            f"run {run} of {pipeline_name!r}{where} has no Evaluator output: its Evaluator "
            f"{'did not run' if state is None else 'is ' + state}")
    return _checked(artifact, run, run)


def load_evaluation(workspace: Optional[str] = None, run: str = LATEST,
                    settings: Optional[Mapping[str, Any]] = None) -> Evaluation:
    """`find_evaluation` of `run` in `workspace` (default `default_workspace()`), with its pipeline's
    ML Metadata store and model base path (`settings` as for `open_workspace`)."""
    config, store = open_workspace(workspace or default_workspace(), settings)
    return find_evaluation(store, config.pipeline_name, run, config.serving_dir, config.workspace)


def load_eval_result(evaluation: Evaluation, model: str = CANDIDATE):
    """TFMA's EvalResult of `evaluation` for `model` (CANDIDATE or BASELINE), for `tfma.view`; None for
    BASELINE when the Evaluator had no baseline model."""
    import tensorflow_model_analysis as tfma

    if model == BASELINE:
        if not has_baseline(evaluation):
            return None
        return tfma.load_eval_result(evaluation.uri, model_name=BASELINE)
    return tfma.load_eval_result(evaluation.uri)


def has_baseline(evaluation: Evaluation) -> bool:
    """Whether the Evaluator compared the candidate with a baseline model (the latest blessed one)."""
    from tensorflow_model_analysis.writers import eval_config_writer

    eval_config = eval_config_writer.load_eval_run(evaluation.uri)[0]
    return eval_config is not None and any(spec.is_baseline for spec in eval_config.model_specs)


def run_history(workspace: Optional[str] = None, settings: Optional[Mapping[str, Any]] = None):
    """The runs of the workspace's pipeline, oldest first (`analysis.history.run_rows`; `settings` as for
    `open_workspace`)."""
    from analysis.history import run_rows

    config, store = open_workspace(workspace or default_workspace(), settings)
    return run_rows(store, config.pipeline_name)


# -- the metrics ------------------------------------------------------------------------------------

FRAME_COLUMNS = ("slice", "column", "slice_value", "model", "output", "metric", "value", "lower", "upper")


def metrics_frame(evaluation_uri: str):
    """Every numeric metric of a TFMA output as a pandas DataFrame with columns FRAME_COLUMNS, one row
    per (slice, model, output, metric) of `evaluation.results.metric_values`: `slice` as
    `evaluation.results.slice_name` names it, `column` and `slice_value` its slicing column and value
    ("" for Overall), `model` CANDIDATE or BASELINE, `output` the prediction output (a metric without one
    counts as the served `scores`), `lower` and `upper` the confidence interval's bounds (NaN when TFMA
    computed none). Diffs against the baseline are left out (the baseline's own rows are there). Rows are
    in `slice_order`."""
    import pandas as pd

    rows = []
    for v in metric_values(evaluation_uri):
        column, _, value = v.slice.partition("=") if v.slice != OVERALL else ("", "", "")
        rows.append((v.slice, column, value, v.model, v.output, v.metric, v.value, v.lower, v.upper))
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    order = {s: i for i, s in enumerate(slice_order(frame["slice"].unique()))}
    return frame.sort_values(["slice", "model", "output", "metric"], key=lambda col: (
        col.map(order) if col.name == "slice" else col)).reset_index(drop=True)


def slice_order(names) -> List[str]:
    """Slice names in reading order: Overall, then by slicing column (in the Evaluator's order), each
    column's values numerically when they are numbers, short-medium-long for description length."""
    def key(name: str):
        if name == OVERALL:
            return (-1, 0, 0.0, "")
        column, _, value = name.partition("=")
        position = SLICE_FEATURES.index(column) if column in SLICE_FEATURES else len(SLICE_FEATURES)
        known = _VALUE_ORDER.get(column, ())
        if value in known:
            return (position, 0, float(known.index(value)), value)
        try:
            return (position, 1, float(value), value)
        except ValueError:
            return (position, 2, 0.0, value)
    return sorted(names, key=key)


def slice_names(frame) -> List[str]:
    """The slices of `frame`, in `slice_order`."""
    return slice_order(frame["slice"].unique())


def has_confidence_intervals(frame) -> bool:
    """Whether any metric of `frame` has a confidence interval."""
    return bool(frame["lower"].notna().any())


def slice_table(frame, model: str = CANDIDATE, output: str = outputs.SERVED, with_ci: bool = False):
    """One model's metrics of one output as a table: a row per slice (in `slice_order`), a column per
    metric (TABLE_METRICS first, then the others by name). With `with_ci`, each cell is a string
    "value [lower, upper]" where TFMA computed a confidence interval."""
    selected = frame[(frame["model"] == model) & (frame["output"] == output)]
    if selected.empty:
        import pandas as pd

        return pd.DataFrame()
    if with_ci:
        selected = selected.assign(value=[
            f"{v:.0f}" if m == EXAMPLE_COUNT else f"{v:.4f}" if math.isnan(lo) else f"{v:.4f} [{lo:.4f}, {hi:.4f}]"
            for m, v, lo, hi in zip(selected["metric"], selected["value"], selected["lower"], selected["upper"])])
    table = selected.pivot(index="slice", columns="metric", values="value")
    metrics = [m for m in TABLE_METRICS if m in table.columns] + sorted(
        m for m in table.columns if m not in TABLE_METRICS)
    table = table.reindex(index=slice_order(table.index), columns=metrics)
    table.columns.name = None
    if EXAMPLE_COUNT in table.columns and not with_ci:
        table[EXAMPLE_COUNT] = table[EXAMPLE_COUNT].round().astype("Int64")
    return table


def outputs_table(frame, slice_: str = OVERALL, metrics: Sequence[str] = TABLE_METRICS[1:-1]):
    """The candidate's metrics on one slice for every prediction output (the served ranking and the
    rankings it is compared with), a row per output labelled as `evaluation.outputs.LABELS`."""
    selected = frame[(frame["model"] == CANDIDATE) & (frame["slice"] == slice_)
                     & frame["metric"].isin(list(metrics))]
    table = selected.pivot(index="output", columns="metric", values="value")
    table = table.reindex(index=[o for o in outputs.VARIANTS if o in table.index],
                          columns=[m for m in metrics if m in table.columns])
    table.index = [outputs.LABELS[o] for o in table.index]
    table.columns.name = None
    return table


def history_table(rows):
    """The run history (`analysis.history.RunRow`s) as a table: run, start (UTC), MAP, NDCG@10,
    blessed, pushed version."""
    import pandas as pd

    from analysis.history import yes_no

    return pd.DataFrame([{"run": r.run_id, "started (UTC)": r.started.strftime("%Y-%m-%d %H:%M:%S"),
                          "MAP": r.map, "NDCG@10": r.ndcg10,
                          "blessed": yes_no(r.blessed),
                          "pushed": r.pushed_version or "-"} for r in rows])


def write_metrics_csv(frame, output_dir: str) -> str:
    """Writes `frame` as METRICS_CSV into `output_dir` (created if missing); returns the path."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, METRICS_CSV)
    frame.to_csv(path, index=False)
    return path


# -- plots ------------------------------------------------------------------------------------------


def _values(frame, model: str, metric: str, slices: Sequence[str], output: str = outputs.SERVED):
    """(values, lower error, upper error) of `metric` on each of `slices`; NaN where absent, errors 0
    where there is no confidence interval."""
    selected = frame[(frame["model"] == model) & (frame["output"] == output) & (frame["metric"] == metric)]
    by_slice = {s: (v, lo, hi) for s, v, lo, hi in zip(selected["slice"], selected["value"],
                                                       selected["lower"], selected["upper"])}
    values, below, above = [], [], []
    for s in slices:
        v, lo, hi = by_slice.get(s, (math.nan, math.nan, math.nan))
        values.append(v)
        below.append(0.0 if math.isnan(lo) else max(0.0, v - lo))
        above.append(0.0 if math.isnan(hi) else max(0.0, hi - v))
    return values, below, above


# Axis end of the [0, 1] metrics: TFMA's intervals (normal approximations) can reach past 1.
_TOP = 1.1
_TICKS = [i / 5 for i in range(6)]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _save(fig, output_dir: Optional[str], name: str) -> None:
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        fig.savefig(os.path.join(output_dir, name), dpi=100, bbox_inches="tight")


def _figure(*args, **kwargs):
    # pyplot's figures, so that Jupyter's inline backend shows them when the cell ends.
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def _bar_height(n: int) -> float:
    return 1.6 + 0.32 * n  # inches for n bars (or groups) stacked vertically


def plot_slices(frame, column: str, output_dir: Optional[str] = None, title: str = ""):
    """Horizontal bars of the candidate's MAP and NDCG@10 (served ranking) on each slice of slicing
    column `column`, each labelled with the slice's example count (n), the overall value as a dashed
    line, and error bars where TFMA computed confidence intervals. Saved as `slices_png(column)` in
    `output_dir` when given. Returns the matplotlib Figure."""
    names = [s for s in slice_names(frame) if s.partition("=")[0] == column]
    fig, axes = _figure(1, len(PLOTTED), figsize=(5.5 * len(PLOTTED), _bar_height(len(names))), squeeze=False,
                        sharey=True)
    counts, _, _ = _values(frame, CANDIDATE, EXAMPLE_COUNT, names)
    labels = [f"{s.partition('=')[2]} (n={c:.0f})" if not math.isnan(c) else s.partition("=")[2]
              for s, c in zip(names, counts)]
    ys = range(len(names))
    for ax, (metric, label) in zip(axes[0], PLOTTED):
        values, below, above = _values(frame, CANDIDATE, metric, names)
        ax.barh(ys, values, xerr=[below, above] if any(below + above) else None, capsize=3, color="tab:blue")
        overall = _values(frame, CANDIDATE, metric, [OVERALL])[0][0]
        ax.set_title(f"{label} per {column}")
        if not math.isnan(overall):
            ax.axvline(overall, color="black", linestyle="--", linewidth=1)
            ax.set_title(f"{label} per {column} (dashed: overall {overall:.3f})", fontsize=10)
        ax.set_yticks(ys, labels)
        ax.set_xlim(0, _TOP)
        ax.set_xticks(_TICKS)
        ax.set_xlabel(label)
    axes[0][0].invert_yaxis()  # first slice on top (the axes share y: once inverts both)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, output_dir, slices_png(column))
    return fig


def plot_candidate_vs_baseline(frame, output_dir: Optional[str] = None, title: str = ""):
    """The candidate's MAP and NDCG@10 (served ranking) beside the baseline model's on every slice
    (horizontal bars), with error bars where TFMA computed confidence intervals; the candidate alone,
    saying so, when the Evaluator had no baseline. Saved as BASELINE_PNG in `output_dir` when given.
    Returns the Figure."""
    names = slice_names(frame)
    baseline = bool((frame["model"] == BASELINE).any())
    models = [(CANDIDATE, "candidate", "tab:blue")] + ([(BASELINE, "baseline", "tab:gray")] if baseline else [])
    fig_height = _bar_height(len(names) * len(models) * 0.7)
    fig, axes = _figure(1, len(PLOTTED), figsize=(5.5 * len(PLOTTED), fig_height), squeeze=False, sharey=True)
    height = 0.8 / len(models)
    for ax, (metric, label) in zip(axes[0], PLOTTED):
        for i, (model, model_label, color) in enumerate(models):
            values, below, above = _values(frame, model, metric, names)
            offset = (i - (len(models) - 1) / 2) * height
            ax.barh([y + offset for y in range(len(names))], values, height,
                    xerr=[below, above] if any(below + above) else None, capsize=2, color=color, label=model_label)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlim(0, _TOP)
        ax.set_xticks(_TICKS)
        ax.set_xlabel(label)
        ax.set_title(f"{label}: candidate vs baseline" if baseline else f"{label}: candidate (no baseline model)")
    axes[0][0].invert_yaxis()  # Overall on top (the axes share y: once inverts both)
    # One legend above the panels, where no bar can be under it.
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="upper center", ncol=len(models), fontsize=9)
    heading = title or ("" if baseline else "no model was blessed before this evaluation, so it had no baseline")
    if heading:
        fig.suptitle(heading, y=1.0 - 0.28 / fig_height, fontsize=10, va="top")
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.5 if heading else 0.3) / fig_height))
    _save(fig, output_dir, BASELINE_PNG)
    return fig


def plot_history(rows, output_dir: Optional[str] = None, highlight: Optional[str] = None):
    """MAP (served ranking, eval jobs) of every run with an evaluation, in time order (`rows`:
    `analysis.history.RunRow`s, oldest first): filled markers for blessed models, crosses for the others,
    pushed versions labelled, run `highlight` circled. Saved as HISTORY_PNG in `output_dir` when given.
    Returns the Figure."""
    shown = [r for r in rows if r.map is not None]
    fig, axes = _figure(figsize=(9, 4))
    ax = axes
    xs = list(range(len(shown)))
    ax.plot(xs, [r.map for r in shown], color="tab:blue", linewidth=1, zorder=1)
    for blessed, marker, label in ((True, "o", "blessed"), (False, "x", "not blessed"), (None, ".", "blessing unknown")):
        points = [(x, r.map) for x, r in zip(xs, shown) if r.blessed is blessed]
        if points:
            ax.scatter(*zip(*points), marker=marker, color="tab:blue", label=label, zorder=2)
    for x, r in zip(xs, shown):
        if r.pushed_version:
            ax.annotate(f"v{r.pushed_version}", (x, r.map), textcoords="offset points", xytext=(0, 8),
                        ha="center", fontsize=8)
        if r.run_id == highlight:
            ax.scatter([x], [r.map], s=250, facecolors="none", edgecolors="tab:red", linewidths=1.5,
                       label="this report's run", zorder=3)
    # One tick per run, labelled by its start (UTC); at most ~12 labels.
    step = max(1, math.ceil(len(shown) / 12))
    ax.set_xticks(xs[::step], [r.started.strftime("%m-%d %H:%M:%S") for r in shown[::step]],
                  rotation=30, ha="right", fontsize=8)
    ax.set_xlabel("run start (UTC)")
    ax.set_ylabel("MAP")
    if shown:
        low, high = min(r.map for r in shown), max(r.map for r in shown)
        ax.set_ylim(max(0.0, low - 0.1), min(1.05, high + 0.1))
    hidden = len(rows) - len(shown)
    ax.set_title(f"MAP of the served ranking, {_plural(len(shown), 'run')} in time order"
                 + (f" ({_plural(hidden, 'run')} without an evaluation not shown)" if hidden else ""))
    if shown:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    _save(fig, output_dir, HISTORY_PNG)
    return fig


def plot_files(output_dir: str) -> List[str]:
    """The PNG files a full notebook run writes into `output_dir`, in the order it writes them."""
    return [os.path.join(output_dir, name) for name in
            [slices_png(c) for c in SLICE_FEATURES] + [BASELINE_PNG, HISTORY_PNG]]


def label(evaluation: Evaluation) -> str:
    """What the evaluation is of: "run R", or "model version V, pushed by run R"."""
    if evaluation.pushed_version:
        return f"model version {evaluation.pushed_version}, pushed by run {evaluation.run_id}"
    return f"run {evaluation.run_id}"


def summary_line(evaluation: Evaluation) -> str:
    """One line naming the evaluation shown and its TFMA output directory."""
    return f"{label(evaluation)}: {evaluation.uri}"


def confidence_note(frame) -> str:
    """Whether the evaluation has confidence intervals, as a sentence."""
    if has_confidence_intervals(frame):
        return "confidence intervals: TFMA's (shown as error bars and [lower, upper] in the table)"
    return ("confidence intervals: none in this evaluation (the run's setting confidence_intervals was "
            "false, or no slice had enough jobs)")

