"""The MessageWhiz provider: a platform with no webhooks and no sessions (spec §0).

Inbound messages and statuses are polled (§4.3). One poll lists the customers with new
activity (sorted by `last_message_time`, newest first, read down to the watermark less an
overlap) and then each one's history; the page it returns holds those customers and messages
and is stored raw and applied like a callback. The cursor carries the watermark, the customers
seen inside the overlap (so an idle cycle reads one page of customers and nothing else,
however many customers there are) and the customers still to read when a cycle had more than
one page's worth. A worker killed mid-poll leaves the old cursor: the next poll reads again,
and the inbox's unique keys make the second reading harmless.

Our channels are MessageWhiz *agents* (a VLN, a bot, a WhatsApp number), each under its
channel: messages name only the agent (§4.2), and a reply leaves from the number the customer
wrote to.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import IO, Any
from urllib.parse import urlsplit

from django.conf import settings

from integrations.base import (
    JSON,
    AccountConfig,
    AmbiguousError,
    Callback,
    Capability,
    ChannelInfo,
    Media,
    MediaFetched,
    MediaUpload,
    Medium,
    OutboundRequest,
    PayloadError,
    PollPage,
    Provider,
    RejectedError,
    SendResult,
    SentMessage,
    TemplateInfo,
    UnsupportedError,
    send_attempt,
)
from integrations.downloads import media_download
from integrations.messagewhiz import schemas
from integrations.messagewhiz.client import MessageWhizClient
from integrations.ttl_cache import TTLCache

logger = logging.getLogger(__name__)

# The account's agents and keyword events, per process, re-read every few minutes and at once
# when a message names an agent not among them.
_agents: TTLCache[str, dict[str, JSON]] = TTLCache(lambda: 300.0)
_keywords: TTLCache[str, dict[str, list[str]]] = TTLCache(lambda: 300.0)

CURSOR_VERSION = 1


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _pool(size: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, size), thread_name_prefix="mw-history")


class MessageWhizProvider(Provider):
    """Translate MessageWhiz's omni API (spec: reference/messagewhiz.md) to the contract."""

    kind = "messagewhiz"
    label = "MessageWhiz"
    ingest = "poll"
    # No sessions (the inbox keeps conversations), files go by upload (E25), statuses are
    # read (Loop B), WhatsApp templates per WhatsApp agent (§5.1), channels listed (E02).
    capabilities = frozenset(
        {
            Capability.CHANNELS,
            Capability.TEMPLATES,
            Capability.MEDIA_UPLOAD,
            Capability.RECEIPTS_FETCH,
        }
    )
    # WhatsApp's rule, which the docs do not state (G7): enforced from the customer's last
    # message on the channel.
    messaging_windows = {Medium.WHATSAPP.value: 24.0}
    sendable_types = schemas.SENDABLE_TYPES
    request_secret_headers = frozenset({"authorization"})
    # JWT auth from the MessageWhiz login (§1.2): no API keys exist for this API.
    credential_labels = ("Password", "Email")
    credentials_recognizable = False

    # --- reading what is stored ---------------------------------------------------------------

    def parse_callback(self, body: JSON) -> Callback:
        """Read a stored poll or receipts page (the platform never calls us, G1)."""
        return schemas.page_read(body)

    # --- credentials -------------------------------------------------------------------------

    def refresh_credentials(self, account: AccountConfig) -> bool:
        """Log in again after a 401 (§1.2); a refused login raises its own reason."""
        client = MessageWhizClient(account)
        client.token_renew(refused=client.token_sent() or None)
        return True

    # --- channels and templates --------------------------------------------------------------

    def _channels(self, client: MessageWhizClient) -> list[JSON]:
        return [c for page in client.pages("/api/channels", "channels") for c in page]

    def list_channels(self, account: AccountConfig) -> list[ChannelInfo]:
        """GET /api/channels (E02), one of ours per agent (§7.1); ECHO channels are skipped."""
        channels = self._channels(MessageWhizClient(account))
        _agents.put(account.id, schemas.agents_map(channels))
        return schemas.channel_infos(channels)

    def _agents_of(self, client: MessageWhizClient, *, fresh: bool = False) -> dict[str, JSON]:
        agents = None if fresh else _agents.get(client.account.id)
        if agents is None:
            agents = schemas.agents_map(self._channels(client))
            _agents.put(client.account.id, agents)
        return agents

    def _keywords_of(self, client: MessageWhizClient) -> dict[str, list[str]]:
        keywords = _keywords.get(client.account.id)
        if keywords is None:
            events = [
                e for page in client.pages("/api/keyword_events", "keyword_events") for e in page
            ]
            keywords = schemas.keyword_map(events)
            _keywords.put(client.account.id, keywords)
        return keywords

    def list_templates(
        self, account: AccountConfig, channel_external_id: str
    ) -> list[TemplateInfo]:
        """GET /api/agents/whatsapp/{agent}/templates (E39), every status (§5.1); other media
        have no templates."""
        client = MessageWhizClient(account)
        agent = self._agents_of(client).get(channel_external_id, {})
        if agent.get("medium") != Medium.WHATSAPP.value:
            return []
        path = f"/api/agents/whatsapp/{channel_external_id}/templates"
        return [
            info
            for page in client.pages(path, "templates")
            for item in page
            if (info := schemas.template_info(item, channel_external_id)) is not None
        ]

    # --- sending -------------------------------------------------------------------------------

    def media_upload(self, account: AccountConfig, upload: MediaUpload) -> Media:
        """POST /api/media (E25), the file in the multipart field `file` (G12)."""
        client = MessageWhizClient(account)
        answer = client.call(
            "POST",
            "/api/media",
            files={"file": (upload.filename or "file", upload.content, upload.mime_type)},
        ).json
        if not isinstance(answer, dict) or not schemas.as_str(answer.get("url")):
            raise PayloadError("POST /api/media answered without the file's url")
        size = answer.get("full_size")
        return Media(
            link=schemas.as_str(answer.get("url")),
            mime_type=schemas.as_str(answer.get("mime_type")) or upload.mime_type,
            filename=schemas.as_str(answer.get("file_name")) or upload.filename,
            media_id=schemas.as_str(answer.get("_id")),
            size=int(size) if isinstance(size, (int, float)) else len(upload.content),
            thumbnail_link=schemas.as_str(answer.get("thumbnail")),
            preview_link=schemas.as_str(answer.get("preview")),
        )

    def send_message(self, account: AccountConfig, request: OutboundRequest) -> SendResult:
        """POST /api/agents/{medium}/{agent}/send (§3.1) with the payload its medium takes."""
        client = MessageWhizClient(account)
        medium = request.medium or str(
            self._agents_of(client).get(request.channel_external_id, {}).get("medium", "")
        )
        segment = schemas.SEND_PATHS.get(medium)
        if segment is None:
            raise UnsupportedError(f"MessageWhiz has no way to send on {medium or 'this channel'}.")
        number = schemas.digits(request.to_phone)
        if not number:
            raise UnsupportedError(
                "This customer has no phone number MessageWhiz can send to (G16)."
            )
        renditions: dict[str, tuple[str, int]] = {}
        media = request.media
        if media is not None and request.type.value == "image":
            for name, link in (
                ("thumbnail", media.thumbnail_link),
                ("preview", media.preview_link),
            ):
                found = client.media_head(link) if link else None
                if found is not None:
                    renditions[name] = found
        payload = schemas.send_payload(
            request if request.medium else _with_medium(request, medium), renditions
        )
        path = f"/api/agents/{segment}/{request.channel_external_id}/send"
        with send_attempt():  # §4.6: no idempotency key
            answer = client.call(
                "POST", path, json={"customerNumber": number, "payload": payload}
            ).json
        message_id = schemas.as_str(answer.get("message_id")) if isinstance(answer, dict) else ""
        if not message_id:
            # A 200 without the id: the platform took it, but we cannot follow it.
            raise AmbiguousError(f"POST {path} answered without a message_id")
        return SendResult(external_id=message_id, raw=answer)

    def media_fetch(
        self, account: AccountConfig, media: Media, into: IO[bytes], *, max_bytes: int
    ) -> MediaFetched:
        """Download a file by the link the message gives, with our token (G11, G13: the link
        is opaque and never built)."""
        # Our token goes only to the platform itself: a mirrored message may link elsewhere.
        ours = _origin(media.link) == _origin(account.base_url)
        headers = MessageWhizClient(account).headers() if ours else None
        return media_download(media.link, into, max_bytes=max_bytes, headers=headers)

    # --- polling (Loop A) ----------------------------------------------------------------------

    def poll(self, account: AccountConfig, cursor: str) -> PollPage:
        """One page of what customers and the business wrote since `cursor` (§4.3 Loop A)."""
        client = MessageWhizClient(account)
        state = _cursor_read(cursor)
        overlap = timedelta(seconds=float(settings.MW_POLL_OVERLAP_SECONDS))
        if not state["todo"]:
            state = self._customers_scan(client, state, overlap)
        batch = state["todo"][: int(settings.MW_POLL_CUSTOMERS_PER_PAGE)]
        rest = state["todo"][len(batch) :]
        messages = self._histories(client, batch, overlap)
        used = {schemas.as_str(m.get("agent_id")) for m in messages}
        agents = self._agents_of(client) if used else {}
        if used - agents.keys():
            agents = self._agents_of(client, fresh=True)  # a channel added since
        body: JSON = {
            "customers": [customer for customer, _ in batch],
            "messages": messages,
            "agents": {a: agents[a] for a in sorted(used) if a in agents},
            "keywords": self._keywords_of(client) if messages else {},
        }
        next_state = {**state, "todo": rest}
        return PollPage(
            body=body,
            cursor=json.dumps(next_state, separators=(",", ":")),
            more=bool(rest),
            items=len(messages),
        )

    def _customers_scan(self, client: MessageWhizClient, state: JSON, overlap: timedelta) -> JSON:
        """Read customers newest activity first, down to the watermark less the overlap; those
        whose `last_message_time` moved are to be read, the longest waiting first (G2: the
        order is checked).

        The overlap catches a message the platform lists late. Once the watermark has not moved
        for twice the overlap by our clock, scans that covered the overlap have run since any
        such message appeared, so the scan stops at the watermark itself: an idle account costs
        one call per cycle, right after a burst too.
        """
        now = datetime.now(UTC)
        watermark = schemas.parse_time(state["t"]) or now
        moved = schemas.parse_time(state.get("moved")) or now
        settled = now - moved > 2 * overlap
        floor = watermark if settled else watermark - overlap
        seen: dict[str, str] = state["seen"]
        # A customer not seen last time is new since the watermark, unless that scan was
        # shifted by writers: then they may be one of those writers, unread from its floor.
        unseen_since = state.get("skipped_from") or state["t"]
        shifted = False
        changed: list[tuple[JSON, str]] = []
        newest = watermark
        still: dict[str, str] = {}
        previous: datetime | None = None
        params = {"sort": "last_message_time", "order": -1}
        for page in client.pages("/api/customers", "customers", params):
            done = False
            for customer in page:
                at = schemas.parse_time(customer.get("last_message_time"))
                if at is None or at < floor:
                    # (None: never wrote nor was written to; nothing older has news either.)
                    done = True
                    break
                customer_id = schemas.as_str(customer.get("_id"))
                if customer_id in still:
                    # Offset paging over a list that changes as we read: customers who wrote
                    # meanwhile push the rest down, so a page may start with some already
                    # read, newer than the last one (§4.3). The writers themselves jumped to
                    # the top we had read: the next scan reads them from this scan's floor.
                    shifted = True
                    continue
                if previous is not None and at > previous:
                    raise PayloadError(
                        "MessageWhiz did not list customers by last_message_time, newest first; "
                        "polling depends on it (spec §4.3, G2)."
                    )
                previous = at
                stamp = schemas.as_str(customer.get("last_message_time"))
                still[customer_id] = stamp
                if seen.get(customer_id) != stamp:
                    since = seen.get(customer_id) or unseen_since
                    changed.append((_customer_brief(customer), since))
                newest = max(newest, at)
            if done:
                break
        changed.reverse()  # the customer who has waited longest is read and stored first
        new_floor = newest - overlap
        kept = {
            cid: stamp
            for cid, stamp in still.items()
            if (at := schemas.parse_time(stamp)) is not None and at >= new_floor
        }
        return {
            "v": CURSOR_VERSION,
            "t": _iso(newest),
            "moved": _iso(now if newest > watermark else moved),
            "skipped_from": min(state.get("skipped_from") or _iso(floor), _iso(floor))
            if shifted
            else "",
            "seen": kept,
            "todo": changed,
        }

    def _histories(
        self, client: MessageWhizClient, batch: list[tuple[JSON, str]], overlap: timedelta
    ) -> list[JSON]:
        """Each customer's messages since they were last read, less the overlap (E29, newest
        first, every origin: the business's own are mirrored), a few customers at a time."""

        def one(item: tuple[JSON, str]) -> list[JSON]:
            customer, since = item
            start = (schemas.parse_time(since) or datetime.now(UTC)) - overlap
            customer_id = schemas.as_str(customer.get("_id"))
            try:
                return self._history_since(client, customer_id, start, {})
            except RejectedError as exc:
                # Deleted meanwhile (404, 410) or an id the platform refuses: one customer
                # must not stop everyone's messages; the next message they send is read.
                logger.warning("history of MessageWhiz customer %s skipped: %s", customer_id, exc)
                return []

        if not batch:
            return []
        with _pool(min(len(batch), int(settings.MW_HISTORY_CONCURRENCY))) as pool:
            found = list(pool.map(one, batch))
        return [m for messages in found for m in messages]

    def _history_since(
        self,
        client: MessageWhizClient,
        customer_id: str,
        start: datetime,
        params: Mapping[str, Any],
        wanted: set[str] | None = None,
    ) -> list[JSON]:
        """A customer's history newest first, down to `start` (or, given `wanted` ids, until
        all are found)."""
        found: list[JSON] = []
        query = {"sort": "sent", "order": -1, **params}
        for page in client.pages(f"/api/messages/{customer_id}", "messages", query):
            older = False
            for message in page:
                at = schemas.parse_time(message.get("sent"))
                if at is not None and at < start:
                    older = True
                    continue
                found.append(message)
                if wanted is not None:
                    wanted.discard(schemas.as_str(message.get("message_id")))
            if older or (wanted is not None and not wanted):
                break
        return found

    # --- statuses (Loop B) ---------------------------------------------------------------------

    def receipts_fetch(self, account: AccountConfig, sends: Sequence[SentMessage]) -> PollPage:
        """Re-read the history of each customer with sends on their way, our agent's and our
        origin's only, until each is found or the pages are older than it (§4.3 Loop B)."""
        client = MessageWhizClient(account)
        groups: dict[tuple[str, str], list[SentMessage]] = {}
        for send in sends:
            groups.setdefault((send.contact_external_id, send.channel_external_id), []).append(send)
        overlap = timedelta(seconds=float(settings.MW_POLL_OVERLAP_SECONDS))

        def one(key: tuple[str, str]) -> list[JSON]:
            customer_id, agent_id = key
            pending = groups[key]
            start = min(s.sent_at for s in pending) - overlap
            try:
                return self._history_since(
                    client,
                    customer_id,
                    start,
                    {"agentID": agent_id, "origin": "AGENT"},
                    wanted={s.external_id for s in pending},
                )
            except RejectedError as exc:
                logger.warning("statuses of MessageWhiz customer %s skipped: %s", customer_id, exc)
                return []

        keys = sorted(groups)
        messages: list[JSON] = []
        if keys:
            with _pool(min(len(keys), int(settings.MW_HISTORY_CONCURRENCY))) as pool:
                for found in pool.map(one, keys):
                    messages.extend(found)
        agents = self._agents_of(client)
        used = {schemas.as_str(m.get("agent_id")) for m in messages}
        body: JSON = {
            "customers": [],
            "messages": messages,
            "agents": {a: agents[a] for a in sorted(used) if a in agents},
            "keywords": {},
        }
        return PollPage(body=body, cursor="", more=False, items=len(messages))


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _with_medium(request: OutboundRequest, medium: str) -> OutboundRequest:
    return replace(request, medium=medium)


def _customer_brief(customer: JSON) -> JSON:
    """What a page needs of a customer (the cursor carries it while the customer waits)."""
    keys = ("_id", "name", "phone", "telegram_chat_id", "subscriptions", "last_message_time")
    return {k: customer[k] for k in keys if k in customer}


def _cursor_read(cursor: str) -> JSON:
    """The stored cursor, or a fresh one that starts MW_BACKFILL_HOURS ago."""
    if cursor:
        try:
            state = json.loads(cursor)
        except ValueError:
            state = None
        if isinstance(state, dict) and state.get("v") == CURSOR_VERSION:
            state.setdefault("seen", {})
            state.setdefault("todo", [])
            state["todo"] = [tuple(item) for item in state["todo"]]
            return state
        logger.warning("a MessageWhiz poll cursor could not be read; starting over")
    now = datetime.now(UTC)
    start = now - timedelta(hours=float(settings.MW_BACKFILL_HOURS))
    return {"v": CURSOR_VERSION, "t": _iso(start), "moved": _iso(now), "seen": {}, "todo": []}
