"""The inbox pages: the list, a conversation, and the partials htmx and live updates fetch.

`/` is the list and `/s/<id>/` the list with a conversation open; both are whole pages that work
without JavaScript. htmx asks for the conversation alone (HX-Target: conversation) when an agent
opens a row, and the live script fetches the list region, new thread items and changed
messages as events arrive.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from inbox import live
from inbox.models import Message, Session, SessionAction
from inbox.request_checks import id_from
from inbox.selectors.changes import session_list_stamp, session_thread_stamp
from inbox.selectors.contacts import (
    contact_identities_visible,
    contact_sessions_other,
    identity_opt_out,
    opt_out_reason,
)
from inbox.selectors.labels import contact_labels, labels_all
from inbox.selectors.lists import (
    INBOX_VIEWS,
    SORTS,
    STATUS_FILTERS,
    SessionListFilters,
    session_list_page,
    session_view_counts,
)
from inbox.selectors.messages import message_preview_text
from inbox.selectors.replies import canned_replies_for_user, templates_for_session
from inbox.selectors.routing import (
    platform_queues_known,
    skills_known,
    teams_assignable_by,
    users_serving_session,
)
from inbox.selectors.sessions import session_window_from_row
from inbox.selectors.thread import (
    ThreadItem,
    session_before,
    session_in_thread,
    session_newer,
    thread_items_after,
    thread_messages_changed,
    thread_page,
)
from inbox.selectors.visibility import (
    channels_visible_to,
    sessions_visible_to,
    user_sees_everything,
)
from inbox.services.send import template_render
from inbox.services.sessions_local import (
    session_mark_read,
    session_reopen_refusal,
    sessions_kept_here,
)
from inbox.views.common import (
    PAGE_SIZE,
    HtmxHttpRequest,
    WindowView,
    filters_from,
    filters_query,
    page_count,
    page_number,
    request_user,
    session_for_page,
    session_url,
    vary_on_htmx,
    wants_partial,
    window_view,
)
from inbox.views.composer import (
    canned_reply_render,
    channel_offers,
    compose_mode,
    composer_state,
    reply_blocked,
    template_choice,
    template_form_fields,
    template_prefill,
)
from integrations.base import Capability, Medium, MessageType
from integrations.models import Template
from integrations.registry import get_provider

# --- The list ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row of the inbox list."""

    session: Session
    window: WindowView
    preview: str
    current: bool
    query: str


def list_context(
    request: HtmxHttpRequest, filters: SessionListFilters, *, current: int | None
) -> dict[str, Any]:
    """Return what the list region shows, in a constant number of queries."""
    user = request_user(request)
    counts = session_view_counts(user, filters)
    total = counts[filters.view]
    pages = page_count(total)
    page = min(page_number(request), pages)
    sessions = session_list_page(
        user,
        filters,
        offset=(page - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
        keep=current,
        matching=total,
    )
    now = timezone.now()
    query = filters_query(filters, page=page)
    rows = [
        Row(
            session=s,
            window=window_view(session_window_from_row(s, now=now), now=now),
            preview=message_preview_text(s.last_message) if s.last_message else "",
            current=s.pk == current,
            query=query,
        )
        for s in sessions
    ]
    has_teams = user.teams.exists()
    views = [
        {
            "key": key,
            "label": label,
            "count": counts[key],
            "query": filters_query(filters, view=key),
            "current": key == filters.view,
        }
        for key, label in INBOX_VIEWS.items()
        if key != "teams" or has_teams
    ]
    first = (page - 1) * PAGE_SIZE + 1 if total else 0
    return {
        "filters": filters,
        "query": query,
        "rows": rows,
        "views": views,
        "total": total,
        "page": page,
        "pages": pages,
        "first": first,
        "last": min(page * PAGE_SIZE, total),
        "previous_query": filters_query(filters, page=page - 1) if page > 1 else None,
        "next_query": filters_query(filters, page=page + 1) if page < pages else None,
        "current_id": current,
        "list_base": session_url(current) if current else reverse("inbox:index"),
    }


def _medium_label(medium: str) -> str:
    try:
        return Medium(medium).name.title()
    except ValueError:
        return medium


def filter_options(request: HtmxHttpRequest) -> dict[str, Any]:
    """Return the choices of the list's filter form."""
    user = request_user(request)
    channels = list(channels_visible_to(user).order_by("name", "id"))
    mediums = sorted({c.medium for c in channels})
    return {
        "status_choices": STATUS_FILTERS,
        "sort_choices": SORTS,
        "channel_choices": channels,
        "medium_choices": [(m, _medium_label(m)) for m in mediums],
        "team_choices": list(teams_assignable_by(user)),
        "label_choices": list(labels_all()),
    }


# --- A conversation ---------------------------------------------------------------------------


def _decorate(
    items: list[ThreadItem], session: Session, window: WindowView, *, actionable: bool = True
) -> None:
    """Say on each failed or unconfirmed outbound message which recovery the thread offers (none on an
    earlier session's messages shown above a separator: those are history)."""
    codes = get_provider(session.account.kind).window_error_codes
    for item in items:
        message = item.obj
        if item.kind != "message":
            continue
        if message.status == Message.Status.UNCONFIRMED:
            # Send again: not while the window is closed (a template is a new message then).
            is_template = message.type == MessageType.TEMPLATE
            message.can_retry = actionable and (is_template or not window.is_closed)
            continue
        if message.status != Message.Status.FAILED:
            continue
        replaced = bool(message.replaced_by.all())
        is_template = message.type == MessageType.TEMPLATE
        window_refused = message.error_code in codes or window.is_closed
        message.can_retry = actionable and not replaced and (is_template or not window_refused)
        message.can_resend_as_template = (
            actionable and not replaced and not is_template and window_refused
        )
        message.was_replaced = replaced


def thread_context(
    session: Session, window: WindowView, items: list[ThreadItem], *, actionable: bool = True
) -> dict[str, Any]:
    """Return what the thread template needs besides its items."""
    _decorate(items, session, window, actionable=actionable)
    return {"items": items}


def conversation_context(
    request: HtmxHttpRequest, session: Session, filters: SessionListFilters
) -> dict[str, Any]:
    """Return what the conversation pane (header, thread, composer, contact panel) shows."""
    user = request_user(request)
    window = window_view(session_window_from_row(session))
    before = _message_param(session, request.GET.get("before"))
    page = thread_page(session, before=before)
    templates = picker_templates(user, session)
    replaces = _message_param(session, request.GET.get("replaces"))
    compose = "template" if replaces is not None else request.GET.get("compose", "")
    chosen = template_choice(templates, request.GET.get("template"))
    query = filters_query(filters)
    return {
        "session": session,
        "contact": session.contact,
        "window": window,
        "query": query,
        **older_context(session, page.older_than),
        "showing_older": before is not None,
        **thread_context(session, window, page.items),
        **composer_context(request, session, window, templates, compose, chosen, replaces),
        **actions_context(request, session),
        **panel_context(request, session),
    }


def picker_templates(user: Any, session: Session) -> list[Template]:
    """Return the templates the picker offers: approved on the channel, the contact's
    language (then its language family) first."""
    templates = templates_for_session(user, session)
    lang = (session.contact.language or "").lower()
    family = lang.split("_")[0]

    def rank(template: Template) -> tuple[int, str, str]:
        code = template.lang.lower()
        first = 0 if lang and code == lang else 1 if family and code.split("_")[0] == family else 2
        return (first, code, template.code)

    return sorted(templates, key=rank)


def _message_param(session: Session, value: str | None) -> Message | None:
    try:
        message_id = int(value or "")
    except ValueError:
        return None
    return Message.objects.filter(session=session, pk=message_id).first()


def composer_context(
    request: HtmxHttpRequest,
    session: Session,
    window: WindowView,
    templates: list[Template],
    compose: str,
    chosen: Template | None,
    replaces: Message | None,
    *,
    body: str = "",
    error: str = "",
    template_values: dict[str, str] | None = None,
    template_error: str = "",
) -> dict[str, Any]:
    """Return what the composer shows: mode, draft, canned replies, template picker.

    The mode is the one asked for only when it can send (`compose_mode`); a closed session
    says so and points to the session that replaced it, if any.
    """
    user = request_user(request)
    values = template_values if template_values is not None else template_prefill(chosen, session)
    session_closed = session.status == Session.Status.CLOSED
    opted_out_at = identity_opt_out(session.identity)
    offers = channel_offers(session)
    mode = compose_mode(compose, session, window)
    if opted_out_at is not None or (mode == "template" and not offers["can_template"]):
        mode = "note"  # nothing can go to the customer: a note for the team still can
    return {
        **offers,
        "compose": mode,
        "can_reply": not reply_blocked(session, window) and opted_out_at is None,
        "can_template": offers["can_template"] and opted_out_at is None,
        "opted_out": opt_out_reason(opted_out_at) if opted_out_at else "",
        "session_closed": session_closed,
        "composer_state": composer_state(session, window, opted_out=opted_out_at is not None),
        "newer_session": session_newer(session) if session_closed else None,
        "body": body,
        "error": error,
        "idempotency_key": uuid.uuid4().hex,
        "template_key": uuid.uuid4().hex,
        "canned": [
            {
                "shortcut": c.shortcut,
                "title": c.title,
                "body": canned_reply_render(c, session, user),
            }
            for c in canned_replies_for_user(user)
        ],
        "templates": templates,
        "template": chosen,
        "template_fields": template_form_fields(chosen, values),
        "template_preview": template_render(chosen, values) if chosen else "",
        "template_error": template_error,
        "replaces": replaces,
    }


def actions_context(request: HtmxHttpRequest, session: Session) -> dict[str, Any]:
    """Return what the action bar offers this user on this session."""
    user = request_user(request)
    supervisor = user_sees_everything(user)
    provider = get_provider(session.account.kind)
    return {
        "is_supervisor": supervisor,
        "can_reopen": not session_reopen_refusal(session),
        # (Where the platform keeps no sessions, resolving is ours alone.)
        "resolve_here": sessions_kept_here(session),
        "assignable_users": list(users_serving_session(session)) if supervisor else [],
        "assignable_teams": list(teams_assignable_by(user)),
        # What the platform can do (integrations.base.Capability): nothing else is offered.
        "can": {c.value: provider.can(c) for c in Capability},
        "all_labels": list(labels_all()),
        "session_label_ids": {label.pk for label in session.labels.all()},
        "queues_known": platform_queues_known(),
        "skills_known": skills_known(),
        "actions_pending": list(
            SessionAction.objects.filter(
                session=session,
                state__in=[SessionAction.State.PENDING, SessionAction.State.RUNNING],
            ).order_by("created_at")
        ),
    }


def panel_context(request: HtmxHttpRequest, session: Session) -> dict[str, Any]:
    """Return what the contact panel shows."""
    user = request_user(request)
    # The platform's own list (the provider's), for the language picker.
    languages = get_provider(session.account.kind).contact_languages
    current = session.contact.language
    return {
        "languages": languages,
        "language_unlisted": bool(current) and all(lang.code != current for lang in languages),
        "identities": contact_identities_visible(user, session),
        "other_sessions": contact_sessions_other(user, session),
        "contact_labels": contact_labels(session, user),
    }


def live_context() -> dict[str, Any]:
    """Return the live-update attributes the page's <body> carries (see static/inbox/live.js)."""
    enabled = live.enabled()
    return {"live_mode": "sse" if enabled else "poll", "live_last": live.latest_id()}


# --- Views ------------------------------------------------------------------------------------


@login_required
@require_GET
def inbox_page(request: HtmxHttpRequest, session_id: int | None = None) -> HttpResponse:
    """Show the inbox: the list, and the conversation when one is open."""
    user = request_user(request)
    # The stream position first: a change committed while this page is being read then still
    # reaches it as an event, instead of falling between the page and the stream.
    live_attributes = live_context()
    filters = filters_from(request)
    session = session_for_page(request, session_id) if session_id is not None else None
    if session is not None:
        # Opening a session marks it read (for everyone: the count is the session's).
        session_mark_read(session, by=user)
    if wants_partial(request) and request.htmx.target == "conversation":
        if session is None:
            empty = {"partial": True}
            return vary_on_htmx(render(request, "inbox/_conversation_empty.html", empty))
        partial = {**conversation_context(request, session, filters), "partial": True}
        return vary_on_htmx(render(request, "inbox/_conversation.html", partial))
    context: dict[str, Any] = {
        **list_context(request, filters, current=session.pk if session else None),
        **filter_options(request),
        **live_attributes,
        "session": session,
    }
    if session is not None:
        context.update(conversation_context(request, session, filters))
    return vary_on_htmx(render(request, "inbox/inbox.html", context))


@login_required
@require_GET
def list_partial(request: HtmxHttpRequest) -> HttpResponse:
    """Return the list region (view tabs with counts, rows, pagination) for a refresh."""
    filters = filters_from(request)
    context = list_context(request, filters, current=id_from(request.GET.get("current")))
    return vary_on_htmx(render(request, "inbox/_list.html", context))


def older_context(shown: Session, older_than: int | None) -> dict[str, Any]:
    """Return where the thread's "older" link leads from the top of `shown`'s messages: its
    older messages, else the customer's previous session on the channel, else nowhere.

    (The previous session is looked up either way, so a page's queries stay the same however
    many messages it has.)
    """
    previous = session_before(shown)
    if older_than is not None:
        return {"older_than": older_than, "older_in": shown.pk}
    return {"older_than": None, "older_in": previous.pk if previous is not None else None}


@login_required
@require_GET
def thread_older(request: HtmxHttpRequest, session_id: int) -> HttpResponse:
    """Return the thread items before a message (scrolling up), with the next "older" link.

    `in` names an earlier session of the same thread: its messages before `before`, or, with
    no `before`, its latest ones followed by the separator from the session after it.
    """
    session = session_for_page(request, session_id)
    source: Session | None = session
    if request.GET.get("in") not in (None, "", str(session.pk)):
        source = session_in_thread(session, _int(request.GET.get("in")))
        if source is None:
            raise Http404("No such session in this conversation.")
    assert source is not None
    before = _message_param(source, request.GET.get("before"))
    if before is None and source.pk == session.pk:
        raise Http404("No such message.")
    page = thread_page(source, before=before)
    window = window_view(session_window_from_row(session))
    context = {
        "session": session,
        "window": window,
        **older_context(source, page.older_than),
        "query": filters_query(filters_from(request)),
        **thread_context(source, window, page.items, actionable=source.pk == session.pk),
    }
    if before is None:
        # The top of the session after `source`: the separator sits below `source`'s items.
        context["separator"] = {"previous": source, "next": session_newer(source)}
    return render(request, "inbox/_thread_older.html", context)


def _int(value: str | None) -> int:
    try:
        return max(int(value or "0"), 0)
    except ValueError:
        return 0


def _shown_statuses(value: str) -> dict[int, str]:
    shown: dict[int, str] = {}
    for part in value.split(",")[:500]:
        message_id, _, status = part.partition(".")
        if (number := id_from(message_id)) is not None and status:
            shown[number] = status
    return shown


@login_required
@require_GET
def thread_updates(request: HtmxHttpRequest, session_id: int) -> HttpResponse:
    """Return what changed in an open conversation since the page last looked.

    The page says what it shows: the newest message, note and timeline ids (`m`, `n`, `t`), the
    status of the messages whose delivery may still move (`st=12.sent,13.queued`) and its
    window state (`w`). The answer holds the new items, the changed messages, a fresh header and
    contact panel, and a fresh composer only when the window opened or closed meanwhile.
    """
    user = request_user(request)
    session = session_for_page(request, session_id)
    if request.GET.get("seen") == "1":
        session_mark_read(session, by=user)
    filters = filters_from(request)
    window = window_view(session_window_from_row(session))
    items = thread_items_after(
        session,
        message_id=_int(request.GET.get("m")),
        note_id=_int(request.GET.get("n")),
        event_id=_int(request.GET.get("t")),
    )
    changed = thread_messages_changed(session, _shown_statuses(request.GET.get("st", "")))
    changed_items = [ThreadItem("message", m.sent_at, m) for m in changed]
    _decorate(items + changed_items, session, window)
    context: dict[str, Any] = {
        "session": session,
        "contact": session.contact,
        "window": window,
        "query": filters_query(filters),
        "items": items,
        "changed": changed_items,
        **actions_context(request, session),
        **panel_context(request, session),
    }
    opted_out = identity_opt_out(session.identity) is not None
    if request.GET.get("w") not in (None, composer_state(session, window, opted_out=opted_out)):
        templates = picker_templates(user, session)
        context["composer"] = True
        context.update(composer_context(request, session, window, templates, "", None, None))
    return render(request, "inbox/_thread_updates.html", context)


@login_required
@require_GET
def template_fields(request: HtmxHttpRequest, session_id: int) -> HttpResponse:
    """Return the template picker's form for one template, prefilled from the contact."""
    user = request_user(request)
    session = session_for_page(request, session_id)
    templates = picker_templates(user, session)
    chosen = template_choice(templates, request.GET.get("template"))
    values = template_prefill(chosen, session)
    context = {
        "session": session,
        "template": chosen,
        "template_fields": template_form_fields(chosen, values),
        "template_preview": template_render(chosen, values) if chosen else "",
    }
    return render(request, "inbox/_template_fields.html", context)


@login_required
@require_GET
def changes_stamp(request: HtmxHttpRequest) -> JsonResponse:
    """Answer a polling page cheaply: stamps that change when its list or thread would."""
    user = request_user(request)
    answer = {"list": session_list_stamp(user)}
    session_id = _int(request.GET.get("session"))
    if session_id:
        session = sessions_visible_to(user).filter(pk=session_id).first()
        answer["thread"] = session_thread_stamp(session) if session is not None else ""
    return JsonResponse(answer)
