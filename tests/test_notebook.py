"""The sliced-metrics notebook (`notebooks/sliced_metrics.ipynb`, `analysis/sliced_metrics.py`), its headless
report (`analysis/report.py`) and the notebook server (`analysis/notebook_server.py`): real TFMA output of
tiny pipeline runs, real ML Metadata, a real kernel, a real JupyterLab over HTTP."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import nbformat
import pytest

from cvrank import cli
from analysis import notebook_server, report
from analysis import sliced_metrics as sm
from config import PROJECT_ROOT
from evaluation.results import load_slice_metrics
from evaluation.slices import SLICE_FEATURES
from metadata import mlmd

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _store(config):
    return mlmd.open_store(config.metadata_connection(), read_only=True)


def _evaluation_uri(config, run_id):
    [artifact] = mlmd.run_node_outputs(_store(config), config.pipeline_name, run_id, "Evaluator")["evaluation"]
    return artifact.uri


def _pushed_version(config, run_id):
    [pushed] = mlmd.run_node_outputs(_store(config), config.pipeline_name, run_id, "Pusher")["pushed_model"]
    return pushed.custom_properties["pushed_version"].string_value


def _outputs_text(nb) -> str:
    """Every stream and text/plain output of an executed notebook, joined."""
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", "") or output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def _printed_slices(nb) -> list:
    [line] = [ln for ln in _outputs_text(nb).splitlines() if ln.startswith("slices: ")]
    return line[len("slices: "):].split(", ")


def _assert_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE, path
    import matplotlib.image

    height, width = matplotlib.image.imread(path).shape[:2]
    assert width >= 300 and height >= 200 and os.path.getsize(path) > 5000, (path, width, height)


# -- without a pipeline run -------------------------------------------------------------------------


def test_the_repository_notebook_holds_no_outputs():
    nb = nbformat.read(report.NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert "widgets" not in nb.metadata and nb.metadata.kernelspec.name == report.KERNEL_NAME
    # Each code cell starts with a comment: its name in a failure message.
    assert all(c.source.startswith("# ") for c in code)


def test_a_workspace_without_runs_is_named(tmp_path):
    with pytest.raises(sm.EvaluationNotFound, match=f"workspace {re.escape(str(tmp_path))} has no runs"):
        sm.load_evaluation(str(tmp_path))
    with pytest.raises(sm.EvaluationNotFound, match="has no runs"):
        report.write_report(str(tmp_path))


def test_slices_are_ordered_for_reading():
    names = ["text_words_bucket=long", "major_group=9", "Overall", "text_words_bucket=short", "major_group=13",
             "text_words_bucket=medium"]
    assert sm.slice_order(names) == ["Overall", "major_group=9", "major_group=13", "text_words_bucket=short",
                                     "text_words_bucket=medium", "text_words_bucket=long"]


def test_nbextensions_are_enabled_keeping_other_settings(tmp_path):
    path = tmp_path / "nbconfig" / "notebook.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"load_extensions": {"other/ext": True}, "Cell": {"cm_config": {}}}))
    assert notebook_server.enable_nbextensions(str(tmp_path)) == str(path)
    settings = json.loads(path.read_text())
    assert settings["load_extensions"] == {"other/ext": True, "tensorflow_model_analysis/extension": True,
                                           "jupyter-js-widgets/extension": True}
    assert settings["Cell"] == {"cm_config": {}}


# -- on the tiny history (two runs: epochs 5, then 6) -----------------------------------------------


@pytest.fixture(scope="module")
def history(tiny_history):
    assert tiny_history.exit_code == 0 and len(tiny_history.run_ids) == 2, tiny_history.output
    return tiny_history


@pytest.fixture(scope="module")
def latest_report(history, tmp_path_factory):
    """The report of the latest run, written once: (HTML path, output dir, seconds taken)."""
    output_dir = str(tmp_path_factory.mktemp("report"))
    start = time.monotonic()
    html = report.write_report(history.config.workspace, "latest", output_dir)
    return html, output_dir, time.monotonic() - start


@pytest.mark.slow
def test_runs_and_versions_resolve_to_their_evaluations(history):
    config, (first, second) = history.config, history.run_ids
    store = _store(config)

    def find(run):
        return sm.find_evaluation(store, config.pipeline_name, run, config.serving_dir)

    assert find("latest").run_id == second and find("latest").uri == _evaluation_uri(config, second)
    assert find(first).uri == _evaluation_uri(config, first)
    version = _pushed_version(config, first)
    by_version = find(version)
    assert (by_version.run_id, by_version.uri, by_version.pushed_version) == (first, _evaluation_uri(config, first),
                                                                               version)
    assert not sm.has_baseline(find(first)) and sm.has_baseline(find(second))


@pytest.mark.slow
@pytest.mark.parametrize("run, message", [
    ("bogus", r"no run 'bogus' of pipeline 'cvrank' in workspace .*\(its runs, newest first: \d{8}T"),
    ("999", r"no model version 999 was pushed to .*serving/cvrank .*\(pushed versions: \d"),
])
def test_a_run_or_version_that_does_not_exist_is_named(history, run, message):
    with pytest.raises(sm.EvaluationNotFound, match=message):
        sm.load_evaluation(history.config.workspace, run)


@pytest.mark.slow
def test_the_notebook_runs_headless_and_writes_its_plots(history, latest_report):
    html, output_dir, seconds = latest_report
    config, second = history.config, history.run_ids[1]
    nb = nbformat.read(os.path.join(output_dir, report.EXECUTED_NAME), as_version=4)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    for path in sm.plot_files(output_dir):
        _assert_png(path)
    # TFMA's slicing metrics view: overall, then one per slicing column.
    widgets = [o for c in nb.cells for o in c.get("outputs", [])
               if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) == 1 + len(SLICE_FEATURES)
    text = _outputs_text(nb)
    assert f"evaluation: run {second}: {_evaluation_uri(config, second)}" in text
    assert "confidence intervals: TFMA's" in text  # on by default (setting confidence_intervals)
    with open(html, encoding="utf-8") as f:
        page = f.read()
    assert page.count("data:image/png;base64,") >= len(sm.plot_files(output_dir))
    assert f"run {second}" in page


@pytest.mark.slow
def test_the_notebook_shows_exactly_the_evaluators_slices(history, latest_report):
    _, output_dir, _ = latest_report
    expected = load_slice_metrics(_evaluation_uri(history.config, history.run_ids[1]))
    nb = nbformat.read(os.path.join(output_dir, report.EXECUTED_NAME), as_version=4)
    printed = _printed_slices(nb)
    assert printed == sm.slice_order(expected) and len(printed) == len(set(printed))
    assert any(s.startswith("major_group=") for s in printed) and any(s.startswith("text_words_bucket=") for s in printed)
    import pandas as pd

    table = pd.read_csv(os.path.join(output_dir, sm.METRICS_CSV))
    assert set(table["slice"]) == set(expected)
    served = table[(table["model"] == sm.CANDIDATE) & (table["output"] == "scores") & (table["metric"] == "map")]
    assert {s: v for s, v in zip(served["slice"], served["value"])} == pytest.approx(
        {s: m["map"] for s, m in expected.items()})


@pytest.mark.slow
def test_the_report_command_writes_html_and_names_a_bad_run(history, tmp_path, capsys):
    version = _pushed_version(history.config, history.run_ids[0])
    assert cli.main(["report", version, "--workspace", history.config.workspace, "--output", str(tmp_path / "v")]) == 0
    html = capsys.readouterr().out.strip()
    assert html == str(tmp_path / "v" / report.HTML_NAME) and os.path.getsize(html) > 10000
    nb = nbformat.read(str(tmp_path / "v" / report.EXECUTED_NAME), as_version=4)
    assert f"evaluation: model version {version}, pushed by run {history.run_ids[0]}" in _outputs_text(nb)

    assert cli.main(["report", "bogus", "--workspace", history.config.workspace, "--output", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cvrank report: no run 'bogus' of pipeline 'cvrank'") and not os.path.exists(tmp_path / "bad")


@pytest.mark.slow
def test_a_failing_notebook_names_its_cell(history, tmp_path):
    env = report.notebook_env(history.config.workspace, "bogus", str(tmp_path))
    with pytest.raises(report.ReportError,
                       match=r"failed in cell 3 \('Load the evaluation'\): EvaluationNotFound: no run 'bogus'"):
        report.execute_notebook(env, log_path=str(tmp_path / "kernel.log"))


@pytest.mark.slow
def test_confidence_intervals_are_computed_and_shown(history, tmp_path):
    """The Evaluator computes TFMA's confidence intervals (setting `confidence_intervals`, on by default):
    the table and the plots of the report carry them."""
    config = history.config
    assert config.confidence_intervals
    run_id = history.run_ids[-1]
    html = report.write_report(config.workspace, run_id, str(tmp_path / "report"))
    frame = sm.metrics_frame(_evaluation_uri(config, run_id))
    assert sm.has_confidence_intervals(frame)
    with_ci = frame.dropna(subset=["lower", "upper"])
    # The interval is around the jackknife estimate; a zero-width one may differ from the value in the last bit.
    assert ((with_ci["lower"] <= with_ci["value"] + 1e-9) & (with_ci["value"] <= with_ci["upper"] + 1e-9)).all()
    nb = nbformat.read(str(tmp_path / "report" / report.EXECUTED_NAME), as_version=4)
    text = _outputs_text(nb)
    assert "confidence intervals: TFMA's" in text and re.search(r"0\.\d{4} \[-?\d\.\d{4}, \d\.\d{4}\]", text)
    for path in sm.plot_files(str(tmp_path / "report")):
        _assert_png(path)
    assert os.path.getsize(html) > 10000


# -- the notebook server ----------------------------------------------------------------------------


class _Lines:
    """The lines a process prints on stdout, read by a thread (a pipe's buffered reads would hide lines
    from select)."""

    def __init__(self, process):
        self.process, self.lines, self.queue = process, [], queue.Queue()
        threading.Thread(target=lambda: [self.queue.put(line) for line in process.stdout] + [self.queue.put(None)],
                         daemon=True).start()

    def until(self, pattern, timeout):
        """The match of the first next line matching `pattern` (a regex)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s; printed: {''.join(self.lines)}")

    def rest(self, timeout=10) -> str:
        """Everything printed after what `until` read, up to the end of the output."""
        lines, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.queue.get(timeout=timeout)
            if line is None:
                break
            lines.append(line)
        return "".join(lines)


def _get(url, token=None):
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


@pytest.mark.slow
def test_the_notebook_server_serves_with_its_token_and_stops_on_ctrl_c(tmp_path):
    env = dict(os.environ, PYTHONPATH=PROJECT_ROOT)
    process = subprocess.Popen([sys.executable, "-m", "cvrank.cli", "notebook", "--workspace", str(tmp_path), "--port", "0"],
                               env=env, stdout=subprocess.PIPE, text=True)
    printed = _Lines(process)
    try:
        found = printed.until(r"(http://127\.0\.0\.1:(\d+))/lab/tree/sliced_metrics\.ipynb\?token=([0-9a-f]{48})",
                              timeout=120)
        base, port, token = found.group(1), int(found.group(2)), found.group(3)
        classic = printed.until(r"http://\S+", timeout=10)
        assert classic.group(0) == f"{base}/notebooks/sliced_metrics.ipynb?token={token}"

        assert _get(f"{base}/api/status", token)[0] == 200
        assert _get(f"{base}/api/status")[0] == 403
        assert _get(f"{base}/api/status", "0" * 48)[0] == 403
        status, body = _get(f"{base}/api/config/notebook", token)
        assert status == 200 and json.loads(body)["load_extensions"]["tensorflow_model_analysis/extension"] is True
        status, body = _get(f"{base}/nbextensions/tensorflow_model_analysis/extension.js", token)
        assert status == 200 and b"tensorflow_model_analysis" in body
        assert _get(f"{base}/notebooks/sliced_metrics.ipynb?token={token}")[0] == 200
        assert _get(f"{base}/lab/tree/sliced_metrics.ipynb?token={token}")[0] == 200
        with pytest.raises(notebook_server.NotebookServerError, match=f"port {port} on 127.0.0.1 is in use"):
            notebook_server.start(str(tmp_path), port)

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert "server stopped" in printed.rest()
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"{base}/api/status", timeout=5)
        assert not notebook_server._port_in_use(port)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _environ(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(item.decode().split("=", 1) for item in f.read().split(b"\0") if b"=" in item)


@pytest.mark.slow
def test_the_servers_kernels_see_the_project_and_the_workspace(tmp_path):
    server = notebook_server.start(str(tmp_path), port=0)
    try:
        request = urllib.request.Request(server.url("/api/kernels", with_token=False), method="POST",
                                         data=json.dumps({"name": report.KERNEL_NAME}).encode(),
                                         headers={"Authorization": f"token {server.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 201
        deadline = time.monotonic() + 30
        while not _children(server.process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        [kernel] = _children(server.process.pid)
        env = _environ(kernel)
        assert env["PYTHONPATH"].split(os.pathsep)[0] == PROJECT_ROOT
        assert env[sm.WORKSPACE_ENV] == str(tmp_path)
        assert env["JUPYTER_CONFIG_DIR"] == str(tmp_path / "jupyter" / "config")
    finally:
        assert server.stop() == 0
