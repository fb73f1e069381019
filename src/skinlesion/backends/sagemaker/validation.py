"""Check a request against the service model: botocore's rules plus enum, pattern and max rules.

botocore validates required members, types and minimums before sending; the service also
enforces maximum lengths, value ranges, enums and patterns, and rejects a request only after it
has been sent (for a job, after the step has already started). This walks the operation's input
shape and reports every rule a request breaks, so a bad request fails before it leaves.
Patterns are applied as full matches, the way the API reference writes them (``^...$``); they use
Java's ``\\p{L}`` classes, hence the ``regex`` module.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import regex
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape
from botocore.validate import ParamValidator

from skinlesion.backends.sagemaker.errors import RequestValidationError

log = logging.getLogger(__name__)


def request_problems(
    service_model: ServiceModel, operation: str, params: Mapping[str, Any]
) -> list[str]:
    """Every rule that ``params`` breaks for ``operation``, as readable lines (empty: valid)."""
    operation_model: OperationModel = service_model.operation_model(operation)
    problems: list[str] = []
    shape = operation_model.input_shape
    if shape is None:
        return [f"{operation} takes no input, got {sorted(params)}"] if params else []
    report = ParamValidator().validate(dict(params), shape)
    if report.has_errors():
        problems.extend(
            line.strip() for line in report.generate_report().splitlines() if line.strip()
        )
    _walk(shape, params, operation, problems)
    return problems


def validate_request(
    service_model: ServiceModel, operation: str, params: Mapping[str, Any]
) -> None:
    """Raise RequestValidationError listing every broken rule; return quietly when valid."""
    problems = request_problems(service_model, operation, params)
    if problems:
        raise RequestValidationError(operation, problems)


def _walk(shape: Shape, value: Any, path: str, problems: list[str]) -> None:
    meta = shape.metadata
    if isinstance(shape, StructureShape):
        if not isinstance(value, Mapping):
            return  # botocore's validator reports the type
        for name, member_value in value.items():
            member = shape.members.get(name)
            if member is not None:
                _walk(member, member_value, f"{path}.{name}", problems)
        return
    if isinstance(shape, ListShape):
        if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            _check_range(len(value), meta, path, "items", problems)
            for index, item in enumerate(value):
                _walk(shape.member, item, f"{path}[{index}]", problems)
        return
    if isinstance(shape, MapShape):
        if isinstance(value, Mapping):
            _check_range(len(value), meta, path, "entries", problems)
            for key, item in value.items():
                _walk(shape.key, key, f"{path} key {key!r}", problems)
                _walk(shape.value, item, f"{path}[{key!r}]", problems)
        return
    if shape.type_name == "string" and isinstance(value, str):
        _check_range(len(value), meta, path, "characters", problems)
        enum = meta.get("enum")
        if enum and value not in enum:
            problems.append(f"{path}: {value!r} is not one of {', '.join(enum)}")
        pattern = meta.get("pattern")
        if pattern and not _matches(pattern, value):
            problems.append(f"{path}: {value!r} does not match the pattern {pattern}")
        return
    if shape.type_name in ("integer", "long", "float", "double") and isinstance(
        value, (int, float)
    ):
        _check_range(value, meta, path, "", problems)


def _check_range(
    amount: float, meta: Mapping[str, Any], path: str, unit: str, problems: list[str]
) -> None:
    low, high = meta.get("min"), meta.get("max")
    suffix = f" {unit}" if unit else ""
    if high is not None and amount > high:
        problems.append(f"{path}: {amount}{suffix}, more than the maximum {high}")
    if low is not None and amount < low:
        problems.append(f"{path}: {amount}{suffix}, less than the minimum {low}")


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> regex.Pattern[str] | None:
    try:
        return regex.compile(pattern)
    except regex.error as error:
        log.debug("Service pattern %r does not compile (%s); not checked", pattern, error)
        return None


def _matches(pattern: str, value: str) -> bool:
    compiled = _compiled(pattern)
    return compiled is None or compiled.fullmatch(value) is not None
