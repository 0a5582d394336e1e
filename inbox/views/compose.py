"""Sending from the composer: replies (with an attachment), private notes, templates, retries.

Every form carries an idempotency key made when it was rendered, so a double submit (two
clicks, a resent form after a timeout) sends once. A refusal (closed window, empty text, a file
type we do not send) is shown in the composer with the draft kept: with htmx the composer is
swapped in with status 422, without it the whole page is.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST
from django_htmx.http import trigger_client_event

from inbox.models import Message, Session
from inbox.selectors.sessions import session_window_from_row
from inbox.services.notes import note_add
from inbox.services.refusals import SendRefused
from inbox.services.send import Draft, message_resend_as_template, message_retry, message_send
from inbox.services.uploads import message_send_upload
from inbox.views.common import (
    HtmxHttpRequest,
    back_to_session,
    filters_from,
    flash,
    request_user,
    session_for_page,
    vary_on_htmx,
    wants_partial,
    window_view,
)
from inbox.views.composer import template_choice
from inbox.views.pages import (
    composer_context,
    conversation_context,
    filter_options,
    list_context,
    live_context,
    picker_templates,
)
from integrations.base import MessageType


def _refused(
    request: HtmxHttpRequest, session: Session, *, compose: str, status: int = 422, **composer: Any
) -> HttpResponse:
    """Show the composer again with the reason and the draft (422 unless told otherwise)."""
    user = request_user(request)
    window = window_view(session_window_from_row(session))
    templates = picker_templates(user, session)
    chosen = composer.pop("template", None)
    replaces = composer.pop("replaces", None)
    if wants_partial(request):
        context = composer_context(
            request, session, window, templates, compose, chosen, replaces, **composer
        )
        context.update(session=session, window=window, query=request.GET.urlencode())
        return vary_on_htmx(render(request, "inbox/_composer.html", context, status=status))
    filters = filters_from(request)
    context = {
        **list_context(request, filters, current=session.pk),
        **filter_options(request),
        **live_context(),
        **conversation_context(request, session, filters),
    }
    context.update(
        composer_context(request, session, window, templates, compose, chosen, replaces, **composer)
    )
    return vary_on_htmx(render(request, "inbox/inbox.html", context, status=status))


def _sent(request: HtmxHttpRequest, session: Session, notice: str) -> HttpResponse:
    """Answer a successful send: a fresh composer (htmx) or the session page again."""
    if not wants_partial(request):
        messages.success(request, notice)
        return back_to_session(request, session)
    user = request_user(request)
    window = window_view(session_window_from_row(session))
    templates = picker_templates(user, session)
    # The template form sends no mode: the composer comes back in whatever mode can send now.
    compose = request.POST.get("mode", "")
    context = composer_context(request, session, window, templates, compose, None, None)
    context.update(session=session, window=window, query=request.GET.urlencode(), sent=True)
    response = render(request, "inbox/_composer.html", context)
    return vary_on_htmx(trigger_client_event(response, "sb:changed"))


@login_required
@require_POST
def compose_send(request: HtmxHttpRequest, session_id: int) -> HttpResponse:
    """Send a reply (text, or a file with its caption) or add a private note."""
    user = request_user(request)
    session = session_for_page(request, session_id)
    mode = request.POST.get("mode", "reply")
    body = request.POST.get("body", "")
    key = request.POST.get("idempotency_key", "")
    upload = request.FILES.get("file")
    if mode == "note":
        if upload is not None:
            return _refused(
                request,
                session,
                compose="note",
                body=body,
                error="A private note cannot carry a file; attach it to a reply instead.",
            )
        try:
            note_add(session, body, by=user, idempotency_key=key)
        except SendRefused as exc:
            return _refused(request, session, compose="note", body=body, error=exc.reason)
        return _sent(request, session, "Note added. Only your team sees it.")
    try:
        draft = Draft(type=MessageType.TEXT.value, body=body)
        already = (
            bool(key)
            and Message.objects.filter(
                account_id=session.account_id, idempotency_key=key.strip()[:100]
            ).exists()
        )
        if upload is not None and not already:
            # Stored, then sent; a refused send deletes the file again.
            message_send_upload(session, upload, body.strip(), author=user, idempotency_key=key)
        else:
            message_send(session, draft, author=user, idempotency_key=key)
    except SendRefused as exc:
        return _refused(request, session, compose="reply", body=body, error=exc.reason)
    return _sent(request, session, "Reply queued; its ticks show when it is delivered.")


@login_required
@require_POST
def compose_template(request: HtmxHttpRequest, session_id: int) -> HttpResponse:
    """Send an approved template, or re-send a message the window refused as one."""
    user = request_user(request)
    session = session_for_page(request, session_id)
    templates = picker_templates(user, session)
    template = template_choice(templates, request.POST.get("template"))
    replaces = _message(session, request.POST.get("replaces"))
    values = {
        name.removeprefix("ph:"): request.POST.get(name, "").strip()
        for name in request.POST
        if name.startswith("ph:")
    }
    key = request.POST.get("idempotency_key", "")
    if request.POST.get("choose") and template is not None:
        # Without JavaScript, "Choose" shows the chosen template's form; nothing is sent.
        return _refused(
            request, session, compose="template", template=template, replaces=replaces, status=200
        )
    if template is None:
        return _refused(
            request,
            session,
            compose="template",
            replaces=replaces,
            template_error="Choose one of the templates approved on this channel.",
        )
    try:
        if replaces is not None:
            message_resend_as_template(replaces, template, values, by=user, idempotency_key=key)
        else:
            message_send(
                session,
                Draft(type=MessageType.TEMPLATE.value, template=template, template_data=values),
                author=user,
                idempotency_key=key,
            )
    except SendRefused as exc:
        return _refused(
            request,
            session,
            compose="template",
            template=template,
            replaces=replaces,
            template_values=values,
            template_error=exc.reason,
        )
    return _sent(request, session, f"Template {template.code} queued.")


def _message(session: Session, value: str | None) -> Message | None:
    try:
        message_id = int(value or "")
    except ValueError:
        return None
    return Message.objects.filter(session=session, pk=message_id).first()


@login_required
@require_POST
def message_retry_view(request: HtmxHttpRequest, session_id: int, message_id: int) -> HttpResponse:
    """Queue a failed or unconfirmed message again."""
    session = session_for_page(request, session_id)
    message = (
        Message.objects.select_related("account", "session__channel", "session__contact")
        .filter(session=session, pk=message_id)
        .first()
    )
    if message is None:
        raise Http404("No such message.")
    unconfirmed = message.status == Message.Status.UNCONFIRMED
    try:
        message_retry(message, by=request_user(request))
    except SendRefused as exc:
        return flash(request, session, exc.reason, level=messages.ERROR, status=422)
    if unconfirmed:
        return flash(request, session, "Sending the message again.")
    return flash(request, session, "Retrying the message.")
