"""A client of Airflow 3's REST API for what cvrank needs: trigger a DAG run with a conf, follow its task
instances, read a failed task's log. Standard library only (it runs in the TFX env)."""

from __future__ import annotations

import dataclasses
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, List, Mapping, Optional

FINISHED_RUN_STATES = ("success", "failed")
# How long `follow` keeps polling through errors that pass (the API server restarting, a dropped
# connection, an HTTP 5xx) before it gives up.
TRANSIENT_ERROR_SECONDS = 120.0
# Task instance states after which a task will not change again in this DAG run.
FINISHED_TASK_STATES = ("success", "failed", "upstream_failed", "skipped", "removed")


class AirflowApiError(RuntimeError):
    """A request to Airflow's REST API failed; the message names the request and Airflow's answer.
    `transient` is true for failures that may pass (no connection, HTTP 5xx)."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


@dataclasses.dataclass(frozen=True)
class TaskState:
    """One task instance of a DAG run as the API reports it (times as ISO 8601 text)."""

    task_id: str
    state: Optional[str]
    try_number: int
    start_date: Optional[str]
    end_date: Optional[str]
    duration: Optional[float]


class AirflowClient:
    """Airflow's REST API at `base_url` (e.g. http://127.0.0.1:8080), authenticated with a bearer token
    from `token()` (fetched again once when the API answers 401: tokens expire)."""

    def __init__(self, base_url: str, token: Callable[[], str], timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self._token_source = token
        self._token: Optional[str] = None
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Any = None, query: Optional[Mapping[str, Any]] = None,
                 retry_auth: bool = True) -> Any:
        if self._token is None:
            try:
                self._token = self._token_source()
            except AirflowApiError:
                raise
            except (OSError, http.client.HTTPException, ValueError, KeyError) as err:
                raise AirflowApiError(f"cannot log in to Airflow at {self.base_url}: {err}", transient=True) from None
        url = self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self._token}", "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read().decode("utf-8")
        except urllib.error.HTTPError as err:
            if err.code == 401 and retry_auth:
                self._token = None
                return self._request(method, path, body, query, retry_auth=False)
            detail = err.read().decode("utf-8", "replace")
            try:
                detail = json.loads(detail).get("detail", detail)
            except (ValueError, AttributeError):
                pass
            raise AirflowApiError(f"{method} {path}: HTTP {err.code}: {detail}", transient=err.code >= 500) from None
        except urllib.error.URLError as err:
            raise AirflowApiError(f"{method} {url}: {err.reason}", transient=True) from None
        except (OSError, http.client.HTTPException) as err:  # a connection dropped mid-answer
            raise AirflowApiError(f"{method} {url}: {type(err).__name__}: {err}", transient=True) from None
        return json.loads(text) if text else None

    def trigger(self, dag_id: str, conf: Mapping[str, Any], dag_run_id: Optional[str] = None) -> str:
        """Triggers a run of `dag_id` with `conf` and returns its run id. The DAG is unpaused first: a
        paused DAG would queue the run and never start it."""
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False}, query={"update_mask": "is_paused"})
        body: Dict[str, Any] = {"logical_date": None, "conf": dict(conf)}
        if dag_run_id:
            body["dag_run_id"] = dag_run_id
        return self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"]

    def dag_tasks(self, dag_id: str) -> List[Dict[str, Any]]:
        """The DAG's tasks as the API lists them (`task_id`, `downstream_task_ids`, ...)."""
        return self._request("GET", f"/api/v2/dags/{dag_id}/tasks")["tasks"]

    def run_state(self, dag_id: str, dag_run_id: str) -> Dict[str, Any]:
        """The DAG run as the API reports it (`state`, `start_date`, `end_date`, `conf`, ...)."""
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_quote(dag_run_id)}")

    def task_states(self, dag_id: str, dag_run_id: str) -> List[TaskState]:
        """Every task instance of the run (unmapped tasks: one per task)."""
        answer = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_quote(dag_run_id)}/taskInstances",
                               query={"limit": 1000})
        return [TaskState(t["task_id"], t.get("state"), int(t.get("try_number") or 0), t.get("start_date"),
                          t.get("end_date"), t.get("duration"))
                for t in answer["task_instances"]]

    def task_log(self, dag_id: str, dag_run_id: str, task_id: str, try_number: int) -> str:
        """The text of one try of a task's log."""
        answer = self._request(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{_quote(dag_run_id)}/taskInstances/{task_id}/logs/{try_number}",
            query={"full_content": "true"})
        content = answer.get("content", "") if isinstance(answer, dict) else answer
        if isinstance(content, str):
            return content
        lines = []
        for entry in content or []:  # structured log records (Airflow 3): keep the message and any traceback
            if isinstance(entry, dict):
                text = str(entry.get("event", ""))
                for exc in entry.get("error_detail") or []:
                    frames = "".join(f"\n  File {f.get('filename')}, line {f.get('lineno')}, in {f.get('name')}"
                                     for f in exc.get("frames", []))
                    text += f"\nTraceback:{frames}\n{exc.get('exc_type')}: {exc.get('exc_value')}"
                lines.append(text)
            else:
                lines.append(str(entry))
        return "\n".join(lines)

    def follow(self, dag_id: str, dag_run_id: str, on_change: Callable[[TaskState], None],
               poll_seconds: float = 1.0, timeout: Optional[float] = None) -> str:
        """Polls the run until it ends, calling `on_change` for each task whose state changed since the last
        poll; returns the run's final state ('success' or 'failed'). Polls through transient API errors
        for up to TRANSIENT_ERROR_SECONDS at a time (the run goes on meanwhile), then raises them. Raises
        TimeoutError after `timeout`."""
        seen: Dict[str, Optional[str]] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        failing_since = None
        while True:
            try:
                run = self.run_state(dag_id, dag_run_id)
                tasks = self.task_states(dag_id, dag_run_id)
            except AirflowApiError as err:
                failing_since = failing_since or time.monotonic()
                if not err.transient or time.monotonic() - failing_since > TRANSIENT_ERROR_SECONDS:
                    raise
                time.sleep(poll_seconds)
                continue
            failing_since = None
            for task in tasks:
                if seen.get(task.task_id, "?") != task.state:
                    seen[task.task_id] = task.state
                    on_change(task)
            if run["state"] in FINISHED_RUN_STATES:
                return run["state"]
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"DAG run {dag_run_id} of {dag_id} still {run['state']} after {timeout:.0f} s")
            time.sleep(poll_seconds)


def _quote(run_id: str) -> str:
    return urllib.parse.quote(run_id, safe="")
