"""The OpenAPI schema's error answers, stated once for every operation (drf-spectacular).

Each operation documents what it returns on success and its own refusals (a 422 with the
service's reason, a 403 with the assignment rule) where it is declared; the answers every
operation can give are added here, with the shape `config.api.exception_handler` sends, so that
the schema lists every status an operation returns (schemathesis checks that it does).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def error_responses(method: str, has_body: bool) -> dict[int, OpenApiResponse]:
    """Return the error answers an operation can give besides its own refusals."""
    from inbox.api.serializers import ErrorSerializer, ValidationErrorSerializer

    errors = {
        400: OpenApiResponse(
            ValidationErrorSerializer,
            description="The request is not valid: `fields` names each problem (a body field, "
            "a query parameter or a header, e.g. text with a NUL character, which cannot be "
            "stored). A body that is not JSON at all has no `fields`.",
        ),
        401: OpenApiResponse(ErrorSerializer, description="No credentials, or wrong ones."),
        404: OpenApiResponse(
            ErrorSerializer,
            description="Not found, or not yours to see; also a page or cursor that does not "
            "exist.",
        ),
        406: OpenApiResponse(
            ErrorSerializer, description="The Accept header asks for something else than JSON."
        ),
        429: OpenApiResponse(
            ErrorSerializer,
            description="Too many requests with unknown tokens from this address: wait the "
            "seconds the Retry-After header gives.",
        ),
    }
    if method in UNSAFE_METHODS:
        errors[403] = OpenApiResponse(
            ErrorSerializer,
            description="Refused: e.g. a request signed in with a session cookie without its "
            "CSRF token.",
        )
    if has_body:
        errors[415] = OpenApiResponse(ErrorSerializer, description="The body is not JSON.")
    return errors


class ApiAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, with the error answers every operation can give."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        has_body = self.method in UNSAFE_METHODS and self.get_request_serializer() is not None
        for code, response in error_responses(self.method, has_body).items():
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(
                    response, str(code), direction=direction
                )
        return responses
