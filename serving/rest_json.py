"""TF Serving's JSON encoding of tensors (its `api_rest.md` and `util/json_tensor.cc`).

Requests: `{"signature_name": ..., "instances": [...]}` (row format) or `{"inputs": ...}` (columnar);
strings are UTF-8 text or `{"b64": "..."}`. Responses: `{"predictions": [...]}` (row) or `{"outputs": ...}`
(columnar), one value per instance for a single output and an object of named outputs otherwise;
strings are written as text, except outputs whose name ends in `_bytes`, written as `{"b64": ...}`;
floats with the shortest of 6 or 9 significant digits that reads back exactly, `NaN`, `Infinity`,
`-Infinity` for non-finite values. The layout (4-space indent, single-line arrays inside row items)
and the error texts are TF Serving's.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any, Dict, List, Tuple

import numpy as np

from serving.errors import ServingError, invalid_argument
from serving.versions import TensorInfo

# tensorflow.DataType enum values (types.proto) the REST API converts.
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING, DT_INT64, DT_BOOL = 1, 2, 3, 4, 5, 6, 7, 9, 10
DT_UINT32, DT_UINT64 = 22, 23
_DTYPE_NAMES = {DT_FLOAT: "float", DT_DOUBLE: "double", DT_INT32: "int32", DT_UINT8: "uint8", DT_INT16: "int16",
                DT_INT8: "int8", DT_STRING: "string", DT_INT64: "int64", DT_BOOL: "bool", DT_UINT32: "uint32",
                DT_UINT64: "uint64"}
_NUMPY = {DT_FLOAT: np.float32, DT_DOUBLE: np.float64, DT_INT32: np.int32, DT_UINT8: np.uint8, DT_INT16: np.int16,
          DT_INT8: np.int8, DT_INT64: np.int64, DT_BOOL: np.bool_, DT_UINT32: np.uint32, DT_UINT64: np.uint64}
_INT_RANGES = {DT_INT32: (-2**31, 2**31 - 1), DT_UINT8: (0, 255), DT_INT16: (-2**15, 2**15 - 1),
               DT_INT8: (-128, 127), DT_INT64: (-2**63, 2**63 - 1), DT_UINT32: (0, 2**32 - 1),
               DT_UINT64: (0, 2**64 - 1)}


# -- requests ------------------------------------------------------------------------------------
def _pretty(value: Any) -> str:
    return json.dumps(value, indent=4)


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def parse_body(body: bytes) -> Dict[str, Any]:
    """The request's JSON object, or INVALID_ARGUMENT with TF Serving's message."""
    if not body.strip():
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except UnicodeDecodeError as err:
        raise invalid_argument(f"JSON Parse error: Invalid encoding in string. at offset: {err.start}") from None
    except json.JSONDecodeError as err:
        raise invalid_argument(f"JSON Parse error: {err.msg}. at offset: {err.pos}") from None
    if not isinstance(doc, dict):
        raise invalid_argument(f"JSON Value: {_pretty(doc)} Is not object")
    return doc


def signature_name(doc: Dict[str, Any]) -> str:
    """The request's `signature_name` ('' when absent: the default signature)."""
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid_argument(f"JSON Value: {_pretty(doc)} not formatted correctly. "
                               "'signature_name' key must be a string value.")
    return name


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _leaf(value: Any, dtype: int) -> Any:
    if dtype == DT_STRING:
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, dict):
            if not _is_b64(value):
                raise invalid_argument(f"JSON Value: {_pretty(value)} not formatted correctly for base64 data")
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise invalid_argument("Unable to base64 decode") from None
    elif dtype in (DT_FLOAT, DT_DOUBLE):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    elif dtype == DT_BOOL:
        if isinstance(value, bool):
            return value
    elif dtype in _INT_RANGES:
        if isinstance(value, int) and not isinstance(value, bool):
            low, high = _INT_RANGES[dtype]
            if low <= value <= high:
                return value
    else:
        raise ServingError("UNIMPLEMENTED", f"Conversion of JSON Value: {_pretty(value)} to type: "
                           f"{_DTYPE_NAMES.get(dtype, dtype)}")
    raise invalid_argument(f"JSON Value: {_pretty(value)} Type: {_json_type(value)} is not of expected type: "
                           f"{_DTYPE_NAMES.get(dtype, dtype)}")


def _fill(value: Any, dtype: int, out: list) -> Tuple[int, ...]:
    """Appends the leaves of nested lists `value` to `out`; returns the shape (rectangular only)."""
    if not isinstance(value, list):
        out.append(_leaf(value, dtype))
        return ()
    if not value:
        return (0,)
    shape = None
    for item in value:
        item_shape = _fill(item, dtype, out)
        if shape is None:
            shape = item_shape
        elif item_shape != shape:
            raise invalid_argument(f"Encountered list at unexpected size: {len(item_shape) and item_shape[0]} "
                                   f"expected size: {len(shape) and shape[0]}")
    return (len(value),) + shape


def _to_array(value: Any, info: TensorInfo) -> np.ndarray:
    if info.dtype == DT_STRING and isinstance(value, str):  # the common case, fast
        return np.array([value.encode("utf-8")], dtype=object).reshape(())
    leaves: list = []
    shape = _fill(value, info.dtype, leaves)
    array = np.empty(len(leaves), dtype=object if info.dtype == DT_STRING else _NUMPY[info.dtype])
    array[:] = leaves
    return array.reshape(shape)


def _shape_text(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _stack(values: List[np.ndarray], info: TensorInfo) -> np.ndarray:
    shape = values[0].shape
    for value in values[1:]:
        if value.shape != shape:
            if value.size != values[0].size:
                raise invalid_argument(f"Expecting tensor size: {values[0].size} but got: {value.size}")
            raise invalid_argument(f"Expecting shape {_shape_text(shape)} but got: {_shape_text(value.shape)}")
    if not shape and info.dtype == DT_STRING:
        out = np.empty(len(values), dtype=object)
        out[:] = [v.item() for v in values]
        return out
    return np.stack(values)


def parse_inputs(doc: Dict[str, Any], inputs: Dict[str, TensorInfo]) -> Tuple[Dict[str, np.ndarray], bool]:
    """The input tensors of a :predict request body (as parsed by `parse_body`) for a signature with
    `inputs`; returns (tensors, row_format). INVALID_ARGUMENT with TF Serving's messages otherwise."""
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise invalid_argument(f"JSON Value: {_pretty(doc)} Not formatted correctly expecting only one of "
                               "'inputs' or 'instances' keys to exist ")
    if not inputs:
        raise invalid_argument("Failed to get input map for signature")
    if has_instances:
        return _parse_instances(doc, inputs), True
    if has_inputs:
        return _parse_columnar(doc["inputs"], inputs), False
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def _parse_instances(doc: Dict[str, Any], inputs: Dict[str, TensorInfo]) -> Dict[str, np.ndarray]:
    instances = doc["instances"]
    if not isinstance(instances, list):
        raise invalid_argument(f"JSON Value: {_pretty(doc)} Expecting 'instances' to be an list/array")
    if not instances:
        raise invalid_argument(f"JSON Value: {_pretty(doc)} No values in 'instances' array")
    named = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not named and len(inputs) > 1:
        raise invalid_argument("instances is a plain list, but expecting list of objects as multiple input "
                               "tensors required as per tensorinfo_map")
    names = sorted(inputs)
    columns: Dict[str, List[np.ndarray]] = {name: [] for name in names}
    for i, element in enumerate(instances):
        is_object = isinstance(element, dict) and not _is_b64(element)
        if named and not is_object:
            raise invalid_argument(f"Expecting object but got list at item {i} of input list")
        if not named and is_object:
            raise invalid_argument(f"Expecting value/list but got object at item {i} of input list")
        if named:
            for key in element:
                if key not in inputs:
                    raise invalid_argument(f"Failed to process element: {i} key: {key} of 'instances' list. "
                                           f"Error: INVALID_ARGUMENT: JSON object: does not have named input: {key}")
            if len(element) != len(inputs):
                raise invalid_argument(f"Failed to process element: {i} of 'instances' list. JSON object: "
                                       f"{_pretty(element)} keys must be equal to: {','.join(names)}")
            for name in names:
                columns[name].append(_element(element[name], inputs[name], i))
        else:
            columns[names[0]].append(_element(element, inputs[names[0]], i))
    return {name: _stack(values, inputs[name]) for name, values in columns.items()}


def _element(value: Any, info: TensorInfo, index: int) -> np.ndarray:
    try:
        return _to_array(value, info)
    except ServingError as err:
        raise ServingError(err.code, f"Failed to process element: {index} of 'instances' list. "
                           f"Error: {err.code}: {err.message}") from None


def _parse_columnar(value: Any, inputs: Dict[str, TensorInfo]) -> Dict[str, np.ndarray]:
    if not isinstance(value, dict) or _is_b64(value):
        if len(inputs) > 1:
            raise invalid_argument("inputs is a plain value/list, but expecting an object as multiple input "
                                   "tensors required as per tensorinfo_map")
        [(name, info)] = inputs.items()
        return {name: _to_array(value, info)}
    result = {}
    for name, info in inputs.items():
        if name not in value:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        result[name] = _to_array(value[name], info)
    return result


# -- responses -----------------------------------------------------------------------------------
def format_float(value: float, double: bool = False) -> str:
    """TF Serving's WriteDecimal: 6 significant digits when they read back exactly, else 9 (17 for
    double); '.0' appended to integral values; NaN, Infinity, -Infinity."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = "%.6g" % value
    exact = float(text) == value if double else np.float32(text) == np.float32(value)
    if not exact:
        text = ("%.17g" if double else "%.9g") % value
    if "." not in text and "e" not in text and "n" not in text:
        text += ".0"
    return text


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _string(value: bytes) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if text.isprintable() and '"' not in text and "\\" not in text:
        return '"' + text + '"'
    return '"' + "".join(_ESCAPES.get(c, "\\u%04X" % ord(c) if ord(c) < 0x20 else c) for c in text) + '"'


def _b64(value: bytes) -> str:
    return '{"b64": "' + base64.b64encode(value).decode("ascii") + '"}'


def _scalar_writer(array: np.ndarray, name: str):
    kind = array.dtype.kind
    if kind == "f":
        double = array.dtype == np.float64
        return lambda v: format_float(float(v), double)
    if kind in "iu":
        return lambda v: str(int(v))
    if kind == "b":
        return lambda v: "true" if v else "false"
    if kind in "OSU":
        return _b64 if name.endswith("_bytes") else _string
    raise invalid_argument(f"Failed to write JSON value for tensor type: {array.dtype}")


def _write(array, scalar, indent: int, single_line: bool) -> str:
    if isinstance(array, np.ndarray) and array.ndim == 0:
        array = array[()]
    if not isinstance(array, np.ndarray):
        return scalar(array)
    if array.shape[0] == 0:
        return "[]"
    if single_line:
        if array.ndim == 1:
            return "[" + ", ".join(scalar(v) for v in array.tolist()) + "]"
        return "[" + ", ".join(_write(a, scalar, indent, True) for a in array) + "]"
    pad = "\n" + " " * (4 * (indent + 1))
    items = [_write(a, scalar, indent + 1, False) for a in array]
    return "[" + ",".join(pad + item for item in items) + "\n" + " " * (4 * indent) + "]"


def format_predict_response(outputs: Dict[str, np.ndarray], row_format: bool) -> str:
    """The body of a :predict response for `outputs` (TF Serving's layout and value encoding)."""
    writers = {name: _scalar_writer(value, name) for name, value in outputs.items()}
    names = sorted(outputs)
    if not row_format:
        if len(names) == 1:
            body = _write(outputs[names[0]], writers[names[0]], 1, False)
        else:
            body = "{" + ",".join(f'\n        {_string(n.encode())}: {_write(outputs[n], writers[n], 2, False)}'
                                  for n in names) + "\n    }"
        return '{\n    "outputs": ' + body + "\n}"
    batch = None
    for name in names:
        value = outputs[name]
        if value.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch is None:
            batch = value.shape[0]
        elif value.shape[0] != batch:
            raise invalid_argument(f"Tensor name: {name} has inconsistent batch size: {value.shape[0]} "
                                   f"expecting: {batch}")
    if not batch:
        return '{\n    "predictions": []\n}'
    if len(names) == 1:
        value, scalar = outputs[names[0]], writers[names[0]]
        items = [_write(value[i], scalar, 0, True) for i in range(batch)]
        return '{\n    "predictions": [' + ", ".join(items) + "\n    ]\n}"
    rows = []
    for i in range(batch):
        fields = ",".join(f'\n            "{n}": {_write(outputs[n][i], writers[n], 0, True)}' for n in names)
        rows.append("\n        {" + fields + "\n        }")
    return '{\n    "predictions": [' + ",".join(rows) + "\n    ]\n}"


def format_error(message: str) -> str:
    """TF Serving's error body."""
    return '{\n    "error": ' + json.dumps(message, ensure_ascii=False) + "\n}"


def format_status(entries) -> str:
    """GET /v1/models/NAME: [(version, VersionStatus)] as TF Serving's GetModelStatusResponse JSON."""
    doc = {"model_version_status": [
        {"version": str(version), "state": s.state,
         "status": {"error_code": s.error_code, "error_message": s.error_message}}
        for version, s in entries]}
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def format_metadata(name: str, version: int, signature_defs) -> str:
    """GET .../metadata: the model spec and the SignatureDefMap, as TF Serving writes them."""
    from google.protobuf import json_format

    spec = json.dumps({"name": name, "signature_name": "", "version": str(version)}, indent=1)
    sigs = json_format.MessageToJson(signature_defs, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True, indent=1)
    return '{\n"model_spec":' + spec + ',\n"metadata": {"signature_def": ' + sigs + "}\n}\n"
