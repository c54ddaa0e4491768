"""The sliced-metrics report: `notebooks/sliced_metrics.ipynb` executed headless (nbclient, the runtime's
`python3` kernel) for one evaluation, exported as HTML (nbconvert) beside its PNG plots.

A report of run R goes to `<workspace>/reports/<R>/` by default and holds `sliced_metrics.html`, the
executed notebook `sliced_metrics.ipynb`, the plots (`analysis.sliced_metrics.plot_files`),
`metrics.csv`, and `kernel.log` (what the kernel process wrote to stdout and stderr).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Dict, Mapping, Optional

from analysis import sliced_metrics as sm
from config import PROJECT_ROOT

NOTEBOOK = os.path.join(PROJECT_ROOT, "notebooks", "sliced_metrics.ipynb")
HTML_NAME = "sliced_metrics.html"
EXECUTED_NAME = "sliced_metrics.ipynb"
KERNEL_LOG = "kernel.log"
KERNEL_NAME = "python3"  # the runtime's ipykernel
CELL_TIMEOUT = 600  # seconds per cell; the slowest loads TFMA and TensorFlow


class ReportError(RuntimeError):
    """The notebook failed; the message names the cell and the error it raised."""


def notebook_env(workspace: str, run: str, output_dir: str, base: Optional[Dict[str, str]] = None,
                 settings: Optional[Mapping[str, Any]] = None) -> Dict[str, str]:
    """The kernel's environment: `base` (default os.environ) with the notebook's parameters
    (CVRANK_WORKSPACE, CVRANK_RUN, CVRANK_REPORT_DIR, and CVRANK_SETTINGS: `settings`, where the runs are
    recorded when not the defaults), the project first on PYTHONPATH, and matplotlib's inline backend
    (so plots are cell outputs whatever MPLBACKEND the caller has)."""
    env = dict(os.environ if base is None else base)
    env[sm.SETTINGS_ENV] = json.dumps(dict(settings or {}))
    path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != PROJECT_ROOT]
    env.update({sm.WORKSPACE_ENV: os.path.abspath(workspace), sm.RUN_ENV: run,
                sm.REPORT_DIR_ENV: os.path.abspath(output_dir),
                "PYTHONPATH": os.pathsep.join([PROJECT_ROOT] + path),
                "MPLBACKEND": "module://matplotlib_inline.backend_inline"})
    return env


def _cell_title(cell) -> str:
    """A cell's first line without its comment sign: each code cell of the notebook starts with one."""
    first = (cell.get("source") or "").strip().splitlines()
    return first[0].lstrip("#").strip() if first else ""


def _failed_cell(nb):
    """(1-based position, cell) of the first code cell with an error output, or (None, None)."""
    for index, cell in enumerate(nb.cells, start=1):
        if cell.cell_type == "code" and any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return index, cell
    return None, None


def execute_notebook(env: Dict[str, str], log_path: Optional[str] = None, notebook: str = NOTEBOOK,
                     timeout: int = CELL_TIMEOUT):
    """Executes `notebook` in a new `python3` kernel with environment `env` (see `notebook_env`) and
    working directory the notebook's, the kernel's stdout and stderr going to `log_path` (inherited when
    None). Returns the executed nbformat NotebookNode. Raises ReportError naming the cell (its position
    and title) and the error when a cell fails, times out or the kernel dies."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=timeout,
                            resources={"metadata": {"path": os.path.dirname(os.path.abspath(notebook))}})
    log = open(log_path, "w") if log_path else None
    streams = {"stdout": log, "stderr": log} if log else {}
    try:
        client.execute(env=env, **streams)
    except CellExecutionError as err:
        index, cell = _failed_cell(nb)
        where = f"cell {index} ({_cell_title(cell)!r})" if cell is not None else "a cell"
        raise ReportError(f"{notebook} failed in {where}: {err.ename}: {err.evalue}") from err
    except (CellTimeoutError, DeadKernelError) as err:
        # The cell that was running is the first one without an execution count.
        running = next(((i, c) for i, c in enumerate(nb.cells, start=1)
                        if c.cell_type == "code" and c.get("execution_count") is None), (None, None))
        where = f"cell {running[0]} ({_cell_title(running[1])!r})" if running[1] is not None else "a cell"
        reason = "timed out" if isinstance(err, CellTimeoutError) else "lost its kernel"
        shown = f"; the kernel's output is in {log_path}" if log_path else ""
        raise ReportError(f"{notebook} {reason} in {where}: {err}{shown}") from err
    finally:
        if log:
            log.close()
    return nb


def write_report(workspace: str, run: str = sm.LATEST, output_dir: Optional[str] = None,
                 timeout: int = CELL_TIMEOUT, settings: Optional[Mapping[str, Any]] = None) -> str:
    """Executes the sliced-metrics notebook for `run` ("latest", a run id or a pushed model version) of
    `workspace` and writes the report into `output_dir` (default `<workspace>/reports/<run id>`, created
    if missing): the HTML export, the executed notebook, the PNG plots and metrics.csv. Returns the HTML
    file's path. `settings`: where the workspace's runs are recorded, when not the defaults
    (`metadata_uri`, `pipeline_name`).

    The evaluation is looked up before any kernel starts, and the notebook is given the run id it found
    (or the version asked for), so a run finishing meanwhile does not change what "latest" shows. Raises
    `analysis.sliced_metrics.EvaluationNotFound` for a run, version or workspace without an evaluation,
    ReportError when the notebook fails."""
    import nbformat
    from nbconvert import HTMLExporter

    workspace = os.path.abspath(workspace)
    evaluation = sm.load_evaluation(workspace, run, dict(settings or {}))
    output_dir = os.path.abspath(output_dir or sm.default_output_dir(workspace, evaluation.run_id))
    os.makedirs(output_dir, exist_ok=True)
    env = notebook_env(workspace, evaluation.pushed_version or evaluation.run_id, output_dir, settings=settings)
    nb = execute_notebook(env, log_path=os.path.join(output_dir, KERNEL_LOG), timeout=timeout)
    nbformat.write(nb, os.path.join(output_dir, EXECUTED_NAME))
    title = f"cvrank sliced metrics: {sm.label(evaluation)}"
    # nbconvert warns that the plots have no alt text; the report's plots are described by their cells.
    quiet = logging.getLogger("cvrank.report.nbconvert")
    quiet.setLevel(logging.ERROR)
    html, _ = HTMLExporter(log=quiet).from_notebook_node(nb, resources={"metadata": {"name": title}})
    path = os.path.join(output_dir, HTML_NAME)
    with open(path, "w", encoding="utf-8") as f:
        f.write(html)
    return path


def cli_report(args, config) -> int:
    """`cvrank report`: run `args.run` of the workspace of `config` (a PipelineConfig: workspace,
    metadata_uri, pipeline_name) into `args.output` (None: <workspace>/reports/<run id>). Prints the HTML
    file's path and returns 0; prints the problem to stderr and returns 2 when there is no such
    evaluation, 1 when the notebook fails."""
    try:
        path = write_report(config.workspace, args.run, args.output or None, settings=sm.location_settings(config))
    except sm.EvaluationNotFound as err:
        print(f"cvrank report: {err}", file=sys.stderr)
        return 2
    except ReportError as err:
        print(f"cvrank report: {err}", file=sys.stderr)
        return 1
    print(path)
    return 0
