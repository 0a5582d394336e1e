"""Query-string filters of the list endpoints: the session list speaks `inbox.filters`."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework.request import Request

from inbox.api.permissions import request_user
from inbox.filters import API_DEFAULTS, SessionListFilterSet
from inbox.selectors.replies import templates_approved_on
from inbox.selectors.visibility import channels_visible_to
from integrations.models import Channel, Template


@extend_schema_field(OpenApiTypes.INT)
class ChannelChoiceFilter(django_filters.ModelChoiceFilter):
    """A channel id, among the channels the user can see."""


class SessionFilter(SessionListFilterSet):
    """The session list's filters: the pages' grammar, every status unless told (a bad value
    is a 400 here)."""

    defaults = API_DEFAULTS


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
