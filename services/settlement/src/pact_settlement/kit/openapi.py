"""OpenAPI helpers: document problem+json responses per route."""

from __future__ import annotations

from typing import Any

__all__ = ["AUTH_ERRORS", "problem_doc"]


def problem_doc(description: str, example_code: str, status: int = 0) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/problem+json": {
                "example": {
                    "type": "https://pact.dev/problems/" + example_code.lower().replace("_", "-"),
                    "title": description,
                    "status": status,
                    "detail": "…",
                    "code": example_code,
                }
            }
        },
    }


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_doc("Missing or invalid bearer token", "UNAUTHORIZED", 401),
    403: problem_doc("Wrong kind of token", "FORBIDDEN", 403),
    503: problem_doc(
        "Database unavailable, or the request's budget (REQUEST_TIMEOUT_S) ran out; nothing was "
        "kept: resend the same request after Retry-After",
        "DATABASE_UNAVAILABLE",
        503,
    ),
}
