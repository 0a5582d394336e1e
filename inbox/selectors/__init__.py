"""Read the inbox for pages, the API and platform answers: one module per thing read.

    visibility  who sees what (every other read that depends on the user starts here)
    sessions    sessions with what a list row, the conversation pane or the API shows
    lists       the inbox list: views, filters, sorts, view counts, a page of rows
    search      text search over contacts and message bodies
    thread      a conversation's messages, notes and timeline, paged; what changed
    messages    a session's messages in order; the one-line preview of a message
    contacts    the contact behind a platform id; their other sessions and identities
    replies     templates and canned replies an agent may send or insert
    labels      labels
    routing     where a session can go: teams, users, platform queues, skills
    changes     stamps for the pages that poll

Import from the module (`from inbox.selectors.visibility import sessions_visible_to`).
Selectors read; they import no service.
"""

from __future__ import annotations
