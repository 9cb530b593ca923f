"""The OpenAPI conventions of the provider, in one place (``docs/openapi.md``).

The same rules as the settlement service's document, so one generated client handles both:

* ``operationId`` = the endpoint function's name (:func:`operation_id`);
* every 4xx/5xx response is ``application/problem+json`` with the one ``Problem`` schema
  (``pact_schema.problem``: RFC 9457 + ``code``); FastAPI's default 422 is replaced, and an
  operation that takes parameters documents the 422 it can get;
* every operation says how it is authenticated: the provider takes no bearer token, so
  ``security: []`` everywhere; ``POST /pact`` is authenticated by the envelope's own
  signature (``x-pact-authentication``).

:func:`documented_problem` builds a documented problem response from real problem documents.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pact_schema.problem import PROBLEM_MEDIA_TYPE, Problem

from pact_provider.errors import problem_document

__all__ = [
    "PROBLEM_REF",
    "documented_problem",
    "finish_document",
    "install_openapi",
    "operation_id",
]

PROBLEM_REF: Final = {"$ref": "#/components/schemas/Problem"}
_JSON: Final = "application/json"
_BAD_QUERY: Final = problem_document(
    422,
    "REQUEST_VALIDATION_FAILED",
    "query.settlement: Input should be 'required' or 'optional'",
)


def operation_id(route: Any) -> str:
    """``operationId`` = the endpoint function's name (``negotiate``): readable and stable."""
    return str(route.name)


def documented_problem(
    description: str, examples: dict[str, Any], *, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A documented problem response; ``examples`` maps a name to ``{"summary", "value"}``."""
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF, "examples": examples}},
    }
    if headers:
        response["headers"] = headers
    return response


def _fix_operation(operation: dict[str, Any]) -> None:
    answers: dict[str, Any] = operation.setdefault("responses", {})
    default_422 = answers.get("422", {}).get("content", {}).get(_JSON, {}).get("schema", {})
    if default_422.get("$ref", "").endswith("/HTTPValidationError") or (
        operation.get("parameters") and "422" not in answers
    ):
        answers["422"] = documented_problem(
            "A query parameter is not one of the documented values.",
            {"REQUEST_VALIDATION_FAILED": {"summary": "Bad parameter", "value": _BAD_QUERY}},
        )
    operation["responses"] = dict(sorted(answers.items()))
    operation.setdefault("security", [])


def finish_document(
    document: dict[str, Any], *, extra_models: tuple[Any, ...] = ()
) -> dict[str, Any]:
    """Hold every operation of a generated document to the conventions above."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for model in (*extra_models, Problem):
        schemas[model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            _fix_operation(operation)
    return document


def install_openapi(app: FastAPI, *, extra_models: tuple[Any, ...] = ()) -> None:
    """Make the app's ``/openapi.json`` the finished document (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = finish_document(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                    tags=app.openapi_tags,
                ),
                extra_models=extra_models,
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
