"""The API's body parser: JSON the database can store, or a 400 that says where it is not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser

from inbox.request_checks import MAX_JSON_DEPTH, json_problems, json_problems_by_field


class CheckedJSONParser(JSONParser):
    """Parse a JSON body and refuse, before any view sees it, what cannot be stored.

    Every key and string at any depth is checked for NUL and lone surrogates, every number for
    being finite (`1e999` parses as infinity), and the nesting for depth: one check for every
    field of every operation, the free-form ones (`template_data`, `contact_cards`, a route's
    `params`) included. The answer is the API's validation error, naming the field and the path
    inside it: {"error": "invalid", "fields": {"params": ["note.text: Contains a NUL ..."]}}.
    """

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(
                f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels."
            ) from None
        problems = list(json_problems(data))
        if problems:
            raise ValidationError(json_problems_by_field(problems))
        return data
