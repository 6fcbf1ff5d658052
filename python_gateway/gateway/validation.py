"""Validation at the edge, against the schemas of the OpenAPI document (jsonschema, Draft 2020-12).

Malformed JSON, a wrong content type or charset, missing or mistyped fields (booleans are not integers),
out-of-range numbers, text PostgreSQL cannot hold and bodies over 64 KiB are refused before any database call:
4xx problem, nothing changed.

Every text a handler takes from the request (body, path parameters, documented headers) passes through here, so
whatever reaches psycopg is encodable: no NUL (PostgreSQL text and jsonb cannot hold it) and no lone surrogate
(UTF-8 cannot encode it; they come from ``\\ud800`` escapes in JSON or, through aiohttp's surrogateescape
decoding, from invalid UTF-8 bytes in headers).

Patterns follow ECMA-262 as OpenAPI 3.1 says: ``$`` is the end of the text, never the place before a final
newline as in Python's ``re``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from aiohttp import hdrs, web
from aiohttp.helpers import parse_mimetype
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .auth import read_body
from .openapi import DOC_URI, PATH_PARAMETERS, REQUEST_BODIES, build_document
from .problems import Problem

MAX_DEPTH = 32
MAX_ERRORS = 10
JSON_MEDIA_TYPE = "application/json"
CHARSET = "utf-8"

# Characters no PostgreSQL text or jsonb value can hold: NUL, and lone surrogates (not encodable as UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_DECIMAL = re.compile("-?[0-9]{1,20}")  # longer stays text: the schema refuses it


# ----------------------------------------------------------------------------- patterns


@lru_cache(maxsize=256)
def _ecma_pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled for Python with ECMA-262's ``$`` (end of text, outside character classes)."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "$":
            c = r"\Z"
        out.append(c)
        i += 1
    return re.compile("".join(out))


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _ecma_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = validators.extend(Draft202012Validator, {"pattern": _pattern})


def _validators() -> tuple[dict[str, Any], dict[str, Any]]:
    document = build_document()
    registry: Registry = Registry().with_resource(
        DOC_URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    bodies = {
        op: Validator({"$ref": f"{DOC_URI}#/components/schemas/{name}"}, registry=registry)
        for op, name in REQUEST_BODIES.items()
    }
    params = {
        op: Validator({"type": "object", "properties": props, "required": list(props)})
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


def _escape_pointer_token(token: object) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def _pointer(error: ValidationError) -> str:
    return "/" + "/".join(_escape_pointer_token(p) for p in error.absolute_path)


def _message(error: ValidationError) -> str:
    text = error.message
    return text if len(text) <= 200 else text[:197] + "..."


def _raise_invalid(validator: Any, instance: Any, what: str) -> None:
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


# ----------------------------------------------------------------------------- text PostgreSQL cannot hold


def _describe(char: str) -> str:
    return "NUL (U+0000)" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X})"


def unstorable_text(document: Any) -> list[tuple[str, str]]:
    """Each string of a decoded JSON document (member names included) that PostgreSQL cannot hold.

    Answers (JSON pointer, what is wrong) pairs in document order, at most :data:`MAX_ERRORS`; a member name's
    pointer is the member's own.
    """
    found: list[tuple[str, str]] = []
    # (pointer, member name or None, value), the next to look at last
    stack: list[tuple[str, str | None, Any]] = [("", None, document)]
    while stack and len(found) < MAX_ERRORS:
        pointer, name, value = stack.pop()
        bad = _UNSTORABLE.search(name) if name is not None else None
        if bad:
            found.append((pointer, f"the member name contains {_describe(bad.group())}"))
        if isinstance(value, str):
            bad = _UNSTORABLE.search(value)
            if bad:
                found.append((pointer, f"contains {_describe(bad.group())}"))
        elif isinstance(value, dict):
            stack.extend(reversed([(f"{pointer}/{_escape_pointer_token(k)}", k, v) for k, v in value.items()]))
        elif isinstance(value, list):
            stack.extend(reversed([(f"{pointer}/{i}", None, v) for i, v in enumerate(value)]))
    return found[:MAX_ERRORS]


def _refuse_unstorable(document: Any, what: str) -> None:
    """400 ``validation`` when any string of ``document`` holds text PostgreSQL cannot hold."""
    found = unstorable_text(document)
    if found:
        pointer, detail = found[0]
        raise Problem("validation", f"{what} {pointer}: {detail}",
                      {"errors": [{"pointer": p, "detail": d} for p, d in found]})


# ----------------------------------------------------------------------------- bodies


def _check_media_type(request: web.Request) -> None:
    """415 ``unsupported-media-type`` unless the body is application/json in UTF-8 (no charset means UTF-8).

    Every charset parameter counts (aiohttp's ``request.charset`` keeps the first and drops an empty one).
    """
    if request.content_type != JSON_MEDIA_TYPE:
        raise Problem("unsupported-media-type",
                      f"Content-Type must be {JSON_MEDIA_TYPE}, not {request.content_type or 'none'}")
    charsets = parse_mimetype(request.headers.get(hdrs.CONTENT_TYPE, "")).parameters.getall("charset", [])
    other = [charset for charset in charsets if charset.lower() != CHARSET]
    if other:
        raise Problem("unsupported-media-type", f"the body must be {CHARSET}, not charset={other[0]!r}")


def _decode_json(raw: bytes) -> Any:
    """The JSON document of strict UTF-8 ``raw``: no NaN/Infinity, no duplicate members (400 otherwise)."""
    try:
        text = raw.decode(CHARSET)
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise Problem("validation", f"the body is not valid JSON: {str(err)[:200]}") from None


async def json_body(request: web.Request, operation_id: str) -> tuple[dict[str, Any], bytes]:
    """The request's JSON body, checked against the operation's schema; also the raw bytes."""
    raw = await read_body(request)
    _check_media_type(request)
    document = _decode_json(raw)
    if _depth(document) > MAX_DEPTH:
        raise Problem("validation", f"the body is nested deeper than {MAX_DEPTH} levels")
    _refuse_unstorable(document, "body")
    _raise_invalid(BODY_VALIDATORS[operation_id], document, "body")
    return _whole_numbers(document), raw


# ----------------------------------------------------------------------------- path parameters and headers


def path_params(request: web.Request, operation_id: str) -> dict[str, Any]:
    """The operation's path parameters, checked against the document (integers: ASCII decimal, converted)."""
    values: dict[str, Any] = {}
    for name, schema in PATH_PARAMETERS[operation_id].items():
        value: str = request.match_info[name]
        is_integer = schema.get("type") == "integer" and _DECIMAL.fullmatch(value)
        values[name] = int(value) if is_integer else value
    _refuse_unstorable(values, "path parameter")
    _raise_invalid(PARAM_VALIDATORS[operation_id], values, "path parameter")
    return values


def header_param(request: web.Request, parameter: dict[str, Any]) -> str | None:
    """The value of a documented header parameter (an OpenAPI parameter object), None when absent; 400 when off
    its schema (header bytes that are not UTF-8 arrive as lone surrogates and are refused here too)."""
    name: str = parameter["name"]
    value = request.headers.get(name)
    if value is None:
        return None
    _refuse_unstorable({name: value}, "header")
    _raise_invalid(Validator({"type": "object", "properties": {name: parameter["schema"]}}), {name: value}, "header")
    return value
