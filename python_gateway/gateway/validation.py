"""Validation at the edge, against the schemas of the OpenAPI document (jsonschema, Draft 2020-12).

Malformed JSON, a wrong content type, missing or mistyped fields (booleans are not integers), out-of-range
numbers and bodies over 64 KiB are refused before any database call: 4xx problem, nothing changed.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .auth import read_body
from .openapi import DOC_URI, PATH_PARAMETERS, REQUEST_BODIES, build_document
from .problems import Problem

MAX_DEPTH = 32
MAX_ERRORS = 10


def _validators() -> tuple[dict[str, Draft202012Validator], dict[str, Draft202012Validator]]:
    document = build_document()
    registry: Registry = Registry().with_resource(
        DOC_URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    bodies = {
        op: Draft202012Validator({"$ref": f"{DOC_URI}#/components/schemas/{name}"}, registry=registry)
        for op, name in REQUEST_BODIES.items()
    }
    params = {
        op: Draft202012Validator({"type": "object", "properties": props, "required": list(props)})
        for op, props in PATH_PARAMETERS.items()
    }
    for validator in (*bodies.values(), *params.values()):
        validator.check_schema(validator.schema)
    return bodies, params


BODY_VALIDATORS, PARAM_VALIDATORS = _validators()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate member {key!r}")
        result[key] = value
    return result


def _depth(value: Any) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            return depth
        nxt: list[Any] = []
        for v in level:
            if isinstance(v, dict):
                nxt.extend(v.values())
            elif isinstance(v, list):
                nxt.extend(v)
        level = nxt
    return depth


def _whole_numbers(value: Any) -> Any:
    """JSON Schema counts 2.0 as an integer; the database gets it as int 2."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def _pointer(error: ValidationError) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in error.absolute_path)


def _message(error: ValidationError) -> str:
    text = error.message
    return text if len(text) <= 200 else text[:197] + "..."


def _raise_invalid(validator: Draft202012Validator, instance: Any, what: str) -> None:
    errors = list(validator.iter_errors(instance))
    if not errors:
        return
    best = best_match(errors)
    assert best is not None
    where = _pointer(best)
    raise Problem(
        "validation",
        f"{what} {where if where != '/' else ''}: {_message(best)}".replace("  ", " "),
        {"errors": [{"pointer": _pointer(e), "detail": _message(e)} for e in errors[:MAX_ERRORS]]},
    )


async def json_body(request: web.Request, operation_id: str) -> tuple[dict[str, Any], bytes]:
    """The request's JSON body, checked against the operation's schema; also the raw bytes."""
    raw = await read_body(request)
    if request.content_type != "application/json":
        raise Problem("unsupported-media-type",
                      f"Content-Type must be application/json, not {request.content_type or 'none'}")
    try:
        text = raw.decode("utf-8")
        document = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise Problem("validation", f"the body is not valid JSON: {str(err)[:200]}") from None
    if _depth(document) > MAX_DEPTH:
        raise Problem("validation", f"the body is nested deeper than {MAX_DEPTH} levels")
    _raise_invalid(BODY_VALIDATORS[operation_id], document, "body")
    return _whole_numbers(document), raw


def path_params(request: web.Request, operation_id: str) -> dict[str, Any]:
    """The operation's path parameters, checked against the document (integers converted)."""
    schema_props = PATH_PARAMETERS[operation_id]
    values: dict[str, Any] = {}
    for name, schema in schema_props.items():
        value: Any = request.match_info[name]
        if schema.get("type") == "integer":
            try:
                value = int(value, 10) if value.strip() == value else value
            except ValueError:
                pass
        values[name] = value
    _raise_invalid(PARAM_VALIDATORS[operation_id], values, "path parameter")
    return values
