"""The CLI as a person meets it: settings listed and validated before anything runs, and a run's console
output (one line per node) kept apart from its log (everything else)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from config import PROJECT_ROOT, PipelineConfig, ServingConfig


def cvrank(*args, cwd=PROJECT_ROOT):
    return subprocess.run([sys.executable, "-m", "cvrank.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": PROJECT_ROOT}, timeout=120)


def test_config_lists_every_setting_with_default_and_description():
    result = cvrank("config")
    assert result.returncode == 0, result.stderr
    for model in (PipelineConfig, ServingConfig):
        for name, field in model.model_fields.items():
            assert f"\n  {name} = " in result.stdout, name
            assert field.description in result.stdout, name
    assert "  doc_weighting = 'sif'\n      one of 'mean', 'idf', 'sif'. " in result.stdout
    assert "  embedding_dim = 100\n      int >= 1, <= 4096. GloVe: word vector size" in result.stdout


def test_config_shows_an_override_beside_its_default():
    result = cvrank("config", "--set", "epochs=40")
    assert result.returncode == 0, result.stderr
    assert "  epochs = 40  (default 25)\n" in result.stdout


@pytest.mark.parametrize("setting, message", [
    ("embedding_dim=0", "setting 'embedding_dim' = '0' is not allowed: must be >= 1"),
    ("doc_weighting=bogus", "setting 'doc_weighting' = 'bogus' is not allowed: must be one of 'mean', 'idf' or 'sif'"),
    ("epochs=2.5", "setting 'epochs' = '2.5' is not allowed: must be a whole number"),
    ("symmetric=maybe", "setting 'symmetric' = 'maybe' is not allowed: must be true or false"),
    ("window=5", "unknown setting 'window' (did you mean 'window_size'?)"),
    ("epochs", "--set expects key=value, got 'epochs'"),
])
def test_run_rejects_a_bad_setting_before_anything_runs(setting, message, tmp_path):
    workspace = tmp_path / "ws"
    result = cvrank("run", "--workspace", str(workspace), "--set", setting)
    assert result.returncode == 2
    assert result.stderr.startswith(f"cvrank run: {message}"), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not workspace.exists(), "nothing may be written for a run that never started"


def test_serve_rejects_a_bad_port():
    result = cvrank("serve", "--port", "70000")
    assert result.returncode == 2
    assert result.stderr == "cvrank serve: setting 'port' = 70000 is not allowed: must be <= 65535\n"


CONSOLE_SCRIPT = textwrap.dedent("""
    import logging, os, subprocess, sys
    from orchestration.console import RunOutput
    with RunOutput(sys.argv[1], verbose=sys.argv[2] == "1") as out:
        out.progress.started(1, 2, "First")
        print("python print")
        os.write(2, b"fd 2 write\\n")
        subprocess.run(["sh", "-c", "echo child process"])
        logging.getLogger("absl").warning("absl warning")
        logging.getLogger("cvrank.progress.glove").info("epoch 1/2")
        out.progress.finished(1.25, "COMPLETE")
        out.progress.started(2, 2, "Second")
        out.progress.finished(0.0, "CACHED")
        out.console.write("summary\\n")
    print("after the run")
""")


@pytest.mark.parametrize("verbose", [False, True])
def test_run_output_sends_everything_but_node_lines_to_the_log(tmp_path, verbose):
    script = tmp_path / "script.py"
    script.write_text(CONSOLE_SCRIPT)
    log = tmp_path / "logs" / "run.log"
    result = subprocess.run([sys.executable, str(script), str(log), "1" if verbose else "0"],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": PROJECT_ROOT},
                            timeout=60)
    assert result.returncode == 0, result.stderr
    logged = log.read_text()
    for text in ("python print", "fd 2 write", "child process", "absl warning", "epoch 1/2"):
        assert text in logged, text
    if verbose:
        assert result.stdout == ("[1/2] First ... 1.2 s COMPLETE\n[2/2] Second ... 0.0 s CACHED\nsummary\n"
                                 "after the run\n")
        assert result.stderr == logged  # the log, streamed
    else:
        # Not a terminal: the progress message becomes an indented line under the node's line.
        assert result.stdout == ("[1/2] First ...\n    epoch 1/2\n[1/2] First ... 1.2 s COMPLETE\n"
                                 "[2/2] Second ... 0.0 s CACHED\nsummary\nafter the run\n")
        assert result.stderr == ""
