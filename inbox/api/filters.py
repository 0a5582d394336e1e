"""Query-string filters of the list endpoints; the queries themselves live in `inbox.selectors`."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from inbox.api.permissions import request_user
from inbox.models import MEDIUM_CHOICES, Session
from inbox.request_checks import MAX_ID, id_from
from inbox.selectors.lists import sessions_unanswered, sessions_waiting_first
from inbox.selectors.replies import templates_approved_on
from inbox.selectors.search import sessions_matching
from inbox.selectors.visibility import channels_visible_to
from integrations.models import Channel, Template

ORDERINGS = [
    ("-last_activity_at", "Newest activity first (the default)"),
    ("last_activity_at", "Oldest activity first"),
    ("waiting", "Unanswered sessions first, longest waiting first; then by activity"),
]


class IdField(forms.IntegerField):
    """An id: a whole number within the database's ids (bigger ones are a 400, not a crash)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=1, max_value=MAX_ID, **kwargs)


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_ID})
class IdFilter(django_filters.NumberFilter):
    """A filter on an integer id."""

    field_class = IdField


@extend_schema_field(OpenApiTypes.INT)
class ChannelChoiceFilter(django_filters.ModelChoiceFilter):
    """A channel id, among the channels the user can see."""


class SessionFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(
        choices=Session.Status.choices,
        label="Status; repeat for several (status=open&status=pending).",
    )
    channel = IdFilter(field_name="channel_id", label="Channel id.")
    medium = django_filters.ChoiceFilter(
        field_name="channel__medium", choices=MEDIUM_CHOICES, label="Channel medium."
    )
    assignee = django_filters.CharFilter(
        method="filter_assignee", label='A user id, "me" or "none" (unassigned).'
    )
    team = IdFilter(field_name="team_id", label="Team id.")
    unanswered = django_filters.BooleanFilter(
        method="filter_unanswered",
        label="true: open sessions whose last message is the customer's; false: the others.",
    )
    q = django_filters.CharFilter(
        method="filter_q", label="Text in the contact's name or phone, or in any message."
    )
    ordering = django_filters.ChoiceFilter(
        choices=ORDERINGS, method="filter_ordering", label="Order of the list."
    )

    class Meta:
        model = Session
        fields: list[str] = []

    def filter_assignee(
        self, queryset: QuerySet[Session], name: str, value: str
    ) -> QuerySet[Session]:
        value = value.strip().lower()
        if value == "me":
            return queryset.filter(assignee_id=request_user(self.request).pk)
        if value == "none":
            return queryset.filter(assignee__isnull=True)
        user_id = id_from(value)
        if user_id is not None:
            return queryset.filter(assignee_id=user_id)
        raise ValidationError({"assignee": ['Give a user id, "me" or "none".']})

    def filter_unanswered(
        self, queryset: QuerySet[Session], name: str, value: bool
    ) -> QuerySet[Session]:
        return sessions_unanswered(queryset, value)

    def filter_q(self, queryset: QuerySet[Session], name: str, value: str) -> QuerySet[Session]:
        return sessions_matching(queryset, value)

    def filter_ordering(
        self, queryset: QuerySet[Session], name: str, value: str
    ) -> QuerySet[Session]:
        if value == "waiting":
            return sessions_waiting_first(queryset)
        return queryset.order_by(value, "-id" if value.startswith("-") else "id")


def _visible_channels(request: Request | None) -> QuerySet[Channel]:
    if request is None:  # schema generation
        return Channel.objects.none()
    return channels_visible_to(request_user(request))


class TemplateFilter(django_filters.FilterSet):
    channel = ChannelChoiceFilter(
        queryset=_visible_channels,
        method="filter_channel",
        label="Channel id: only the templates approved on it.",
    )
    lang = django_filters.CharFilter(lookup_expr="iexact", label="Language, e.g. en_US.")

    class Meta:
        model = Template
        fields: list[str] = []

    def filter_channel(
        self, queryset: QuerySet[Template], name: str, value: Channel | None
    ) -> QuerySet[Template]:
        return templates_approved_on(queryset, value) if value is not None else queryset
