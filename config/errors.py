"""The error every invalid setting raises, and its message."""

from __future__ import annotations

from typing import Any, Mapping

import pydantic


class ConfigError(ValueError):
    """Invalid settings; the message names each bad key, its value and what is allowed."""


def format_validation_error(err: pydantic.ValidationError, values: Mapping[str, Any]) -> str:
    """One line per invalid setting: `setting 'epochs' = '0': must be >= 1 (Input should be ...)`."""
    lines = []
    for problem in err.errors(include_url=False):
        key = ".".join(str(p) for p in problem["loc"]) or "?"
        value = values.get(problem["loc"][0], problem.get("input")) if problem["loc"] else problem.get("input")
        allowed = _allowed(problem)
        lines.append(f"setting {key!r} = {value!r} is not allowed: {allowed}")
    return "\n".join(lines)


_TYPES = {
    "int_parsing": "must be a whole number", "int_from_float": "must be a whole number",
    "int_type": "must be a whole number", "float_parsing": "must be a number", "float_type": "must be a number",
    "bool_parsing": "must be true or false (also yes/no, on/off, 1/0)", "bool_type": "must be true or false",
    "list_type": "must be a list (a JSON list, or space-separated on the CLI)",
    "json_invalid": "must be valid JSON",
}


def _allowed(problem: Mapping[str, Any]) -> str:
    ctx = problem.get("ctx") or {}
    kind = problem["type"]
    bounds = {"greater_than_equal": ">= {ge}", "greater_than": "> {gt}",
              "less_than_equal": "<= {le}", "less_than": "< {lt}"}
    if kind in bounds:
        return "must be " + bounds[kind].format(**ctx)
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind in _TYPES:
        return _TYPES[kind]
    if kind == "value_error" and ctx.get("error") is not None:  # a validator's own message
        return str(ctx["error"])
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}"
    return problem["msg"][0].lower() + problem["msg"][1:]
