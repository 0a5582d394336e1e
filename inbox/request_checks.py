"""What every request's input must be before a view reads it: text the database can store.

PostgreSQL text and jsonb hold neither NUL (U+0000) nor a lone UTF-16 surrogate (U+D800 to
U+DFFF: JSON's `"\\ud800"` escape gives Python such a string, and UTF-8 cannot encode it). Such a
value used to travel into a query or an INSERT and fail there as a 500, from a search box, a form
field, a header or a nested JSON value alike. So they are refused at the door, with a 4xx that
names the field, instead of in every view:

- `RequestTextMiddleware` checks the headers, the query string and the form fields (names,
  values and file names) of every request except the platforms' webhook, which keeps what a
  platform sends and cleans it at ingest;
- `inbox.api.parsers.CheckedJSONParser` checks every key, string and number of an API body, at
  any depth, with `json_problems`.

`id_from` is the one way the pages read an id from a query or a form: ASCII digits within
PostgreSQL's bigint, anything else is "no such thing".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.deprecation import MiddlewareMixin
from django_htmx.http import reswap, retarget
from django_htmx.middleware import HtmxDetails

MAX_JSON_DEPTH = 32
MAX_ID = 2**63 - 1  # PostgreSQL bigint
# Apps whose views parse and keep raw input themselves (the webhook stores every callback).
EXEMPT_APPS = frozenset({"integrations"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})

_REFUSED = re.compile("[\x00\ud800-\udfff]")

Problem = tuple[str, str]


def text_problem(value: str) -> str:
    """Return why the database cannot store `value`, or "" when it can."""
    found = _REFUSED.search(value)
    if found is None:
        return ""
    if found.group() == "\x00":
        return "contains a NUL character (U+0000), which cannot be stored"
    return f"contains a lone surrogate (U+{ord(found.group()):04X}), which is not valid text"


def shown(name: str) -> str:
    """Return a name fit to show back: refused characters written as escapes."""
    return _REFUSED.sub(lambda m: f"\\u{ord(m.group()):04x}", name)


def json_problems(value: Any, path: str = "", depth: int = 0) -> Iterator[Problem]:
    """Yield (path, problem) for each key, string or number of parsed JSON that cannot be
    stored, and for nesting deeper than MAX_JSON_DEPTH (reported once, not walked further)."""
    if depth > MAX_JSON_DEPTH:
        yield path, f"is nested deeper than {MAX_JSON_DEPTH} levels"
    elif isinstance(value, str):
        if problem := text_problem(value):
            yield path, problem
    elif isinstance(value, float):
        if not math.isfinite(value):
            yield path, "is not a finite number"
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if problem := text_problem(str(key)):
                yield child, f"has a name that {problem}"
            yield from json_problems(item, child, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from json_problems(item, f"{path}[{index}]", depth + 1)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def json_problems_by_field(problems: Iterable[Problem]) -> dict[str, list[str]]:
    """Group JSON problems as the API's `fields`: top-level name -> ["path inside: what.", ...]."""
    fields: dict[str, list[str]] = {}
    for path, problem in problems:
        name, _, rest = shown(path).partition(".")
        if not name or name.startswith("["):
            name, rest = "non_field_errors", shown(path)
        fields.setdefault(name, []).append(f"{rest}: {problem}." if rest else _sentence(problem))
    return fields


def id_from(value: object) -> int | None:
    """Return `value` as a database id (ASCII digits, 1 to 2**63 - 1), or None."""
    text = str(value).strip() if value is not None else ""
    if not (0 < len(text) <= 19 and text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if 0 < number <= MAX_ID else None


def _lists(
    what: str, items: Iterable[tuple[str, list[Any]]], value: Callable[[Any], str] = str
) -> Iterator[Problem]:
    for name, values in items:
        if problem := text_problem(name):
            yield name, f"({what} name) {problem}"
        for item in values:
            if problem := text_problem(value(item)):
                yield name, problem


def request_problems(request: HttpRequest) -> Iterator[Problem]:
    """Yield (name, problem) for each header, query or form value the database cannot store."""
    yield from _lists("header", ((k, [v]) for k, v in request.headers.items()))
    yield from _lists("parameter", request.GET.lists())
    if request.method == "POST" and request.content_type in FORM_TYPES:
        yield from _lists("field", request.POST.lists())
        yield from _lists("file", request.FILES.lists(), value=lambda f: f.name or "")


def refusal(request: HttpRequest, problems: list[Problem]) -> HttpResponse:
    """Answer input the database cannot store: JSON under /api/, else a page or a flash line."""
    fields: dict[str, list[str]] = {}
    for name, problem in problems:
        fields.setdefault(shown(name), []).append(_sentence(problem))
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"error": "invalid", "detail": "The request is not valid.", "fields": fields},
            status=400,
        )
    name, [first, *_] = next(iter(fields.items()))
    reason = f"Nothing was saved: {name} {first[:1].lower()}{first[1:]}"
    if HtmxDetails(request):
        # 422 is what the pages' htmx config swaps in: the reason lands in the flash region and
        # the form the agent typed in (a reply draft, say) stays as it was.
        response = render(
            request, "inbox/_flash.html", {"text": reason, "level": "error"}, status=422
        )
        return reswap(retarget(response, "#flash"), "innerHTML")
    return render(request, "400.html", {"reason": reason}, status=400)


class RequestTextMiddleware(MiddlewareMixin):
    """Refuse a request whose headers, query or form hold text the database cannot store."""

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: list[Any],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        match = request.resolver_match
        if match is not None and match.app_name in EXEMPT_APPS:
            return None
        problems = list(request_problems(request))
        return refusal(request, problems) if problems else None
