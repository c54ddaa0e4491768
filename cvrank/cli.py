"""The `cvrank` command line. Runs inside the runtime (bin/cvrank enters it first)."""

from __future__ import annotations

import argparse
import os
import sys


def _cmd_exec(args: argparse.Namespace) -> int:
    """Replaces this process with the given command; its exit code and output pass through."""
    cmd = list(args.command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        print("cvrank exec: no command given (usage: cvrank exec -- CMD ARGS...)", file=sys.stderr)
        return 2
    try:
        os.execvp(cmd[0], cmd)
    except FileNotFoundError:
        print(f"cvrank exec: command not found: {cmd[0]}", file=sys.stderr)
        return 127


def _overrides_from_args(args: argparse.Namespace) -> dict:
    """The settings `--set`, `--data` and `--workspace` give, as text; ConfigError on a malformed --set."""
    from config import parse_set_args

    overrides = parse_set_args(args.set)
    if args.data:
        overrides["data_dir"] = args.data
    if args.workspace:
        overrides["workspace"] = args.workspace
    return overrides


def _config_from_args(args: argparse.Namespace):
    """The PipelineConfig of `--set`, `--data` and `--workspace`; raises ConfigError when invalid."""
    from config import PipelineConfig

    return PipelineConfig.create(_overrides_from_args(args))


def _recorded_config(args: argparse.Namespace):
    """The PipelineConfig that says where the workspace's runs are recorded (workspace, metadata_uri,
    pipeline_name): `--workspace` and `--set`, and, when the workspace's Airflow cluster (`cvrank airflow
    up --cluster`) is running and `--set` names no metadata_uri, the cluster's ML Metadata."""
    from config import parse_set_args
    from orchestration import airflow_services

    config = _config_from_args(args)
    if "metadata_uri" not in parse_set_args(args.set) and airflow_services.running_services(config.workspace):
        uri = airflow_services.deployment_settings(config.workspace).get("metadata_uri")
        if uri:
            config = config.with_overrides({"metadata_uri": uri})
    return config


def _add_reading_args(p: argparse.ArgumentParser) -> None:
    """--workspace and --set of the commands that read what runs recorded."""
    p.add_argument("--workspace", metavar="DIR", help="the workspace (default ./workspace)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="where the runs are recorded when not the defaults: metadata_uri, pipeline_name")
    p.set_defaults(data=None)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="DIR", help="dataset directory (cvs/, jobs/, judgments/, corpus/)")
    p.add_argument("--workspace", metavar="DIR", help="where artifacts, metadata, logs and served models go (default ./workspace)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a setting (repeatable; `cvrank config` lists them)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="stream the run's log (TensorFlow, Beam, TFX) to the terminal as well")
    p.add_argument("--wait", action="store_true",
                   help="when another run holds the workspace, wait for it instead of exiting (exit code 3)")


def _error_text(err: BaseException) -> str:
    """A failed node's error for a person: the message of cvrank's own input and validation errors in
    full; for other errors (whose message may hold a whole Beam worker traceback) the last lines, which
    name the actual error."""
    from config import ConfigError
    from dataset.files import InputFileError

    text = str(err)
    if isinstance(err, (ConfigError, InputFileError)) or type(err).__name__ == "DataValidationError":
        return text
    lines = [line for line in text.splitlines() if line.strip()]
    tail = "\n".join(lines[-3:]) if len(lines) > 3 else text
    return f"{type(err).__name__}: {tail}"


def _run_quietly(args: argparse.Namespace, config, build, report, lock_name: str, run_id: str = "") -> int:
    """Runs the pipeline `build()` returns with one console line per node; everything else goes to the
    run's log file. `report(store, pipeline_name, run_id, node_order)` gives the text printed
    after the run. The run holds the workspace lock of `lock_name` throughout; before the first node it
    recovers what killed runs left behind. Exit code 1 when a node fails, 3 when the workspace is busy."""
    from orchestration.console import RunOutput
    from orchestration.runs import new_run_id, run_log_path
    from orchestration.workspace_lock import WorkspaceBusy, WorkspaceLock

    run_id = run_id or new_run_id()
    lock = WorkspaceLock(config.workspace, lock_name, run_id, wait=args.wait,
                         on_wait=lambda busy: print(f"cvrank: waiting: {busy.description}", flush=True))
    try:
        lock.acquire()
    except WorkspaceBusy as err:
        print(f"cvrank: {err}", file=sys.stderr)
        print("cvrank: nothing was run.", file=sys.stderr)
        return 3
    try:
        return _run_locked(args, config, build, report, run_id, RunOutput, run_log_path(config.logs_dir, run_id))
    finally:
        lock.release()


def _run_locked(args, config, build, report, run_id, RunOutput, log_path) -> int:
    print(f"cvrank: run {run_id} of {config.pipeline_name} on {config.data_dir}", flush=True)
    print(f"cvrank: log {log_path}", flush=True)
    failed = None
    with RunOutput(log_path, verbose=args.verbose) as out:
        import logging

        from metadata import mlmd
        from orchestration import runner

        pipeline = order = store = None

        class Listener(runner.NodeListener):
            def node_started(self, node_id, index, total):
                out.progress.started(index, total, node_id)

            def node_finished(self, node_id, seconds, error):
                nonlocal store
                if error is not None:
                    state = "FAILED"
                else:  # the first node creates the store; it is opened once
                    store = store or mlmd.open_store(connection)
                    state = mlmd.run_node_states(store, pipeline_name, run_id).get(node_id, "NOT RECORDED")
                out.progress.finished(seconds, state)

        try:
            pipeline = build()
            connection = pipeline.metadata_connection_config
            pipeline_name = pipeline.pipeline_info.pipeline_name
            pipeline_ir = runner.compile_pipeline(pipeline)
            if mlmd.has_store(connection):  # else no earlier run left anything behind
                from orchestration.recovery import recover_workspace

                store = mlmd.open_store(connection)
                for note in recover_workspace(store, pipeline_name, runner.pipeline_root(pipeline_ir),
                                              runner.push_base_paths(pipeline_ir), f"run {run_id}"):
                    out.console.write(f"cvrank: recovered: {note}\n")
            order = runner.node_ids(pipeline_ir)
            runner.run_pipeline(pipeline, run_id=run_id, listener=Listener(), config=config)
        except Exception as err:  # the failing node is recorded in ML Metadata; report it and stop
            failed = err
            logging.exception("cvrank: run %s failed", run_id)
        if order is not None:
            try:
                out.console.write(report(store or mlmd.open_store(connection), pipeline_name, run_id, order) + "\n")
            except Exception:  # a report is not worth hiding the run's own error
                logging.exception("cvrank: no summary for run %s", run_id)
    if failed is not None:
        print(f"\ncvrank: run {run_id} FAILED: {_error_text(failed)}", file=sys.stderr)
        print(f"cvrank: the full log is {log_path}", file=sys.stderr)
        print("cvrank: earlier runs, their artifacts and the pushed model are unchanged.", file=sys.stderr)
        return 1
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    """Runs the cvrank pipeline and prints the run summary. Exit code 1 when a node fails."""
    config = _config_from_args(args)
    if args.runner == "airflow":
        return _run_on_airflow(args, config)

    def report(store, pipeline_name, run_id, order):
        from orchestration.summary import summarize

        return summarize(store, pipeline_name, run_id, order, config.serving_dir).format()

    return _run_quietly(args, config, lambda: _cvrank_pipeline(config), report, config.pipeline_name)


def _cmd_sweep(args: argparse.Namespace) -> int:
    """Runs the pipeline once per combination of the swept values, then prints the sweep's runs best MAP
    first and the executor time the cache saved. Exit code 1 when a run failed (the others still run)."""
    from config import PipelineConfig
    from orchestration.runs import new_run_id
    from orchestration.sweep import parse_grid, sweep_configs

    base = _overrides_from_args(args)
    runs = sweep_configs(base, parse_grid(args.grid))  # every combination is checked before any runs
    common = PipelineConfig.create(base)
    print(f"cvrank sweep: {len(runs)} runs of {common.pipeline_name} in {common.workspace}", flush=True)
    run_ids, failures = [], 0
    for number, (combination, config) in enumerate(runs, start=1):
        settings = [f"{k}={v}" for k, v in combination.items()]
        print(f"\ncvrank sweep: run {number}/{len(runs)}: {' '.join(settings)}", flush=True)
        if args.runner == "airflow":
            code = _run_on_airflow(argparse.Namespace(**{**vars(args), "set": list(args.set) + settings}), config,
                                   on_trigger=run_ids.append)
        else:
            run_id = new_run_id()
            code = _run_quietly(args, config, lambda c=config: _cvrank_pipeline(c), _one_line_report,
                                config.pipeline_name, run_id)
            if code != 3:  # 3: the workspace was busy and the run did not start
                run_ids.append(run_id)
        if code in (2, 3):  # the orchestrator is not there, or the workspace is busy: so for every run
            print(f"cvrank sweep: stopped after {number - 1} of {len(runs)} runs", file=sys.stderr)
            if run_ids:
                _print_sweep_table(_recorded_config(args), run_ids)
            return code
        failures += code != 0
    _print_sweep_table(_recorded_config(args), run_ids)
    return 1 if failures else 0


def _cvrank_pipeline(config):
    from pipeline.pipeline import create_pipeline

    return create_pipeline(config)


def _one_line_report(store, pipeline_name, run_id, order) -> str:
    from analysis.history import run_rows, yes_no

    rows = run_rows(store, pipeline_name, [run_id])
    if not rows:
        return f"run {run_id}: nothing recorded"
    row = rows[0]
    metric = "-" if row.map is None else f"{row.map:.4f}"
    ndcg = "-" if row.ndcg10 is None else f"{row.ndcg10:.4f}"
    return (f"run {run_id}: {len(row.executed)} nodes executed, {len(row.cached)} cached; MAP {metric}, "
            f"NDCG@10 {ndcg}, blessed {yes_no(row.blessed)}, "
            f"pushed {row.pushed_version or '-'}")


def _print_sweep_table(config, run_ids) -> None:
    from analysis.history import by_map, cache_savings, format_table, run_rows
    from metadata import mlmd

    store = mlmd.open_store(config.metadata_connection(), read_only=True)
    rows = by_map(run_rows(store, config.pipeline_name, run_ids))
    print(f"\nsweep: {len(rows)} runs, best MAP first")
    print(format_table(rows))
    saved = cache_savings(store, config.pipeline_name, run_ids)
    if saved.cached_executions:
        top = ", ".join(f"{node} {seconds:.1f} s" for node, seconds in
                        sorted(saved.by_node.items(), key=lambda item: -item[1])[:5])
        print(f"cache: {saved.cached_executions} node executions reused; executor time saved {saved.seconds:.1f} s "
              f"(the recorded durations of the executions they reused; most: {top})")
    else:
        print("cache: no node execution was reused")


def _cmd_runs(args: argparse.Namespace) -> int:
    """Prints one row per pipeline run of the workspace, oldest first (a table, or CSV)."""
    from analysis.history import format_table, run_rows, write_csv
    from metadata import mlmd

    config = _recorded_config(args)
    connection = config.metadata_connection()
    rows = run_rows(mlmd.open_store(connection, read_only=True), config.pipeline_name) \
        if mlmd.has_store(connection) else []
    if args.last is not None:
        rows = rows[-args.last:] if args.last > 0 else []
    if args.csv:
        write_csv(rows, sys.stdout)
    elif not rows:
        print(f"no runs of {config.pipeline_name} in {config.workspace}")
    else:
        print(format_table(rows))
    return 0


def _cmd_lineage(args: argparse.Namespace) -> int:
    from analysis.lineage import cli_lineage

    return cli_lineage(args, _recorded_config(args))


def _cmd_report(args: argparse.Namespace) -> int:
    from analysis.report import cli_report

    return cli_report(args, _recorded_config(args))


def _cmd_notebook(args: argparse.Namespace) -> int:
    from analysis.notebook_server import cli_notebook

    return cli_notebook(args, _recorded_config(args))


def _run_on_airflow(args: argparse.Namespace, config, on_trigger=None) -> int:
    """`run --runner airflow`: a DAG run of the Airflow deployment of the workspace, with the settings the
    user gave as its conf."""
    from orchestration import airflow_services
    from orchestration.airflow_client import AirflowApiError, AirflowClient
    from orchestration.airflow_run import conf_of, run_on_airflow

    overrides = _overrides_from_args(args)
    overrides.pop("workspace", None)  # it names the deployment, whose DAG has it as its default
    conf = conf_of(overrides)
    try:  # a supervisor still starting is waited for
        airflow_services.ensure_up(config.workspace)
    except airflow_services.AirflowNotRunning as err:
        print(f"cvrank run: {err}", file=sys.stderr)
        return 2
    deployment = airflow_services.deployment_config(config.workspace).with_overrides(conf)
    client = AirflowClient(airflow_services.api_url(config.workspace),
                           lambda: airflow_services.access_token(config.workspace))
    try:
        return run_on_airflow(deployment, conf, client, airflow_services.api_url(config.workspace),
                              on_trigger=on_trigger)
    except AirflowApiError as err:
        print(f"cvrank run: {err}", file=sys.stderr)
        return 1


def _cmd_smoke(args: argparse.Namespace) -> int:
    """Runs the smoke pipeline (CsvExampleGen, StatisticsGen, SchemaGen) on the dataset's jobs."""
    config = _config_from_args(args)

    def build():
        from pipeline.smoke import create_smoke_pipeline, default_smoke_csv_dir

        return create_smoke_pipeline(default_smoke_csv_dir(config), config)

    def report(store, pipeline_name, run_id, order):
        from metadata import mlmd

        states = mlmd.run_node_states(store, pipeline_name, run_id)
        return "\n".join(f"  {node:<16} {states.get(node, 'NOT RUN')}" for node in order)

    return _run_quietly(args, config, build, report, f"{config.pipeline_name}-smoke")


def _cmd_config(args: argparse.Namespace) -> int:
    """Prints every setting: its value (with `--set` applied), default, allowed values and description."""
    import json

    from config import PipelineConfig, ServingConfig

    config = _config_from_args(args)
    if args.json:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    for title, model, values in (("pipeline settings (cvrank run --set KEY=VALUE; DAG run conf)",
                                  PipelineConfig, config.to_dict()),
                                 ("serving settings (cvrank serve --KEY VALUE)", ServingConfig,
                                  ServingConfig().to_dict())):
        print(title)
        for name, field in model.model_fields.items():
            value = values[name]
            default = field.get_default(call_default_factory=True)
            changed = "" if value == default else f"  (default {default!r})"
            print(f"  {name} = {value!r}{changed}")
            print(f"      {_allowed_values(field)}. {field.description}")
        print()
    return 0


def _allowed_values(field) -> str:
    """`int >= 1`, `one of 'mean', 'idf', 'sif'`, ... from a pydantic field."""
    import typing

    annotation = field.annotation
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is list:
        return "list of " + typing.get_args(annotation)[0].__name__
    name = getattr(annotation, "__name__", str(annotation))
    bounds = []
    for meta in field.metadata:
        for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                bounds.append(f"{op} {getattr(meta, attr)}")
    return f"{name} {', '.join(bounds)}" if bounds else name


def _cmd_serve(args: argparse.Namespace) -> int:
    """Serves the pushed models over TF Serving's REST and gRPC APIs until interrupted."""
    from config import PipelineConfig, ServingConfig

    overrides = {name: getattr(args, name) for name in ServingConfig.model_fields
                 if getattr(args, name) is not None}
    if args.model_base_path:
        overrides["model_base_path"] = os.path.abspath(args.model_base_path)
    elif args.workspace:
        overrides["model_base_path"] = PipelineConfig.create({"workspace": args.workspace}).serving_dir
    config = ServingConfig.create(overrides)
    from serving.server import main as serve_main

    return serve_main(config)


def _cmd_query(args: argparse.Namespace) -> int:
    """Ranks the CVs for a job description through a TF Serving REST endpoint and prints them."""
    import json

    from serving.client import QueryError, format_matches, rank_cvs

    text = args.text if args.text != "-" else sys.stdin.read()
    try:
        matches = rank_cvs(text, url=args.url, model=args.model_name, top_k=args.top_k)
    except QueryError as err:
        print(f"cvrank query: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([m.__dict__ for m in matches], indent=2, ensure_ascii=False))
    else:
        print(format_matches(matches))
        if len(matches) < args.top_k:
            print(f"({len(matches)} CVs returned: the model returns at most its top_k setting)")
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    """Adds CVs to the index of the newest pushed model and pushes the result as a new version."""
    from config import PipelineConfig
    from serving.cv_files import CvFileError
    from serving.index import IndexUpdateError, update_index

    config = PipelineConfig.create({"workspace": args.workspace} if args.workspace else {})
    base = os.path.abspath(args.model_base_path) if args.model_base_path else config.serving_dir
    from orchestration.workspace_lock import WorkspaceBusy
    from serving.base_path import BasePathError

    try:
        with _writer_lock(config, "cvrank index"):
            result = update_index(args.cvs, base, config.metadata_connection(), config.pipeline_name)
    except BasePathError as err:  # recorded, the rename failed: the next run publishes it
        print(f"cvrank index: {err}; the update is recorded and the next `cvrank run` publishes it",
              file=sys.stderr)
        return 1
    except (CvFileError, IndexUpdateError, WorkspaceBusy, OSError) as err:
        print(f"cvrank index: {err}", file=sys.stderr)
        print("cvrank index: nothing was pushed; the served model is unchanged.", file=sys.stderr)
        return 3 if isinstance(err, WorkspaceBusy) else 2
    print(f"cvrank index: pushed version {result.version} ({result.path}): version {result.source_version} "
          f"plus {result.added} new CVs, {result.replaced} replaced; {result.index_size} CVs in the index "
          f"(ML Metadata execution {result.execution_id})")
    return 0


def _serving_target(args: argparse.Namespace, write: bool = False):
    """(config, model base path, ML Metadata store) of a `cvrank serving` command. Without `write` the
    store is opened read-only, and a workspace without one reads as having no records."""
    from config import PipelineConfig
    from metadata import mlmd

    config = PipelineConfig.create({"workspace": args.workspace} if args.workspace else {})
    base = os.path.abspath(args.model_base_path) if args.model_base_path else config.serving_dir
    connection = config.metadata_connection()
    if write:
        if not config.metadata_uri:
            os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
        return config, base, mlmd.open_store(connection)
    if not mlmd.has_store(connection):
        return config, base, mlmd.empty_store()
    return config, base, mlmd.open_store(connection, read_only=True)


def _writer_lock(config, what: str, wait: bool = False):
    """The workspace lock for a command that writes (`what` names it to other writers). Raises
    WorkspaceBusy when a run or another command holds it, at once unless `wait`."""
    from orchestration.workspace_lock import WorkspaceLock

    return WorkspaceLock(config.workspace, config.pipeline_name, what, wait=wait,
                         hint="try again when it has finished, or pass --wait")


def _cmd_gc(args: argparse.Namespace) -> int:
    """Removes artifacts that neither a pushed model (served or set aside) nor the last N runs use."""
    from metadata import mlmd
    from orchestration.gc import collect_garbage
    from orchestration.workspace_lock import WorkspaceBusy
    from serving import pushes

    config = _config_from_args(args)
    connection = config.metadata_connection()
    if not mlmd.has_store(connection):
        print(f"cvrank gc: no ML Metadata store at {mlmd.describe(connection)}; nothing to collect")
        return 0
    try:
        with _writer_lock(config, "cvrank gc", wait=args.wait):
            store = mlmd.open_store(connection)
            if not args.dry_run:  # what killed runs left is garbage too, once recovered
                from orchestration.recovery import recover_workspace

                for note in recover_workspace(store, config.pipeline_name, config.pipeline_root,
                                              [config.serving_dir], "cvrank gc"):
                    print(f"cvrank gc: recovered: {note}")
            # A served or set-aside version keeps its push record and, through lineage, its model and data.
            protected = [row.record.artifact.uri for row in pushes.list_versions(store, config.serving_dir)
                         if row.record is not None and row.state != "deleted"]
            report = collect_garbage(store, config.pipeline_name, config.pipeline_root, args.keep_runs,
                                     protected, dry_run=args.dry_run)
    except WorkspaceBusy as err:
        print(f"cvrank gc: {err}", file=sys.stderr)
        return 3
    except ValueError as err:
        print(f"cvrank gc: {err}", file=sys.stderr)
        return 2
    print(report.format())
    return 0


def _cmd_serving_versions(args: argparse.Namespace) -> int:
    """Lists every version of the model base path with the run, model, MAP and blessing that made it."""
    from serving import pushes

    config, base, store = _serving_target(args)
    rows = pushes.list_versions(store, base)
    if not rows:
        print(f"cvrank serving: no versions under {base}")
        return 0
    print(f"model base path {base}")
    print(pushes.format_versions(rows))
    for rollback in pushes.rollback_history(store, config.pipeline_name):
        retired = f", set aside {rollback['retired']}" if rollback["retired"] else ""
        print(f"rollback: version {rollback['served_after']} served (was {rollback['served_before']}){retired}")
    return 0


def _cmd_serving_verify(args: argparse.Namespace) -> int:
    """Checks every present version against its push record and loads the served one. Exit code 1
    when the served version is broken."""
    from serving import pushes

    _, base, store = _serving_target(args)
    checks = pushes.verify(store, base)
    if not checks:
        print(f"cvrank serving verify: no versions under {base}")
        return 1
    for k, check in enumerate(checks):
        role = " (served)" if k == 0 else ""
        status = f"OK: {check.checked}" if check.ok else f"BROKEN: {'; '.join(check.problems)}"
        print(f"version {check.version}{role}: {status}")
    served = checks[0]
    if served.ok and not args.no_load:
        from serving.versions import Servable

        try:
            servable = Servable("check", served.version, served.path)
        except Exception as err:  # any load failure is the finding itself
            served.problems.append(f"does not load: {type(err).__name__}: {err}")
            print(f"version {served.version} (served): BROKEN: does not load: {err}")
        else:
            print(f"version {served.version} (served): loads; signatures {', '.join(sorted(servable.signatures))}")
    if not served.ok:
        print(pushes.fix_for(checks))
        return 1
    return 0


def _cmd_serving_rollback(args: argparse.Namespace) -> int:
    """Makes VERSION the served version (newer ones are set aside); recorded in ML Metadata."""
    from serving import pushes

    from orchestration.workspace_lock import WorkspaceBusy

    config, base, store = _serving_target(args, write=True)
    try:
        with _writer_lock(config, f"cvrank serving rollback {args.version}"):
            result = pushes.rollback(store, base, config.pipeline_name, args.version)
    except (pushes.RollbackError, WorkspaceBusy) as err:
        print(f"cvrank serving rollback: {err}; nothing changed", file=sys.stderr)
        return 3 if isinstance(err, WorkspaceBusy) else 2
    if result.served_before == result.served_after:
        print(f"cvrank serving rollback: version {result.served_after} is already the served version")
    else:
        print(f"cvrank serving rollback: version {result.served_after} is served (was "
              f"{result.served_before if result.served_before is not None else 'none'})")
    if result.retired:
        print(f"  set aside: {', '.join(map(str, result.retired))} (restore with "
              f"`bin/cvrank serving rollback {result.retired[0]}`)")
    if result.restored:
        print(f"  restored: {', '.join(map(str, result.restored))}")
    print(f"  recorded in ML Metadata as execution {result.execution_id} ({pushes.ROLLBACK_EXECUTION_TYPE})")
    return 0


def _airflow_workspace(args: argparse.Namespace) -> str:
    from config import PipelineConfig

    return PipelineConfig.create({"workspace": args.workspace} if args.workspace else {}).workspace


def _cmd_airflow_up(args: argparse.Namespace) -> int:
    """Waits for the Airflow that bin/cvrank launched on the host (`--launch-id`), or reports the one already
    running, then prints the UI's URL and how to log in. With `--foreground`, runs the supervisor in this
    process instead (everything stops with it: a container's entry point, a terminal kept open)."""
    import time

    from orchestration import airflow_env
    from orchestration import airflow_services as services

    workspace = _airflow_workspace(args)
    if args.foreground:
        return services.Supervisor(workspace, cluster=args.cluster, port=args.port).run()
    started = time.monotonic()
    if args.launch_id is None:
        if not services.supervisor_alive(workspace):
            print(f"cvrank airflow up: Airflow is not running for workspace {workspace}. Start it with "
                  f"`bin/cvrank airflow up` on the host: inside the runtime nothing outlives the command "
                  f"(or run it in the foreground: `cvrank airflow up --foreground`).", file=sys.stderr)
            return 2
        print(f"cvrank airflow: already running for workspace {workspace}; nothing started.", flush=True)
    else:
        print(f"cvrank airflow: starting for workspace {workspace} "
              f"({'cluster: PostgreSQL, Redis, CeleryExecutor' if args.cluster else 'local: LocalExecutor, SQLite'})",
              flush=True)
    try:
        doc = services.wait_until_started(workspace, args.launch_id, timeout=args.timeout,
                                          on_phase=lambda phase: print(f"cvrank airflow: {phase} ...", flush=True))
    except KeyboardInterrupt:
        print("\ncvrank airflow up: stopped waiting; Airflow goes on starting in the background "
              "(`bin/cvrank airflow status`, `bin/cvrank airflow down`)", file=sys.stderr)
        return 130
    except services.StartFailed as err:
        log = os.path.join(services.log_dir(workspace), services.SUPERVISOR_LOG)
        print(f"cvrank airflow up: Airflow did not start: {err}", file=sys.stderr)
        print(f"cvrank airflow up: the supervisor's log {log} ends:\n{services.log_tail(log)}", file=sys.stderr)
        return 1
    user, password = services.credentials(workspace)
    url = doc["api_url"]
    if args.launch_id is not None:
        print(f"cvrank airflow: up in {time.monotonic() - started:.0f} s")
    elif (args.cluster != (doc["mode"] == "cluster")) or args.port not in (doc["api_port"], 0, airflow_env.DEFAULT_API_PORT):
        print(f"cvrank airflow: note: it runs in {doc['mode']} mode on port {doc['api_port']}; "
              f"`bin/cvrank airflow down` first to start it otherwise", flush=True)
    print(f"  UI:       {url}  (log in as {user}, password {password})")
    print(f"  REST API: {url}/api/v2  (a token: POST {url}/auth/token with "
          f"{{\"username\": \"{user}\", \"password\": ...}})")
    print("  DAG:      cvrank (trigger it in the UI with parameters, or `bin/cvrank run --runner airflow --set ...`)")
    if doc.get("metadata_uri"):
        print(f"  ML Metadata: {doc['metadata_uri']}")
    print(f"  logs:     {doc['log_dir']}/")
    where = f" --workspace {workspace}" if args.workspace else ""
    print(f"  status:   bin/cvrank airflow status{where}    stop: bin/cvrank airflow down{where}")
    for warning in doc.get("warnings", []):
        print(f"  warning: {warning}")
    return 0


def _cmd_airflow_down(args: argparse.Namespace) -> int:
    """Asks the workspace's supervisor to stop everything it started and waits until it has. Exit code 4 when
    it has not stopped within --timeout (bin/cvrank then signals its namespace from the host)."""
    import signal
    import time

    from orchestration import airflow_services as services

    workspace = _airflow_workspace(args)
    doc = services.running_services(workspace)
    if not services.request_stop(workspace):
        print(f"cvrank airflow: not running for workspace {workspace}; nothing to stop.")
        return 0
    names = ", ".join((doc or {}).get("services", {})) or "the supervisor"
    print(f"cvrank airflow: stopping {names} ...", flush=True)
    started = time.monotonic()
    stopped = services.wait_until_stopped(workspace, timeout=args.timeout)
    if not stopped and services.signal_supervisor(workspace, signal.SIGTERM):
        stopped = services.wait_until_stopped(workspace, timeout=30)
    if not stopped:
        print(f"cvrank airflow down: the supervisor has not stopped within {args.timeout:.0f} s; see "
              f"{os.path.join(services.log_dir(workspace), services.SUPERVISOR_LOG)}", file=sys.stderr)
        return 4
    print(f"cvrank airflow: stopped in {time.monotonic() - started:.1f} s")
    return 0


def _cmd_airflow_status(args: argparse.Namespace) -> int:
    """What runs for the workspace: exit code 0 when Airflow is up, 3 when it is not running."""
    import json

    from orchestration import airflow_services as services

    workspace = _airflow_workspace(args)
    doc = services.running_services(workspace)
    if args.json:
        print(json.dumps(doc or {"state": "not running", "workspace": workspace}, indent=2))
    else:
        print("\n".join(services.status_lines(workspace)))
    return 0 if doc is not None and doc.get("state") == services.RUNNING else 3


def _cmd_airflow_compile(args: argparse.Namespace) -> int:
    """Writes the DAG spec (the compiled pipelines' nodes and edges, the params) for a deployment whose
    settings (`--set`, e.g. workspace and metadata_uri on shared storage) become the params' defaults."""
    import json

    from config import parse_set_args
    from orchestration.airflow_spec import write_spec

    import tempfile

    settings = parse_set_args(args.set)
    output = os.path.abspath(args.output or os.environ.get("CVRANK_AIRFLOW_SPEC") or "cvrank_dags.json")
    # TensorFlow's start-up notices go to file descriptor 2 whatever the log level: shown only on failure.
    with tempfile.TemporaryFile() as noise:
        saved = os.dup(2)
        os.dup2(noise.fileno(), 2)
        try:
            write_spec(output, settings)
        except BaseException:
            os.dup2(saved, 2)
            noise.seek(0)
            sys.stderr.write(noise.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    with open(output) as f:
        spec = json.load(f)
    for dag_id, dag in spec.get("dags", {}).items():
        print(f"  {dag_id}: {len(dag['nodes'])} tasks, {sum(len(n['upstream']) for n in dag['nodes'])} edges")
    print(f"cvrank airflow compile: wrote {output}; deploy it beside the DAG files (dags/) and set "
          f"CVRANK_AIRFLOW_SPEC={output} in every Airflow component's environment")
    return 0


def _add_serving_args(p: argparse.ArgumentParser) -> None:
    """One option per ServingConfig field (`--grpc-port` for grpc_port), described there."""
    from config import ServingConfig

    for name, field in ServingConfig.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "<workspace>/serving/cvrank" if name == "model_base_path" else default
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=field.annotation,
                       metavar=name.upper(), help=f"{field.description} (default {shown})")


def build_parser() -> argparse.ArgumentParser:
    from config import ServingConfig, default
    from orchestration.gc import DEFAULT_KEEP_RUNS

    parser = argparse.ArgumentParser(
        prog="cvrank",
        description="cvrank: a TFX pipeline that ranks CVs against job descriptions with GloVe embeddings.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("exec", help="run any command inside the runtime (python, pytest, airflow, ...)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    p.set_defaults(func=_cmd_exec)

    p = sub.add_parser("run", help="run the cvrank pipeline and print a summary")
    _add_config_args(p)
    p.add_argument("--runner", choices=["local", "airflow"], default="local",
                   help="orchestrator: local (TFX nodes in this process, in topological order) or airflow (a DAG "
                        "run of the workspace's Airflow, `cvrank airflow up`, with the settings as its conf)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("sweep", help="run the pipeline for every combination of settings (cached steps reused); "
                                     "print the runs best MAP first",
                       description="Runs the pipeline once per combination of the given values, each an ordinary "
                                   "run (traceable in ML Metadata, unchanged steps reused from cache), then prints "
                                   "the sweep's runs best MAP first and the executor time the cache saved.")
    p.add_argument("grid", nargs="+", metavar="KEY=V1,V2", help="a setting and its values (`cvrank config` lists them)")
    _add_config_args(p)
    p.add_argument("--runner", choices=["local", "airflow"], default="local", help="as for `cvrank run`")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("runs", help="the pipeline runs in ML Metadata: settings, nodes executed and cached, "
                                    "MAP, NDCG@10, blessing, pushed version, wall time")
    _add_reading_args(p)
    p.add_argument("--csv", action="store_true", help="print CSV (every field) instead of a table")
    p.add_argument("--last", type=int, metavar="N", help="only the last N runs")
    p.set_defaults(func=_cmd_runs)

    p = sub.add_parser("lineage", help="a pushed model traced back through ML Metadata to its data, code and "
                                       "parameters")
    p.add_argument("version", nargs="?", default="latest", help="pushed model version, or latest (default)")
    _add_reading_args(p)
    p.add_argument("--format", choices=["text", "dot", "svg", "png"], default="text",
                   help="text tree (default), Graphviz DOT on stdout, or an SVG/PNG picture")
    p.add_argument("--output", metavar="PATH", help="write it to this file (svg/png default: <workspace>/reports/lineage-vN.EXT)")
    p.set_defaults(func=_cmd_lineage)

    p = sub.add_parser("report", help="run the sliced-metrics notebook headless; write its HTML and plots")
    p.add_argument("run", nargs="?", default="latest", help="run id, pushed model version, or latest (default)")
    _add_reading_args(p)
    p.add_argument("--output", metavar="DIR", help="where to write it (default <workspace>/reports/<run id>)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("notebook", help="JupyterLab on 127.0.0.1 with notebooks/ open (prints the URL with its token)")
    _add_reading_args(p)
    p.add_argument("--port", type=int, help="port (default 8888; 0: any free port)")
    p.set_defaults(func=_cmd_notebook)

    p = sub.add_parser("config", help="list every setting with its value, default, allowed values and description")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], help="show the settings with this override")
    p.add_argument("--data", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--workspace", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the pipeline settings as JSON (a DAG run conf)")
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser("smoke", help="run the smoke pipeline (ExampleGen, StatisticsGen, SchemaGen)")
    _add_config_args(p)
    p.set_defaults(func=_cmd_smoke)

    p = sub.add_parser("serve", help="serve the pushed models over TF Serving's REST and gRPC APIs")
    _add_serving_args(p)
    p.add_argument("--workspace", metavar="DIR", help="serve the models pushed into this workspace")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("query", help="rank CVs for a job description through a TF Serving REST endpoint")
    p.add_argument("text", help="the job description ('-' reads it from standard input)")
    serving = ServingConfig()
    p.add_argument("--top-k", type=int, default=default("top_k"), help="how many CVs to print (default %(default)s)")
    p.add_argument("--url", default=f"http://{serving.host}:{serving.port}", help="the server (default %(default)s)")
    p.add_argument("--model-name", default=serving.model_name, help="model name (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_query)

    p = sub.add_parser("index", help="add CVs to the served model's index without retraining (pushes a new version)")
    p.add_argument("--cvs", metavar="FILE_OR_DIR", action="append", required=True,
                   help="a cv_id,text CSV file or a directory of them (repeatable)")
    p.add_argument("--workspace", metavar="DIR", help="the workspace (default ./workspace)")
    p.add_argument("--model-base-path", metavar="DIR", help="model base path (default <workspace>/serving/cvrank)")
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("gc", help="remove artifacts that no pushed model and none of the last runs use")
    p.add_argument("--workspace", metavar="DIR", help="the workspace (default ./workspace)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], help="a setting, e.g. pipeline_name")
    p.add_argument("--wait", action="store_true", help="when a run holds the workspace, wait for it")
    p.set_defaults(data=None)
    p.add_argument("--keep-runs", type=int, default=DEFAULT_KEEP_RUNS, metavar="N",
                   help="keep everything the last N runs used or produced (default %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed; change nothing")
    p.set_defaults(func=_cmd_gc)

    p = sub.add_parser("serving", help="the pushed model versions: list, verify, roll back")
    serving_sub = p.add_subparsers(dest="serving_command", metavar="SUBCOMMAND")
    serving_sub.required = True
    for name, func, text in (
            ("versions", _cmd_serving_versions, "list the versions with the run, model, MAP and blessing of each"),
            ("verify", _cmd_serving_verify, "check the versions' files against their push records; load the served one"),
            ("rollback", _cmd_serving_rollback, "serve an older (or set-aside) version; recorded, reversible")):
        q = serving_sub.add_parser(name, help=text, description=text)
        q.add_argument("--workspace", metavar="DIR", help="the workspace (default ./workspace)")
        q.add_argument("--model-base-path", metavar="DIR", help="model base path (default <workspace>/serving/cvrank)")
        q.set_defaults(func=func)
        if name == "verify":
            q.add_argument("--no-load", action="store_true", help="check files only; do not load the served version")
        if name == "rollback":
            q.add_argument("version", type=int, help="the version to serve")

    p = sub.add_parser("airflow", help="Airflow for the workspace: up (UI, scheduler, workers), down, status; "
                                       "compile the DAG spec")
    airflow_sub = p.add_subparsers(dest="airflow_command", metavar="SUBCOMMAND")
    airflow_sub.required = True
    q = airflow_sub.add_parser("up", help="start Airflow on 127.0.0.1 (started on the host by bin/cvrank; idempotent)")
    q.add_argument("--workspace", metavar="DIR", help="the workspace; AIRFLOW_HOME is DIR/airflow (default ./workspace)")
    q.add_argument("--cluster", action="store_true",
                   help="the local scale-out cluster: PostgreSQL, Redis, CeleryExecutor with two Celery workers")
    q.add_argument("--port", type=int, default=8080, help="the UI's and REST API's port (0: any free port; default 8080)")
    q.add_argument("--timeout", type=float, default=900, help="seconds to wait for it to be up (default %(default)s)")
    q.add_argument("--foreground", action="store_true", help="run the supervisor in this process until stopped")
    q.add_argument("--launch-id", help=argparse.SUPPRESS)
    q.set_defaults(func=_cmd_airflow_up)
    q = airflow_sub.add_parser("down", help="stop everything `airflow up` started")
    q.add_argument("--workspace", metavar="DIR", help="the workspace (default ./workspace)")
    q.add_argument("--timeout", type=float, default=120, help="seconds to wait for it to stop (default %(default)s)")
    q.set_defaults(func=_cmd_airflow_down)
    q = airflow_sub.add_parser("status", help="what runs: services, pids, ports, URL, login (exit code 3: not running)")
    q.add_argument("--workspace", metavar="DIR", help="the workspace (default ./workspace)")
    q.add_argument("--json", action="store_true", help="print services.json")
    q.set_defaults(func=_cmd_airflow_status)
    q = airflow_sub.add_parser("compile", help="write the DAG spec for a deployment (its settings are the DAG params' defaults)")
    q.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="a deployment setting, e.g. workspace=/shared/ws or metadata_uri=postgresql://... (repeatable)")
    q.add_argument("--output", metavar="PATH", help="where to write it (default $CVRANK_AIRFLOW_SPEC, else ./cvrank_dags.json)")
    q.set_defaults(func=_cmd_airflow_compile)

    sub.add_parser(
        "runtime",
        help="manage the runtime on the host: build, path, info, clean (handled by bin/cvrank)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ start-up notices (no GPU, CPU instructions) are noise in a CLI.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    if args.command == "runtime":
        print("cvrank runtime: run it through bin/cvrank on the host (bin/cvrank runtime info)", file=sys.stderr)
        return 2
    from config import ConfigError

    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"cvrank {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
