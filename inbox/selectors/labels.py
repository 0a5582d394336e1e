"""Labels: all of them, and those on a contact's sessions."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import User
from inbox.models import Label, Session
from inbox.selectors.visibility import sessions_visible_to


def contact_labels(session: Session, user: User) -> list[Label]:
    """Return the labels on the contact's sessions this user may see."""
    sessions = sessions_visible_to(user).filter(contact_id=session.contact_id)
    return list(Label.objects.filter(sessions__in=sessions).distinct().order_by("name"))


def labels_all() -> QuerySet[Label]:
    """Return every label, by name."""
    return Label.objects.order_by("name")
