"""TF Serving's gRPC API with the protos of the `tensorflow-serving-api` package, so its stubs work
unchanged: `PredictionService.Predict`, `PredictionService.GetModelMetadata`, `ModelService.GetModelStatus`."""

from __future__ import annotations

import functools
import time
from typing import Optional

import grpc
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from serving.errors import ServingError, code_number, invalid_argument
from serving.metrics import ServingMetrics
from serving.service import DEFAULT_SIGNATURE, PredictionService

_STATES = {"START": 10, "LOADING": 20, "AVAILABLE": 30, "UNLOADING": 40, "END": 50}
_MAX_MESSAGE = 2**31 - 1  # TF Serving's gRPC message size limit


def _version_choice(model_spec) -> tuple:
    which = model_spec.WhichOneof("version_choice")
    version = model_spec.version.value if which == "version" else None
    label = model_spec.version_label if which == "version_label" else None
    return version, label


def _rpc(method: str):
    """Wraps a servicer method: records it in the metrics with its final status code, and turns a
    ServingError (or any other exception, as INTERNAL) into the gRPC status, so no request crashes."""
    def wrap(handler):
        @functools.wraps(handler)
        async def call(self, request, context):
            start, code = time.perf_counter(), "OK"
            try:
                return await handler(self, request, context)
            except ServingError as err:
                code = err.code
                await context.abort(err.grpc_status, err.message)
            except Exception as err:
                code = "INTERNAL"
                await context.abort(grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {err}")
            finally:
                self.metrics.observe("grpc", method, code, time.perf_counter() - start)
        return call
    return wrap


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, service: PredictionService, metrics: ServingMetrics):
        self.service, self.metrics = service, metrics

    @_rpc("predict")
    async def Predict(self, request, context):
        import tensorflow as tf

        version, label = _version_choice(request.model_spec)

        def inputs(signature):
            try:
                return {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            except (TypeError, ValueError) as err:
                raise invalid_argument(f"could not read an input TensorProto: {err}") from None

        name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        servable, signature, outputs = await self.service.predict(
            request.model_spec.name, version, label, name, inputs)
        wanted = list(request.output_filter) or list(outputs)
        unknown = [k for k in wanted if k not in outputs]
        if unknown:
            raise invalid_argument(f"output tensor alias not found in signature: {unknown[0]}")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature.name
        for key in wanted:
            response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
        return response

    @_rpc("metadata")
    async def GetModelMetadata(self, request, context):
        if not request.metadata_field:
            raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                raise invalid_argument(f"Metadata field {field} is not supported")
        version, label = _version_choice(request.model_spec)
        servable = self.service.manager.servable(request.model_spec.name, version, label)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(servable.signature_defs)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, service: PredictionService, metrics: ServingMetrics):
        self.service, self.metrics = service, metrics

    @_rpc("status")
    async def GetModelStatus(self, request, context):
        version: Optional[int] = (request.model_spec.version.value
                                  if request.model_spec.HasField("version") else None)
        entries = self.service.manager.model_status(request.model_spec.name, version)
        response = get_model_status_pb2.GetModelStatusResponse()
        for number, status in entries:
            entry = response.model_version_status.add()
            entry.version = number
            entry.state = _STATES[status.state]
            entry.status.error_code = code_number(status.error_code)
            entry.status.error_message = status.error_message
        return response


def create_server(service: PredictionService, metrics: ServingMetrics, address: str) -> grpc.aio.Server:
    """A grpc.aio server (not started) with both services bound to `address` (host:port)."""
    server = grpc.aio.server(options=[("grpc.max_send_message_length", _MAX_MESSAGE),
                                      ("grpc.max_receive_message_length", _MAX_MESSAGE)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(service, metrics), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(service, metrics), server)
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot bind the gRPC port {address}")
    return server
