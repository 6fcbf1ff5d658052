"""The OpenAPI 3.1 document of the terminal API (SPEC §7), served at ``GET /terminal/v1/openapi.json``.

The same schemas validate request bodies and path parameters at the edge (:mod:`.validation`, jsonschema
Draft 2020-12), so the document and the behaviour cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import signing
from .problems import REGISTRY_KEY, ProblemType

DOC_URI = "urn:festpay:terminal-api"
MAX_SAFE = 2**53 - 1  # whole numbers inside JSON stay exact everywhere (and the ledger checks the same bound)

# ----------------------------------------------------------------------------- building blocks

ID = {"type": "integer", "minimum": 1, "maximum": MAX_SAFE}
AMOUNT = {"type": "integer", "minimum": 1, "maximum": MAX_SAFE, "description": "cents, greater than 0"}
CENTS = {"type": "integer", "minimum": -MAX_SAFE, "maximum": MAX_SAFE, "description": "cents"}
TAG_TX = {"type": "integer", "minimum": 0, "maximum": 2147483647, "description": "tag transaction number"}
UID = {"type": "string", "pattern": "^[0-9A-Fa-f]{8,20}$", "description": "tag UID: 4 to 10 bytes of hex"}
TIME = {"type": "string", "format": "date-time", "description": "RFC 3339 time"}
NO_NUL = "^[^\\u0000]*$"  # PostgreSQL text cannot hold NUL characters
# Base64 of exactly 32 bytes (an HMAC-SHA256), in the canonical form signing.log_entry_mac writes.
MAC32 = {"type": "string", "minLength": 44, "maxLength": 44, "pattern": "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$",
         "contentEncoding": "base64"}

SYNC_RULES = (
    "Every terminal of an event holds the event's tag key, so the tag's own MAC cannot tell which terminal wrote "
    "a charge. Each log entry therefore carries `mac`, written by the charging terminal with the entry: base64 of "
    "HMAC-SHA256, keyed with that terminal's base64-decoded assignment secret, over assignment_id + \"\\n\" + "
    "terminal_tx_number + \"\\n\" + uid + \"\\n\" + tag_tx_number + \"\\n\" + amount (decimal integers, the "
    "UID in upper-case hex). The backend trusts an uploaded entry only when its mac verifies with the secret of "
    "the assignment it names and that assignment belongs to the tag's event, its tag_tx_number is below the "
    "tag's next number, and the entries it holds no reserve for (offline charges) together stay within the "
    "event's offline limit; an offline charge on a tag that never received money (unknown to the backend, or "
    "new) is implausible. An entry that fails is refused: nothing is held or booked for it, it is logged as a "
    "violation, and the answer lists it in `refused` with its problem (log-entry-forged, log-entry-foreign, "
    "log-entry-number-too-high, offline-limit-exceeded, implausible-offline-charge, idempotency-conflict). An "
    "entry without a mac is judged "
    "forged. Entries the backend holds are listed in `acknowledged`. Both are settled: the terminal removes "
    "them from the tag."
)
REPEAT_RULE = (
    "A repeat under the same terminal_tx_number with the same content (uid, tag number, amount, payment, items) "
    "returns the first answer and books nothing twice; the same number with any other content is 422 "
    "idempotency-conflict."
)


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required: list[str], properties: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "required": required, "properties": properties}
    if description:
        schema["description"] = description
    return schema


SCHEMAS: dict[str, Any] = {
    # --------------------------------------------------------------- requests
    "RegisterRequest": obj(["registration_code", "device"], {
        "registration_code": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": NO_NUL,
                              "description": "one-time code made by an admin (festpay registration-code)"},
        "device": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NO_NUL,
                   "description": "a name for this device"},
    }),
    "TagLogEntry": obj(["assignment_id", "terminal_tx_number", "tag_tx_number", "amount"], {
        "assignment_id": ID,
        "terminal_tx_number": ID,
        "tag_tx_number": TAG_TX,
        "amount": AMOUNT,
        "time": nullable(TIME),
        "mac": {**MAC32, "description": "the charging terminal's MAC of this entry (see the operation's "
                                        "description); an entry without one is refused as log-entry-forged"},
    }, "a charge written to the tag and not yet acknowledged by the backend, as the charging terminal wrote it"),
    "TagSyncRequest": obj(["tag_tx_number", "balance", "log"], {
        "tag_tx_number": {**TAG_TX, "description": "the tag's next transaction number"},
        "balance": {**CENTS, "description": "the balance as last written to the tag"},
        "log": {"type": "array", "maxItems": 255, "items": ref("TagLogEntry")},
    }),
    "Item": obj(["product_id", "quantity"], {
        "product_id": ID,
        "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_SAFE},
        "unit_price": {"type": "integer", "minimum": 0, "maximum": MAX_SAFE,
                       "description": "cents; default and required value for fixed-price products: their price"},
    }),
    "ReserveRequest": obj(["terminal_tx_number", "uid", "tag_tx_number", "amount", "items"], {
        "terminal_tx_number": ID,
        "uid": UID,
        "tag_tx_number": TAG_TX,
        "amount": {**AMOUNT, "description": "cents: the sum of quantity x unit_price of the items"},
        "items": {"type": "array", "minItems": 1, "maxItems": 100, "items": ref("Item")},
    }),
    "TopupRequest": obj(["terminal_tx_number", "uid", "amount", "payment"], {
        "terminal_tx_number": ID,
        "uid": UID,
        "amount": AMOUNT,
        "payment": {"type": "string", "enum": ["cash", "card"]},
    }),
    "RefundRequest": obj(["terminal_tx_number", "uid", "amount"], {
        "terminal_tx_number": ID,
        "uid": UID,
        "amount": AMOUNT,
    }),
    "ReplicatedTransaction": obj(["terminal_tx_number", "state", "uid", "amount"], {
        "terminal_tx_number": ID,
        "type": {"type": "string", "enum": ["purchase", "topup", "refund", "deposit_return"],
                 "default": "purchase"},
        "state": {"type": "string", "enum": ["Committed", "Aborted", "TerminalConfirmUnknown"]},
        "uid": UID,
        "tag_tx_number": nullable(TAG_TX),
        "time": nullable(TIME),
        "amount": AMOUNT,
        "payment": nullable({"type": "string", "enum": ["cash", "card"]}),
        "items": nullable({"type": "array", "maxItems": 100, "items": ref("Item")}),
    }),
    "TransactionsRequest": obj(["transactions"], {
        "transactions": {"type": "array", "maxItems": 500, "items": ref("ReplicatedTransaction")},
    }),
    # --------------------------------------------------------------- answers
    "RegisterResponse": obj(["assignment_id", "event_id", "secret", "tag_key"], {
        "assignment_id": ID,
        "event_id": ID,
        "secret": {"type": "string", "contentEncoding": "base64", "description": "HMAC key for signing requests"},
        "tag_key": {"type": "string", "contentEncoding": "base64", "description": "the event's tag MAC key"},
    }),
    "Config": obj(["event", "position", "products", "server_time"], {
        "event": obj(["id", "name", "currency", "reserve_timeout_s", "max_balance", "offline_limit",
                      "offline_log_size"], {
            "id": ID, "name": {"type": "string"}, "currency": {"type": "string"},
            "reserve_timeout_s": {"type": "integer"}, "max_balance": nullable(CENTS),
            "offline_limit": nullable(CENTS), "offline_log_size": nullable({"type": "integer"}),
        }),
        "position": obj(["name", "kind", "merchant_id"], {
            "name": {"type": "string"}, "kind": {"type": "string", "enum": ["sale", "topup"]},
            "merchant_id": nullable(ID),
        }),
        "products": {"type": "array", "items": obj(
            ["id", "name", "price", "vat_rate", "fixed_price", "returnable"], {
                "id": ID, "name": {"type": "string"}, "price": nullable(CENTS),
                "vat_rate": {"type": "number", "description": "percent"},
                "fixed_price": {"type": "boolean"}, "returnable": {"type": "boolean"},
            })},
        "server_time": TIME,
    }),
    "TagSyncResponse": obj(["uid", "status", "balance", "held", "available", "acknowledged", "refused"], {
        "uid": {"type": "string"},
        "status": {"type": "string", "enum": ["new", "active", "blocked"]},
        "balance": CENTS, "held": CENTS, "available": CENTS,
        "acknowledged": {"type": "array", "items": obj(["assignment_id", "terminal_tx_number"], {
            "assignment_id": ID, "terminal_tx_number": ID}),
            "description": "log entries the backend now holds: mark them acknowledged on the tag"},
        "refused": {"type": "array", "items": obj(["assignment_id", "terminal_tx_number", "problem"], {
            "assignment_id": ID, "terminal_tx_number": ID,
            "problem": {"type": "string", "description": "slug of the problem type: log-entry-forged, "
                                                          "log-entry-foreign, log-entry-number-too-high, "
                                                          "offline-limit-exceeded, implausible-offline-charge "
                                                          "or idempotency-conflict"}}),
            "description": "log entries the backend refused: nothing is held or booked for them; they are "
                           "settled too, so the terminal drops them from the tag"},
    }),
    "ReserveResponse": obj(["transaction_id", "state", "available", "expires_at"], {
        "transaction_id": ID, "state": {"type": "string"}, "available": CENTS, "expires_at": TIME,
    }),
    "BookingResponse": obj(["transaction_id", "state", "balance"], {
        "transaction_id": ID, "state": {"type": "string"}, "balance": CENTS,
    }),
    "TransactionsResponse": obj(["results"], {
        "results": {"type": "array", "items": obj(
            ["terminal_tx_number", "transaction_id", "state", "outcome", "problem"], {
                "terminal_tx_number": nullable(ID),
                "transaction_id": nullable(ID),
                "state": nullable({"type": "string"}),
                "outcome": {"type": "string", "enum": ["booked", "duplicate", "rejected"]},
                "problem": nullable({"type": "string", "description": "slug of the problem type when rejected"}),
            })},
    }),
    "TransactionState": obj(["transaction_id", "state"], {"transaction_id": ID, "state": {"type": "string"}}),
    "Health": obj(["status"], {"status": {"type": "string"}}),
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string", "description": "/problems/<slug>; GET it for a description"},
            "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"},
        },
        "additionalProperties": True,
        "description": "RFC 9457 problem details; extension members come from the ledger (e.g. available)",
    },
    "ProblemType": obj(["type", "slug", "title", "status"], {
        "type": {"type": "string"}, "slug": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "sqlstate": nullable({"type": "string"}), "source": {"type": "string"},
    }),
}

# Request schema of each operation (operationId -> component name); path parameters below.
REQUEST_BODIES = {
    "register": "RegisterRequest",
    "syncTag": "TagSyncRequest",
    "reserve": "ReserveRequest",
    "topup": "TopupRequest",
    "refund": "RefundRequest",
    "replicate": "TransactionsRequest",
}
PATH_PARAMETERS: dict[str, dict[str, dict[str, Any]]] = {
    "syncTag": {"uid": UID},
    "getTransaction": {"terminal_tx_number": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}},
    "getReceipt": {"terminal_tx_number": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}},
    "getProblemType": {"slug": {"type": "string", "pattern": "^[a-z][a-z-]*$"}},
}

PROBLEM_DESCRIPTIONS = {
    400: "validation: malformed JSON, missing or mistyped fields, bad values",
    401: "unauthorized: missing, stale or wrong signature, or an unknown assignment",
    402: "insufficient-balance (member available)",
    403: "tag-blocked, registration-code-invalid",
    404: "not-found",
    405: "method-not-allowed",
    409: "invalid-transition, tag-not-active, wrong-position, idempotency-request-running",
    413: "payload-too-large: more than 64 KiB",
    415: "unsupported-media-type: the body must be application/json",
    422: "amount-mismatch, unknown-product, price-mismatch, max-balance-exceeded, topup-out-of-bounds, "
         "idempotency-conflict, idempotency-key-reused",
    500: "internal",
    503: "not-ready: the database could not answer; retry",
}


def _problem_responses(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {
            "description": PROBLEM_DESCRIPTIONS[status],
            "content": {"application/problem+json": {"schema": ref("Problem")}},
        }
        for status in statuses
    }


def _json(status: int, description: str, schema: str) -> dict[str, Any]:
    return {str(status): {"description": description, "content": {"application/json": {"schema": ref(schema)}}}}


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
    "description": "A repeat with the same key and body returns the stored answer (header Idempotency-Replayed); "
                   "the same key with another body is 422 idempotency-key-reused; a repeat while the first is "
                   "running is 409 idempotency-request-running. Keys are scoped to the caller (the assignment, "
                   "or all registrations) and expire after 24 hours.",
}

COMMON = (400, 401, 405, 413, 415, 500, 503)
SIGNED_GET = (400, 401, 404, 405, 500, 503)


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(name)}}}


def _path_params(operation_id: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": schema}
            for name, schema in PATH_PARAMETERS.get(operation_id, {}).items()]


def _paths() -> dict[str, Any]:
    unsigned: list[dict[str, list[str]]] = []
    return {
        "/terminal/v1/register": {"post": {
            "operationId": "register", "summary": "Register a terminal with a one-time code (not signed)",
            "security": unsigned, "parameters": [IDEMPOTENCY_KEY], "requestBody": _body("RegisterRequest"),
            "responses": {**_json(201, "registered: keep the secret, it signs every other call",
                                  "RegisterResponse"),
                          **_problem_responses(400, 403, 405, 409, 413, 415, 422, 500, 503)},
        }},
        "/terminal/v1/config": {"get": {
            "operationId": "getConfig", "summary": "The terminal's event, position and products",
            "responses": {**_json(200, "configuration", "Config"), **_problem_responses(*SIGNED_GET)},
        }},
        "/terminal/v1/tags/{uid}/sync": {"post": {
            "operationId": "syncTag",
            "summary": "First tap: upload the tag's unacknowledged log; get the customer's online info",
            "description": SYNC_RULES,
            "parameters": [*_path_params("syncTag"), IDEMPOTENCY_KEY], "requestBody": _body("TagSyncRequest"),
            "responses": {**_json(200, "online info, and the log entries acknowledged and refused",
                                  "TagSyncResponse"),
                          **_problem_responses(*COMMON, 403, 404, 409, 422)},
        }},
        "/terminal/v1/reserve": {"post": {
            "operationId": "reserve", "summary": "Reserve a purchase at checkout (-> ReservePending)",
            "description": REPEAT_RULE, "requestBody": _body("ReserveRequest"),
            "responses": {**_json(201, "reserved (a repeat returns the first answer)", "ReserveResponse"),
                          **_problem_responses(*COMMON, 402, 403, 404, 409, 422)},
        }},
        "/terminal/v1/topups": {"post": {
            "operationId": "topup", "summary": "Top up a tag (cash or card), at a top-up position",
            "description": REPEAT_RULE, "requestBody": _body("TopupRequest"),
            "responses": {**_json(201, "booked (a repeat returns the first answer)", "BookingResponse"),
                          **_problem_responses(*COMMON, 403, 409, 422)},
        }},
        "/terminal/v1/refunds": {"post": {
            "operationId": "refund", "summary": "Pay leftover money out in cash, at a top-up position",
            "description": REPEAT_RULE, "requestBody": _body("RefundRequest"),
            "responses": {**_json(201, "booked (a repeat returns the first answer)", "BookingResponse"),
                          **_problem_responses(*COMMON, 402, 403, 404, 409, 422)},
        }},
        "/terminal/v1/transactions": {"post": {
            "operationId": "replicate",
            "summary": "Replicate terminal transactions (Committed, Aborted, TerminalConfirmUnknown)",
            "description": "Each entry is judged alone: outcome booked, duplicate, or rejected with the slug of "
                           "its problem. An entry that differs from its reserve in uid, tag number, amount, "
                           "payment or items is rejected with idempotency-conflict, never booked with the "
                           "reserve's content. A Committed sale the backend never reserved (an offline sale) is "
                           "rejected with implausible-offline-charge when its amount exceeds the event's offline "
                           "limit or the tag never received money (unknown to the backend, or new); it is logged "
                           "as a violation for an admin to decide. A body that does not match the schema is "
                           "refused as a whole (400).",
            "requestBody": _body("TransactionsRequest"),
            "responses": {**_json(200, "one result per entry, in order", "TransactionsResponse"),
                          **_problem_responses(*COMMON, 409, 422)},
        }},
        "/terminal/v1/transactions/{terminal_tx_number}": {"get": {
            "operationId": "getTransaction", "summary": "A terminal transaction's id and state (after a lost answer)",
            "parameters": _path_params("getTransaction"),
            "responses": {**_json(200, "the transaction", "TransactionState"), **_problem_responses(*SIGNED_GET)},
        }},
        "/terminal/v1/transactions/{terminal_tx_number}/receipt": {"get": {
            "operationId": "getReceipt",
            "summary": "The printable receipt of a committed transaction of this till (KassenSichV, DSFinV-K QR code)",
            "description": "HTML with seller, times, items, net, tax and gross per VAT rate, total and payment, and "
                           "the TSE signature with its QR code; while unsigned it says \"Signatur ausstehend\", "
                           "or that the TSE failed. 404 for an unknown number or one that is not a committed "
                           "receipt.",
            "parameters": _path_params("getReceipt"),
            "responses": {"200": {"description": "the receipt", "content": {"text/html": {
                "schema": {"type": "string"}}}}, **_problem_responses(*SIGNED_GET)},
        }},
        "/terminal/v1/openapi.json": {"get": {
            "operationId": "getOpenAPI", "summary": "This document (not signed)", "security": unsigned,
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {
                "schema": {"type": "object"}}}}},
        }},
        "/health": {"get": {
            "operationId": "health", "summary": "Alive", "security": unsigned,
            "responses": _json(200, "alive", "Health"),
        }},
        "/health/ready": {"get": {
            "operationId": "ready", "summary": "Database reachable and migrations current", "security": unsigned,
            "responses": {**_json(200, "ready", "Health"), **_problem_responses(503)},
        }},
        "/problems/{slug}": {"get": {
            "operationId": "getProblemType", "summary": "What a problem type means", "security": unsigned,
            "parameters": _path_params("getProblemType"),
            "responses": {**_json(200, "the problem type", "ProblemType"), **_problem_responses(400, 404)},
        }},
    }


SECURITY_SCHEMES = {
    "assignment": {"type": "apiKey", "in": "header", "name": signing.HEADER_ASSIGNMENT,
                   "description": "the assignment id returned by register"},
    "timestamp": {"type": "apiKey", "in": "header", "name": signing.HEADER_TIMESTAMP,
                  "description": f"Unix seconds, within {signing.MAX_SKEW_S} s of the server's clock"},
    "signature": {"type": "apiKey", "in": "header", "name": signing.HEADER_SIGNATURE,
                  "description": "base64 of HMAC-SHA256 keyed with the base64-decoded secret, over "
                                 "METHOD + \"\\n\" + path-with-query (as sent) + \"\\n\" + timestamp + \"\\n\" + "
                                 "hex(SHA-256(raw body))"},
}


def build_document(problem_types: list[ProblemType] | None = None) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document; ``problem_types`` are listed in its description."""
    listing = "".join(f"\n- `/problems/{pt.slug}` ({pt.status}): {pt.title}" for pt in problem_types or [])
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Festpay terminal API",
            "version": "1",
            "description": "The terminal API of SPEC §7. JSON bodies (at most 64 KiB), amounts in integer cents, "
                           "times RFC 3339 UTC. Every call but register and this document is signed with the "
                           "three X-Festpay-* headers. Errors are RFC 9457 application/problem+json with a "
                           "stable type:" + listing,
        },
        "servers": [{"url": "/"}],
        "security": [{"assignment": [], "timestamp": [], "signature": []}],
        "paths": _paths(),
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
    }


DOCUMENT_KEY = web.AppKey("openapi_document", dict)


async def openapi_document(request: web.Request) -> web.Response:
    """GET /terminal/v1/openapi.json."""
    doc = request.app.get(DOCUMENT_KEY)
    if doc is None:
        doc = build_document(request.app[REGISTRY_KEY].all())
    return web.json_response(doc)
