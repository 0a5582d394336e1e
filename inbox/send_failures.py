"""What agents read about a failed or unconfirmed send (pages, API and admin alike).

A stored reason is what agents read, then (after `DETAIL`) what only helps an admin: the
request, the URL, the exception.
"""

from __future__ import annotations

import re

UNCONFIRMED_CODE = "unconfirmed"
UNCONFIRMED_TITLE = (
    "This message may not have been delivered: the platform did not confirm it, and neither "
    "a receipt nor the conversation's history shows it. Send it again only if the customer "
    "should get it, since they may then get it twice."
)

# A stored reason is what agents read, then (after this mark) the detail for admins: the
# request, the URL, the exception. Admin shows the whole text; agents never see the detail.
DETAIL = "\n\nDetail: "
_REQUEST_METHODS = r"(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)"
_INTERNAL = re.compile(
    r"(?i:[a-z][a-z0-9+.\-]*)://\S*"  # any URL
    rf"|\b{_REQUEST_METHODS}\s+\S+"  # a request line: "POST message/send"
    r"|\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?"  # an IP address
    r"|\blocalhost(?::\d+)?\b"
    r"|\b[\w-]+(?:\.[\w-]+)+:\d{2,5}\b"  # host:port
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:internal|local|lan|corp|intranet)\b"  # private host names
    # An exception's name, dotted or not: requests.exceptions.ReadTimeout, ConnectionError.
    r"|\b(?:[a-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Timeout)\b"
)
_GROUP = re.compile(r"\s*\([^()]*\)")
_GENERIC_FAILURE = "The platform did not deliver this message."


def send_failure_text(code: str, title: str) -> str:
    """Return the reason a send failed, as agents read it (pages and API alike).

    The reason's own words, without what only helps an admin: the detail after `DETAIL`, and
    any URL, request line, address, host name or exception name wherever it appears (a
    platform's words or an older stored reason may hold them). When nothing readable is left,
    a plain sentence; the code is shown beside it.
    """
    if code in ("unknown_outcome", UNCONFIRMED_CODE):
        return UNCONFIRMED_TITLE
    text = title.split(DETAIL, 1)[0].replace("\x01", "").replace("\x02", "")
    # Innermost brackets first: a group holding internals goes whole, with its brackets; one
    # without stays, its brackets masked so that the group around it is reached next.
    while True:
        shorter = _GROUP.sub(_group_kept, text)
        if shorter == text:
            break
        text = shorter
    text = _INTERNAL.sub("", text.replace("\x01", "(").replace("\x02", ")"))
    text = re.sub(r"\s*([:;,])(?:\s*[:;,])+", r"\1", text)  # what a removal left doubled
    text = re.sub(r"\(\s*\)", "", text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([.,;:)])", r"\1", text).strip(" :;,-")
    if not re.search(r"[^\W\d_]{2,}", text):
        return _GENERIC_FAILURE
    return text[:500]


def _group_kept(match: re.Match[str]) -> str:
    group = match.group(0)
    if _INTERNAL.search(group):
        return ""
    return group.replace("(", "\x01").replace(")", "\x02")
