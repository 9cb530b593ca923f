"""The OpenAPI conventions of the settlement service, in one place (``docs/openapi.md``).

A route declares what it can refuse with :func:`responses` (one :class:`Refusal` per problem
code, with a realistic detail); which token it takes comes from its principal dependency
(``kit/auth.py``: one security scheme per token); its ``operationId`` is its function name
(:func:`operation_id`). :func:`finish_document` then holds every operation to the same rules:

* an operation that takes a token documents 401 ``UNAUTHORIZED``, and one that takes only one
  of the two tokens 403 ``FORBIDDEN`` (the other token); one without a token says so:
  ``security: []``;
* every 4xx/5xx response is ``application/problem+json`` with the one ``Problem`` schema
  (``pact_schema.problem``: RFC 9457 + ``code``, shared with the provider) — FastAPI's
  default 422 ``HTTPValidationError`` is replaced, and an
  operation that takes input documents the 422 and (with a body) the 413 it can get;
* an ``Idempotency-Key`` declared with :func:`idempotency_key` ``required=True`` is
  ``required: true`` (a missing one is refused 400 ``BAD_REQUEST`` by the service, as the
  IETF Idempotency-Key draft asks).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from fastapi import FastAPI, Header
from fastapi.openapi.utils import get_openapi
from pact_schema.problem import Problem
from pydantic import BaseModel

from pact_settlement.kit.errors import PROBLEM_CONTENT_TYPE, settlement_problem

__all__ = [
    "BAD_INPUT",
    "DATABASE_UNAVAILABLE",
    "MISSING_IDEMPOTENCY_KEY",
    "NOT_FOUND",
    "PROBLEM_REF",
    "Refusal",
    "finish_document",
    "idempotency_key",
    "install_openapi",
    "ok",
    "operation_id",
    "responses",
]

PROBLEM_REF: Final = {"$ref": "#/components/schemas/Problem"}
_REQUIRED_MARK: Final = "x-pact-required"
# FastAPI drops every null from the document it generates (exclude_none), examples included,
# and a settlement's `failure_code: null` is part of what the API sends: examples carry this
# stand-in for null (no real value holds a NUL) until finish_document puts the nulls back.
_NULL: Final = "\x00null"
_JSON: Final = "application/json"


_TITLES: Final = {
    400: "Bad request",
    401: "Unauthorized",
    402: "Escrow could not be locked",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Payload too large",
    422: "Unprocessable request",
    503: "Service unavailable",
}
_HEADERS: Final = {
    401: {
        "WWW-Authenticate": {
            "description": 'Bearer realm="pact-settlement"',
            "schema": {"type": "string"},
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds to wait before retrying the same request.",
            "schema": {"type": "integer"},
        }
    },
}


@dataclass(frozen=True)
class Refusal:
    """One problem a route can answer: status, code, when it happens, and a realistic detail."""

    status: int
    code: str
    when: str
    detail: str
    title: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return settlement_problem(
            self.status,
            title=self.title or _TITLES.get(self.status, "Error"),
            detail=self.detail,
            code=self.code,
            extra=self.extra,
        )


_UNAUTHORIZED: Final = Refusal(
    401,
    "UNAUTHORIZED",
    "No bearer token, or not one of this service's",
    "a valid bearer token is required",
)
_FORBIDDEN: Final = Refusal(
    403,
    "FORBIDDEN",
    "The other kind of token",
    "this route takes the provider token; this is the admin token",
)
DATABASE_UNAVAILABLE: Final = Refusal(
    503,
    "DATABASE_UNAVAILABLE",
    "The database is unreachable, frozen, read-only or full, its pool exhausted, a lock wait "
    "or statement too long, or the request's budget (REQUEST_TIMEOUT_S, code "
    "DEADLINE_EXCEEDED) ran out; nothing was kept: resend the same request after Retry-After",
    "the database is unavailable; retry shortly",
    title="Service unavailable",
)
BAD_INPUT: Final = Refusal(
    422,
    "SCHEMA_VALIDATION_FAILED",
    "A path, query, header or body value breaks the wire contract",
    "path.agent_id: Value error, public key must be base58 of 32 bytes (at most 44 "
    "characters), got 45",
)
MISSING_IDEMPOTENCY_KEY: Final = Refusal(
    400,
    "BAD_REQUEST",
    "No Idempotency-Key header, or one longer than 255 characters",
    "an Idempotency-Key header of 1-255 characters is required",
)
NOT_FOUND: Final = Refusal(
    404,
    "NOT_FOUND",
    "No settlement by this settlement id, nor by this intent id",
    "no settlement st_01kb0ybq0g7m4n6p8r0s2t4v6w",
)
_TOO_LARGE: Final = Refusal(
    413,
    "PAYLOAD_TOO_LARGE",
    "The body is larger than MAX_BODY_BYTES",
    "request bodies are limited to 262144 bytes",
)


def ok(description: str, example: Any, *, model: type[BaseModel] | None = None) -> dict[str, Any]:
    """A success response with its example (and, for a status other than the route's own, the
    model its body follows)."""
    response: dict[str, Any] = {
        "description": description,
        "content": {_JSON: {"example": _keep_nulls(example)}},
    }
    if model is not None:
        response["model"] = model
    return response


def _keep_nulls(value: Any) -> Any:
    if value is None:
        return _NULL
    if isinstance(value, dict):
        return {k: _keep_nulls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_keep_nulls(v) for v in value]
    return value


def _restore_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _restore_nulls(item)
    elif isinstance(value, list):
        value[:] = [_restore_nulls(item) for item in value]
    elif value == _NULL:
        return None
    return value


def _problem_response(refusals: list[Refusal]) -> dict[str, Any]:
    status = refusals[0].status
    whens = list(dict.fromkeys(r.when for r in refusals))
    examples: dict[str, Any] = {}
    for refusal in refusals:
        name = refusal.code
        while name in examples:
            name += "_"
        examples[name] = {"summary": refusal.when, "value": refusal.body()}
    response: dict[str, Any] = {
        "description": "; ".join(whens) + ".",
        "content": {PROBLEM_CONTENT_TYPE: {"schema": PROBLEM_REF, "examples": examples}},
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response


def responses(
    *refusals: Refusal | Iterable[Refusal],
    success: dict[int | str, dict[str, Any]] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: its success responses and one problem+json response per
    status, listing each refusal as a named example."""
    flat: list[Refusal] = []
    for item in refusals:
        flat.extend([item] if isinstance(item, Refusal) else item)
    by_status: dict[int, list[Refusal]] = {}
    for refusal in flat:
        by_status.setdefault(refusal.status, []).append(refusal)
    out: dict[int | str, dict[str, Any]] = dict(success or {})
    for status in sorted(by_status):
        out[status] = _problem_response(by_status[status])
    return out


def idempotency_key(description: str, *, required: bool, example: str) -> Any:
    """The ``Idempotency-Key`` header parameter. ``required=True`` declares it required in the
    OpenAPI document; the service itself refuses a missing or empty one with 400
    ``BAD_REQUEST`` (its own problem document, not a 422)."""
    extra = {_REQUIRED_MARK: True} if required else None
    return Header(
        alias="Idempotency-Key",
        description=description,
        max_length=255,
        json_schema_extra=extra,
        examples=[example],
    )


def operation_id(route: Any) -> str:
    """``operationId`` = the endpoint function's name (``create_settlement``): readable,
    stable, and the name generated clients give the call."""
    return str(route.name)


def _fix_parameters(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        if not schema.pop(_REQUIRED_MARK, False):
            continue
        parameter["required"] = True
        # Required, so never null: `str | None` in Python only lets the service answer a
        # missing one with its own 400.
        branches = [b for b in schema.pop("anyOf", []) if b != {"type": "null"}]
        if len(branches) == 1:
            schema.update(branches[0])
        elif branches:
            schema["anyOf"] = branches
        schema["minLength"] = 1


def _add(answers: dict[str, Any], refusal: Refusal) -> None:
    """Document ``refusal`` in ``answers``: a response of its own, or one more example of the
    response its status already has."""
    status = str(refusal.status)
    if status not in answers:
        answers[status] = _problem_response([refusal])
        return
    response = answers[status]
    media = response.get("content", {}).get(PROBLEM_CONTENT_TYPE, {})
    examples = media.setdefault("examples", {})
    if refusal.code not in examples:
        examples[refusal.code] = {"summary": refusal.when, "value": refusal.body()}
        response["description"] = response.get("description", "").rstrip(".") + (
            f"; {refusal.when}."
        )


def _fix_responses(operation: dict[str, Any]) -> None:
    answers: dict[str, Any] = operation.setdefault("responses", {})
    tokens = operation.setdefault("security", [])
    if tokens:
        _add(answers, _UNAUTHORIZED)
        if len(tokens) == 1:
            _add(answers, _FORBIDDEN)
    takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
    default_422 = answers.get("422", {}).get("content", {}).get(_JSON, {}).get("schema", {})
    if default_422.get("$ref", "").endswith("/HTTPValidationError"):
        answers["422"] = _problem_response([BAD_INPUT])
    elif takes_input:
        _add(answers, BAD_INPUT)
    if operation.get("requestBody"):
        _add(answers, _TOO_LARGE)
    operation["responses"] = dict(sorted(answers.items()))


def finish_document(document: dict[str, Any]) -> dict[str, Any]:
    """Hold every operation of a generated document to the conventions above."""
    _restore_nulls(document)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            _fix_parameters(operation)
            _fix_responses(operation)
    document["components"] = dict(sorted(components.items()))
    return document


def install_openapi(app: FastAPI) -> None:
    """Make the app's ``/openapi.json`` the finished document (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            app.openapi_schema = finish_document(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
