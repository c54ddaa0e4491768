"""TF Serving's REST API (`api_rest.md`) as an aiohttp application.

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]              model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata     model metadata (signature defs)
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:(predict|classify|regress)
    GET  /monitoring/prometheus/metrics                            Prometheus metrics

URLs are matched with TF Serving's own regular expressions; anything else under /v1/ is a 400
"Malformed request", anything outside it a 404.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Optional

from aiohttp import web

from serving import rest_json
from serving.errors import ServingError, invalid_argument
from serving.metrics import ServingMetrics
from serving.service import PredictionService

log = logging.getLogger("cvrank.serving")

# http_rest_api_util.cc
_PREDICT_RE = re.compile(r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)")
_STATUS_RE = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:\/(metadata))?")
_V1_RE = re.compile(r"(?i)/v1/.*")
_NOT_FOUND_HTML = ("<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n"
                   "</BODY></HTML>\n")
_JSON = "application/json"
_INT64_MAX = 2**63 - 1


def _version(text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    value = int(text)
    if value > _INT64_MAX:
        raise invalid_argument(f"Failed to convert version: {text} to numeric.")
    return value


def _json_response(body: str, status: int = 200) -> web.Response:
    return web.Response(body=body.encode("utf-8"), status=status, content_type=_JSON)


def _error_response(err: ServingError) -> web.Response:
    return _json_response(rest_json.format_error(err.message), err.http_status)


class RestApi:
    """Request handlers over a PredictionService."""

    def __init__(self, service: PredictionService, metrics: ServingMetrics, max_body_bytes: int):
        self.service = service
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def handle(self, request: web.Request) -> web.StreamResponse:
        start = time.perf_counter()
        path = request.path
        method, code = "other", "OK"
        try:
            if path == "/monitoring/prometheus/metrics" and request.method == "GET":
                method = "metrics"
                return web.Response(body=self.metrics.exposition(), content_type="text/plain", charset="utf-8")
            if not _V1_RE.fullmatch(path):
                method = "not_found"
                return web.Response(text=_NOT_FOUND_HTML, status=404, content_type="text/html")
            malformed = invalid_argument(f"Malformed request: {request.method} {path}")
            if request.method == "POST":
                match = _PREDICT_RE.fullmatch(path)
                if not match or match.group(4) not in ("predict", "classify", "regress"):
                    raise malformed
                method = match.group(4)
                return await self._predict(request, match)
            if request.method == "GET":
                match = _STATUS_RE.fullmatch(path)
                if not match:
                    raise malformed
                name, version, label, sub = match.groups()
                if not name:
                    raise invalid_argument("Missing model name in request.")
                if sub == "metadata":
                    method = "metadata"
                    servable = self.service.manager.servable(name, _version(version), label)
                    return _json_response(rest_json.format_metadata(name, servable.version, servable.signature_defs))
                method = "status"
                return _json_response(rest_json.format_status(
                    self.service.manager.model_status(name, _version(version))))
            raise malformed
        except ServingError as err:
            code = err.code
            return _error_response(err)
        except web.HTTPRequestEntityTooLarge:
            code = "RESOURCE_EXHAUSTED"
            return _json_response(rest_json.format_error(
                f"Request body exceeds the limit of {self.max_body_bytes} bytes"), 413)
        except Exception as err:  # never crash on a request: report it as an internal error
            log.exception("%s %s failed", request.method, path)
            code = "INTERNAL"
            return _json_response(rest_json.format_error(f"{type(err).__name__}: {err}"), 500)
        finally:
            self.metrics.observe("rest", method, code, time.perf_counter() - start)

    async def _predict(self, request: web.Request, match: re.Match) -> web.Response:
        name, version, label, verb = match.groups()
        version = _version(version)
        doc = rest_json.parse_body(await request.read())
        signature_name = rest_json.signature_name(doc)
        parsed = {}

        def inputs(signature):
            tensors, parsed["row"] = rest_json.parse_inputs(doc, signature.inputs)
            return tensors

        _servable, _signature, outputs = await self.service.predict(name, version, label, signature_name, inputs,
                                                                    verb=verb)
        return _json_response(rest_json.format_predict_response(outputs, parsed["row"]))


def create_app(service: PredictionService, metrics: ServingMetrics, max_body_bytes: int) -> web.Application:
    """The aiohttp application serving TF Serving's REST API and the metrics endpoint."""
    api = RestApi(service, metrics, max_body_bytes)
    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_route("*", "/{tail:.*}", api.handle)
    return app

