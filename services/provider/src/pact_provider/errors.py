"""Transport-level errors as RFC 9457 ``application/problem+json``.

Protocol refusals are signed REJECT envelopes (see ``negotiation.service``); these are for what
cannot be answered with a signed message: a body that is not a verifiable envelope, a body too
large or of the wrong type, settlement being unavailable, unknown routes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pact_schema.problem import PROBLEM_MEDIA_TYPE
from pact_schema.problem import problem_document as _problem_document
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from pact_provider.jsonio import json_bytes

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "BadEnvelopeError",
    "PayloadTooLargeError",
    "ProviderError",
    "SettlementUnavailableError",
    "UnsupportedMediaTypeError",
    "install_error_handlers",
    "problem_response",
]

PROBLEM_TYPE_BASE = "urn:pact-provider:problem:"
_log = logging.getLogger(__name__)


class ProviderError(Exception):
    """Base of every error rendered as a problem document."""

    status: int = 400
    code: str = "BAD_REQUEST"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = dict(headers or {})


class BadEnvelopeError(ProviderError):
    """The body is not JSON, not an envelope, or the envelope does not verify."""

    status = 400
    code = "ENVELOPE_MALFORMED"


class PayloadTooLargeError(ProviderError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaTypeError(ProviderError):
    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


class SettlementUnavailableError(ProviderError):
    """Settlement could not be reached in time; the buyer may resend the same ACCEPT."""

    status = 503
    code = "SETTLEMENT_UNAVAILABLE"

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})
        self.retry_after_s = retry_after_s


def problem_document(status: int, code: str, detail: str) -> dict[str, Any]:
    """The provider's problem document (``pact_schema.problem.problem_document``)."""
    return _problem_document(status, code, detail, type_base=PROBLEM_TYPE_BASE)


def problem_response(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        content=json_bytes(problem_document(status, code, detail)),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers or {}),
    )


async def _provider_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProviderError)
    return problem_response(exc.status, exc.code, exc.detail, exc.headers)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    try:
        code = HTTPStatus(exc.status_code).name
    except ValueError:
        code = "HTTP_ERROR"
    return problem_response(exc.status_code, code, str(exc.detail), exc.headers)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return problem_response(422, "REQUEST_VALIDATION_FAILED", str(exc.errors()[:3]))


async def _unexpected(request: Request, exc: Exception) -> Response:
    runtime = getattr(request.app.state, "provider", None)
    if runtime is not None:
        runtime.log.error("http.unhandled_error", exc_info=exc)
    else:
        _log.error("unhandled error", exc_info=exc)
    return problem_response(500, "INTERNAL_ERROR", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    """One handler per error family, all rendering ``application/problem+json``."""
    app.add_exception_handler(ProviderError, _provider_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
