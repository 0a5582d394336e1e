"""The inbox list's query-string grammar, one for the pages and the API.

`SessionListFilterSet` reads a query string into `SessionListFilters`; the selectors in
`inbox.selectors.lists` turn those into one condition and one order, whoever asked. The API
answers a bad value with a 400 (django-filter's validation, through DRF); the pages drop it and
keep the default (`SessionListFilterSet.lenient`), so an old or hand-edited link still opens.

The names are the union of both sides': `status` (repeatable, with "active" and "any"), `view`,
`assignee` (a user id, "me" or "none"), `channel`, `medium`, `team`, `label`, `unanswered`,
`q`, and the order as `sort` (the pages' names) or `ordering` (the API's names since v1).
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, ClassVar

import django_filters
from django import forms
from django.db.models import QuerySet
from django.http import QueryDict
from drf_spectacular.utils import extend_schema_field

from accounts.models import User
from inbox.models import MEDIUM_CHOICES, Session
from inbox.request_checks import MAX_ID, id_from
from inbox.selectors.lists import (
    INBOX_VIEWS,
    LIST_SORTS,
    STATUS_FILTERS,
    SessionListFilters,
    sessions_listed,
)

SEARCH_MAX_CHARS = 200

# The API's order names (v1), as sorts of the list.
ORDERINGS: dict[str, tuple[str, str]] = {
    "-last_activity_at": ("activity", "Newest activity first (the default)"),
    "last_activity_at": ("oldest", "Oldest activity first"),
    "waiting": ("waiting", "Unanswered sessions first, longest waiting first; then by activity"),
}

# The pages show open and pending sessions unless told otherwise; the API every status.
PAGE_DEFAULTS = SessionListFilters()
API_DEFAULTS = SessionListFilters(statuses=("any",))


class IdField(forms.IntegerField):
    """An id: a whole number within the database's ids (bigger ones are a 400, not a crash)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=1, max_value=MAX_ID, **kwargs)


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_ID})
class IdFilter(django_filters.NumberFilter):
    """A filter on an integer id."""

    field_class = IdField


class AssigneeField(forms.CharField):
    """A user id, "me" or "none"."""

    def clean(self, value: Any) -> str:
        text = str(super().clean(value)).strip().lower()
        if text in ("", "me", "none") or id_from(text) is not None:
            return text
        raise forms.ValidationError('Give a user id, "me" or "none".', code="invalid")


@extend_schema_field({"type": "string", "pattern": r"^(me|none|[1-9][0-9]{0,18})$"})
class AssigneeFilter(django_filters.CharFilter):
    """A filter on the assignee."""

    field_class = AssigneeField


class SessionListFilterSet(django_filters.FilterSet):
    """Read the list's filters; `filters()` gives them, `qs` the sessions they select."""

    defaults: ClassVar[SessionListFilters] = PAGE_DEFAULTS

    status = django_filters.MultipleChoiceFilter(
        choices=list(STATUS_FILTERS.items()),
        label='Status; repeat for several (status=open&status=pending). "active": open or '
        'pending, "any": every status.',
    )
    view = django_filters.ChoiceFilter(
        choices=list(INBOX_VIEWS.items()),
        label='"mine": assigned to you, "unassigned", "teams": your teams\', "all" (default).',
    )
    channel = IdFilter(field_name="channel_id", label="Channel id.")
    medium = django_filters.ChoiceFilter(
        field_name="channel__medium", choices=MEDIUM_CHOICES, label="Channel medium."
    )
    assignee = AssigneeFilter(label='A user id, "me" or "none" (unassigned).')
    team = IdFilter(field_name="team_id", label="Team id.")
    label = IdFilter(field_name="labels", label="Label id.")
    unanswered = django_filters.BooleanFilter(
        label="true: open sessions whose last message is the customer's; false: the others."
    )
    q = django_filters.CharFilter(
        label="Text in the contact's name or phone, or in any message (the first "
        f"{SEARCH_MAX_CHARS} characters count)."
    )
    sort = django_filters.ChoiceFilter(
        choices=list(LIST_SORTS.items()), label="Order of the list (wins over `ordering`)."
    )
    ordering = django_filters.ChoiceFilter(
        choices=[(key, text) for key, (_, text) in ORDERINGS.items()],
        label="Order of the list, by its v1 names.",
    )

    class Meta:
        model = Session
        fields: list[str] = []

    @classmethod
    def lenient(cls, query: QueryDict, user: User) -> SessionListFilters:
        """Read `query` keeping the default for every value that is not understood."""
        filterset = cls(query, queryset=Session.objects.none())
        filterset.is_valid()
        return filterset.filters_for(user)

    def filters_for(self, user: User | None) -> SessionListFilters:
        """Return the filters the valid values say (defaults for the missing or invalid)."""
        data: dict[str, Any] = getattr(self.form, "cleaned_data", {})
        changes: dict[str, Any] = {}
        if data.get("status"):
            changes["statuses"] = tuple(data["status"])
        for name in ("view", "medium", "sort"):
            if data.get(name):
                changes[name] = data[name]
        if data.get("ordering") and not data.get("sort"):
            changes["sort"] = ORDERINGS[data["ordering"]][0]
        for name in ("channel", "team", "label"):
            if data.get(name) is not None:
                changes[name] = int(data[name])
        if data.get("unanswered") is not None:
            changes["unanswered"] = data["unanswered"]
        if data.get("q"):
            changes["q"] = data["q"].strip()[:SEARCH_MAX_CHARS]
        assignee = data.get("assignee") or ""
        if assignee == "none":
            changes["unassigned"] = True
        elif assignee == "me":
            changes["assignee"] = user.pk if user is not None else None
        elif assignee:
            changes["assignee"] = id_from(assignee)
        return replace(self.defaults, **changes)

    def filter_queryset(self, queryset: QuerySet[Session]) -> QuerySet[Session]:
        user = getattr(self.request, "user", None)
        if not isinstance(user, User):
            return queryset.none()
        return sessions_listed(queryset, self.filters_for(user), user)


def filters_query_pairs(filters: SessionListFilters) -> list[tuple[str, Any]]:
    """Return the query-string pairs that read back as `filters` (the pages' defaults left out)."""
    pairs: list[tuple[str, Any]] = []
    for field in fields(SessionListFilters):
        value = getattr(filters, field.name)
        if value == getattr(PAGE_DEFAULTS, field.name) or value in (None, ""):
            continue
        if field.name == "statuses":
            pairs += [("status", status) for status in value]
        elif field.name == "unassigned":
            pairs.append(("assignee", "none"))
        elif field.name == "unanswered":
            pairs.append(("unanswered", "true" if value else "false"))
        else:
            pairs.append((field.name, value))
    return pairs
