"""The whole inbox state of one account, comparable across accounts (equivalence tests).

Every concrete column of every table an inbound callback writes, with each foreign key
replaced by what names the row it points to (a platform id, a phone, a username), so that
the state one path left can be compared with the state another path left for another
account. Row ids, random public ids and the times rows were written are left out: they differ
by construction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from unittest import mock

from django.db import models

from inbox import live
from inbox.models import (
    Contact,
    ContactIdentity,
    Message,
    MessageReceipt,
    MessageStatusChange,
    Session,
    TimelineEntry,
)
from integrations.models import Channel, ProviderAccount

# What names a row of each table the state points to.
NATURAL_KEYS: dict[type[models.Model], str] = {
    Contact: "phone",
    ContactIdentity: "external_id",
    Session: "external_id",
    Message: "external_id",
    Channel: "external_id",
}
# Columns that say when a row was written, not what the inbox holds; and a timeline line's
# dedupe key, which names the rows it is about by their ids ("opened:<session id>").
WRITTEN_AT = {"id", "created_at", "updated_at", "dedupe_key"}
TABLES: tuple[type[models.Model], ...] = (
    Contact,
    ContactIdentity,
    Session,
    TimelineEntry,
    Message,
    MessageReceipt,
    MessageStatusChange,
)


def _value(row: models.Model, field: models.Field[Any, Any]) -> Any:
    if not field.is_relation:
        value = getattr(row, field.attname)
        return str(value) if isinstance(value, dict | list) else value
    target = getattr(row, field.name)
    if target is None:
        return None
    if isinstance(target, ProviderAccount):
        return "(the account)"
    key = NATURAL_KEYS.get(type(target))
    if key is not None:
        return getattr(target, key)
    return getattr(target, "username", None) or getattr(target, "name", None) or str(target)


def _account_filter(model: type[models.Model]) -> str:
    names = {f.name for f in model._meta.get_fields()}
    if "account" in names:
        return "account"
    return "message__account"


def inbox_state(account: ProviderAccount) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table the inbox keeps for `account`, as sorted tuples."""
    state: dict[str, list[tuple[Any, ...]]] = {}
    for model in TABLES:
        fields = [
            f
            for f in model._meta.concrete_fields
            if f.name not in WRITTEN_AT and not isinstance(f, models.UUIDField)  # random
        ]
        rows = model._default_manager.filter(**{_account_filter(model): account})
        state[model.__name__] = sorted(
            (tuple(_value(row, f) for f in fields) for row in rows),
            key=repr,
        )
    return state


def state_differences(
    one: dict[str, list[tuple[Any, ...]]], other: dict[str, list[tuple[Any, ...]]]
) -> dict[str, tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """The rows that only one of two states has, by table (empty when they are the same)."""
    differences = {}
    for table in one:
        only_one = [row for row in one[table] if row not in other[table]]
        only_other = [row for row in other[table] if row not in one[table]]
        if only_one or only_other:
            differences[table] = (only_one, only_other)
    return differences


@contextlib.contextmanager
def live_events_published() -> Iterator[list[live.Event]]:
    """Collect the live events sent to agents' pages (as if Redis were there)."""
    sent: list[live.Event] = []
    with (
        mock.patch.object(live, "_client", return_value=object()),
        mock.patch.object(live, "send", side_effect=lambda events: sent.extend(events)),
    ):
        yield sent


def live_events_named(events: list[live.Event]) -> list[tuple[str, str, str]]:
    """The events as (type, session's platform id, message's platform id), sorted."""
    sessions = dict(
        Session.objects.filter(pk__in={e.session for e in events}).values_list("pk", "external_id")
    )
    messages = dict(
        Message.objects.filter(pk__in={e.message for e in events if e.message}).values_list(
            "pk", "external_id"
        )
    )
    return sorted(
        (e.type, sessions.get(e.session, "?"), messages.get(e.message, "") if e.message else "")
        for e in events
    )
