"""What an agent may send or insert: templates (approved per channel) and canned replies."""

from __future__ import annotations

from uuid import UUID

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from accounts.models import User
from inbox.models import CannedReply, Session
from inbox.selectors.visibility import (
    channels_visible_to,
    templates_visible_to,
    user_sees_everything,
    user_team_ids,
)
from integrations.models import Channel, Template, TemplateApproval


def template_list_for_user(user: User) -> QuerySet[Template]:
    """Return the active templates a user may send, each with `visible_approvals` prefetched.

    `visible_approvals` holds the template's approvals on the channels the user sees.
    """
    approvals = TemplateApproval.objects.filter(
        channel_id__in=channels_visible_to(user).values("pk")
    ).order_by("channel_id")
    return (
        templates_visible_to(user)
        .prefetch_related(Prefetch("approvals", queryset=approvals, to_attr="visible_approvals"))
        .order_by("code", "lang", "id")
    )


def templates_approved_on(templates: QuerySet[Template], channel: Channel) -> QuerySet[Template]:
    """Return the templates approved for sending on `channel`."""
    approved = TemplateApproval.objects.filter(
        template_id=OuterRef("pk"), channel=channel, status__iexact=TemplateApproval.APPROVED
    )
    return templates.filter(Exists(approved))


def template_get_for_account(account_id: UUID, template_id: int) -> Template | None:
    """Return one of an account's templates by id (active or not: the send decides)."""
    return Template.objects.filter(account_id=account_id, pk=template_id).first()


def canned_replies_for_user(user: User) -> QuerySet[CannedReply]:
    """Return the canned replies a user may insert: everyone's and their teams'."""
    replies = CannedReply.objects.select_related("team").order_by("shortcut")
    if user_sees_everything(user):
        return replies
    return replies.filter(Q(team__isnull=True) | Q(team_id__in=user_team_ids(user)))


def templates_for_session(user: User, session: Session) -> list[Template]:
    """Return the templates the user may send in this session (approved on its channel)."""
    return list(
        templates_approved_on(template_list_for_user(user), session.channel).order_by(
            "lang", "code", "id"
        )
    )
