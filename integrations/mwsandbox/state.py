"""The simulated MessageWhiz account and its rules, without any server code.

Every API operation is a method that returns plain JSON-ready data or raises `ApiError` (the
server turns it into the §1.4 error shape). One lock guards the whole state, so the server's
event loop and a command's threads can share it. Time comes from an injected clock (seconds
since the epoch): message statuses are computed from it when read, so tests move the clock
instead of sleeping.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import json
import math
import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit

from integrations.mwsandbox import catalog, media, payloads
from integrations.mwsandbox.catalog import JSON, Persona

Clock = Callable[[], float]
Query = Mapping[str, str]

ORIGINS = ("BOT", "AGENT", "CUSTOMER", "BROADCAST")
CHANNEL_TYPES = ("RCS", "SMS", "WA", "TG", "VI", "WECHAT")
CHANNEL_STATUSES = ("INACTIVE", "CREATED", "HOLD", "ON_APPROVAL", "ACTIVE")
TEMPLATE_STATUSES = (
    "APPROVED",
    "IN_APPEAL",
    "PENDING",
    "REJECTED",
    "PENDING_DELETION",
    "DELETED",
    "DISABLED",
)
FAILURES = ("ERROR", "UNDELIVERABLE")
# Not documented (G27); the platform answers at most this many items whatever `limit` asks.
MAX_LIMIT = 50
# The `expires_at` the login answers lies far past the token's real `exp` (§1.2, G10).
EXPIRES_AT_LIE_SECONDS = 10 * 365 * 86400
WA_NAMESPACE = "c7a3b1f0_5e2d_4a8b_9f61_sandbox"


class ApiError(Exception):
    """A refusal, answered in the §1.4 error shape."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason or message

    def body(self) -> JSON:
        """Return the error body: {success, statusCode, error, message, reason} (§1.4)."""
        return {
            "success": False,
            "statusCode": self.status,
            "error": HTTPStatus(self.status).phrase,
            "message": self.message,
            "reason": self.reason,
        }


def not_found(reason: str = "Entity not found") -> ApiError:
    """Return the 404 every unknown entity gets (§1.4 "Entity not found")."""
    return ApiError(404, "Entity not found", reason)


def iso(ms: int) -> str:
    """Format epoch milliseconds the way the platform does: `2020-11-18T15:11:58.240Z` (§1.3)."""
    stamp = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ms % 1000:03d}Z"


def parse_iso(text: str) -> int:
    """Return epoch milliseconds of an ISO-8601 time with a zone; raise ValueError otherwise."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return math.floor(value.timestamp() * 1000)


@dataclass
class Faults:
    """What goes wrong, and how often (shares are 0..1)."""

    latency_ms: int = 0
    # Answered 503 before anything is processed.
    error_rate: float = 0.0
    # Hang `timeout_seconds` before anything is processed, then 504.
    timeout_rate: float = 0.0
    timeout_seconds: float = 40.0
    # Sends accepted and recorded whose answer never comes: hang, then 504 (§4.6, G6).
    ambiguous_rate: float = 0.0
    # WhatsApp template calls answered 502, Meta failing upstream (§1.4, E39-E42).
    upstream_error_rate: float = 0.0
    # The real lifetime (`exp`) of tokens issued from now on (§1.2, G10).
    token_ttl_seconds: float = 86400.0
    # Accepted sends that end ERROR or UNDELIVERABLE instead of DELIVERED.
    status_error_rate: float = 0.0

    def update(self, values: Mapping[str, Any]) -> list[str]:
        """Set the given fields; return the names that are not fault settings.

        Nothing is set unless every name is known and every value fits; a value that does not
        (a share outside 0..1, a negative number, a string) raises ValueError.
        """
        unknown = [key for key in values if key not in self.__dataclass_fields__]
        if unknown:
            return unknown
        parsed = {key: self._parsed(key, value) for key, value in values.items()}
        for key, value in parsed.items():
            setattr(self, key, value)
        return []

    def _parsed(self, key: str, value: Any) -> Any:
        current = getattr(self, key)
        try:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise TypeError
            number = type(current)(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key} takes a number, not {value!r}") from None
        if not math.isfinite(number) or number < 0 or (key.endswith("_rate") and number > 1):
            limits = "a share from 0 to 1" if key.endswith("_rate") else "a number from 0 up"
            raise ValueError(f"{key} takes {limits}, not {value!r}")
        return number


@dataclass
class Agent:
    """A sending identity of a channel (a VLN, a bot, a number)."""

    id: str
    channel_id: str
    config: JSON
    created_ms: int

    def as_json(self) -> JSON:
        return {
            "_id": self.id,
            "created": iso(self.created_ms),
            "modified": iso(self.created_ms),
            "config": dict(self.config),
        }


@dataclass
class Channel:
    """A channel (§2.1) and its agents."""

    id: str
    type: str
    status: str
    config: JSON
    agents: list[Agent]
    welcome_message: str
    created_ms: int
    keyword_events_messages: JSON = field(
        default_factory=lambda: {
            "opt_out_message": catalog.OPT_OUT_MESSAGE,
            "help_message": catalog.HELP_MESSAGE,
        }
    )

    @property
    def name(self) -> str:
        return str(self.config.get("name", ""))

    def as_json(self) -> JSON:
        return {
            "_id": self.id,
            "type": self.type,
            "status": self.status,
            "chatbot": {"story_id": None, "origin": "OWN"},
            "keyword_events_messages": dict(self.keyword_events_messages),
            "welcome_message": self.welcome_message,
            "config": dict(self.config),
            "created": iso(self.created_ms),
            "modified": iso(self.created_ms),
            "agents": [agent.as_json() for agent in self.agents],
        }


@dataclass
class Message:
    """A message in a customer's history (§2.1), with the timeline of its statuses."""

    message_id: str
    customer_id: str
    agent_id: str
    payload: JSON
    origin: str
    sent_ms: int
    seq: int
    # (from when, status), in time order; a status never goes backwards (§4.5).
    plan: tuple[tuple[int, str], ...]
    media_ids: tuple[str, ...] = ()

    @property
    def order(self) -> tuple[int, int]:
        return (self.sent_ms, self.seq)


@dataclass
class Customer:
    """A customer (§2.1), account-wide, with the history of every agent."""

    id: str
    seq: int
    phone: str
    name: str | None
    country: str | None
    created_ms: int
    modified_ms: int
    last_message_ms: int | None = None
    telegram_chat_id: str | None = None
    subscriptions: dict[str, bool] = field(default_factory=dict)
    chatbot_enabled: dict[str, str] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    # When the customer last wrote on each agent (the WhatsApp window, G7).
    last_inbound_ms: dict[str, int] = field(default_factory=dict)
    persona: Persona | None = None
    line_index: int = 0

    def as_json(self) -> JSON:
        data: JSON = {
            "_id": self.id,
            "name": self.name,
            "phone": self.phone,
            "country": self.country,
            "subscriptions": dict(self.subscriptions),
            "chatbot_enabled": dict(self.chatbot_enabled),
            "created": iso(self.created_ms),
            "modified": iso(self.modified_ms),
            "last_message_time": (
                iso(self.last_message_ms) if self.last_message_ms is not None else None
            ),
        }
        if self.telegram_chat_id is not None:
            data["telegram_chat_id"] = self.telegram_chat_id
        return data

    def next_line(self) -> str:
        lines = (
            self.persona.lines if self.persona and self.persona.lines else catalog.CUSTOMER_LINES
        )
        line = lines[self.line_index % len(lines)]
        self.line_index += 1
        return line


@dataclass
class MediaFile:
    """A file in the media gallery (§2.1 Media object)."""

    id: str
    data: bytes
    mime_type: str
    file_name: str
    created_ms: int
    message_id: str | None = None
    deleted_ms: int | None = None
    renditions: dict[str, tuple[str, bytes]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return media.media_kind(self.mime_type)


INBOUND_KINDS = ("text", "image", "video", "voice", "audio", "document", "location", "contact")


@dataclass
class InboundItem:
    """A customer message the control API asked for, checked and ready to apply."""

    customer: str
    name: str | None
    agent: Agent | None
    medium: str
    payload: JSON | None
    kind: str
    text: str
    sent_ms: int


class SortedIndex:
    """Customer ids in the order of one field, kept sorted as values change.

    A change costs a binary search and a list memmove, so a listing never sorts: the 5-second
    pollers and the benchmark read pages of 10,000+ customers sorted by last_message_time.
    """

    def __init__(self) -> None:
        self.entries: list[tuple[int, int, str]] = []
        self.keys: dict[str, tuple[int, int, str]] = {}

    def put(self, customer_id: str, value: int | None, seq: int) -> None:
        entry = (-1 if value is None else value, seq, customer_id)
        old = self.keys.get(customer_id)
        if old == entry:
            return
        if old is not None:
            del self.entries[bisect.bisect_left(self.entries, old)]
        bisect.insort(self.entries, entry)
        self.keys[customer_id] = entry

    def remove(self, customer_id: str) -> None:
        old = self.keys.pop(customer_id, None)
        if old is not None:
            del self.entries[bisect.bisect_left(self.entries, old)]

    def __len__(self) -> int:
        return len(self.entries)

    def ids(self, descending: bool) -> Iterator[str]:
        entries = reversed(self.entries) if descending else iter(self.entries)
        return (entry[2] for entry in entries)

    def page(self, offset: int, limit: int, descending: bool) -> list[str]:
        if not descending:
            return [entry[2] for entry in self.entries[offset : offset + limit]]
        end = len(self.entries) - offset
        if end <= 0:
            return []
        return [entry[2] for entry in reversed(self.entries[max(0, end - limit) : end])]


P = ParamSpec("P")
R = TypeVar("R")


def locked(
    method: Callable[Concatenate[MessageWhizPlatform, P], R],
) -> Callable[Concatenate[MessageWhizPlatform, P], R]:
    """Run a method of the platform holding its lock."""

    def run(self: MessageWhizPlatform, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.lock:
            return method(self, *args, **kwargs)

    run.__name__ = method.__name__
    run.__doc__ = method.__doc__
    return run


def _int_param(query: Query, name: str, default: int, minimum: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f'"{name}" must be a number') from None
    if value < minimum:
        raise ApiError(400, f'"{name}" must be greater than or equal to {minimum}')
    return value


def paging(query: Query) -> tuple[int, int]:
    """Return (offset, limit) of a list call; a limit over MAX_LIMIT is capped silently."""
    offset = _int_param(query, "offset", 0, 0)
    limit = _int_param(query, "limit", MAX_LIMIT, 1)
    return offset, min(limit, MAX_LIMIT)


def numeric_order(query: Query, default: int) -> int:
    """Return `order` as 1 or -1: every list but channels takes numbers (§1.5, G32)."""
    raw = query.get("order")
    if raw is None or raw == "":
        return default
    if raw.strip() not in ("1", "-1"):
        raise ApiError(400, '"order" must be one of [1, -1]')
    return int(raw)


def _choice(query: Query, name: str, allowed: tuple[str, ...]) -> str | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    if value not in allowed:
        raise ApiError(400, f'"{name}" must be one of [{", ".join(allowed)}]')
    return value


def _digits(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ApiError(400, f'"{name}" is required' if not value else f'"{name}" must be a string')
    if not value.isdigit() or not value.isascii():
        # §1.3: digits with the country code, no "+".
        raise ApiError(400, f'"{name}" must contain only digits (country code, no "+")')
    return value


class MessageWhizPlatform:
    """The account's behaviour, as the spec documents it and as we read its gaps."""

    def __init__(
        self,
        *,
        email: str,
        password: str,
        base_url: str = "http://127.0.0.1:8002",
        clock: Clock = time.time,
        rng: random.Random | None = None,
        status_delays: tuple[float, float, float] = (0.5, 1.5, 3.0),
        window_hours: float = 24.0,
        faults: Faults | None = None,
        history: bool = False,
    ) -> None:
        self.lock = threading.RLock()
        self.email = email
        self.password = password
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 (simulated traffic, not secrets)
        self.status_delays = status_delays
        self.window_hours = window_hours
        self.faults = faults or Faults()
        self.channels: dict[str, Channel] = {}
        self.agents: dict[str, Agent] = {}
        self.customers: dict[str, Customer] = {}
        self.by_phone: dict[str, str] = {}
        self.by_chat_id: dict[str, str] = {}
        self.indexes = {
            "created": SortedIndex(),
            "modified": SortedIndex(),
            "last_message_time": SortedIndex(),
        }
        self.messages: dict[str, Message] = {}
        self.media: dict[str, MediaFile] = {}
        self.wa_templates: dict[str, list[JSON]] = {}
        # token -> (expires at, in seconds since the epoch; revocation generation)
        self.tokens: dict[str, tuple[float, int]] = {}
        self.token_generation = 0
        self.sent: list[JSON] = []
        self.calls: dict[str, int] = {}
        self.counters: dict[str, int] = {}
        self._seq = itertools.count()
        self._bulk_serial = itertools.count(1)
        self._seed_channels()
        for persona in catalog.PERSONAS:
            self._add_persona(persona)
        if history:
            self._seed_history()

    # --- Time and ids -------------------------------------------------------------------------

    def now_ms(self) -> int:
        return math.floor(self.clock() * 1000)

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    # --- Seeding ------------------------------------------------------------------------------

    def _seed_channels(self) -> None:
        for index, seed in enumerate(catalog.CHANNELS):
            created = catalog.SEEDED_MS + index * 60_000
            agents = [
                Agent(
                    id=seed.agent_id(i), channel_id=seed.id, config=dict(config), created_ms=created
                )
                for i, config in enumerate(seed.agent_configs)
            ]
            channel = Channel(
                id=seed.id,
                type=seed.type,
                status=seed.status,
                config=dict(seed.config),
                agents=agents,
                welcome_message=seed.welcome_message,
                created_ms=created,
            )
            self.channels[channel.id] = channel
            for agent in agents:
                self.agents[agent.id] = agent
                if seed.type == "WA":
                    active = seed.status == "ACTIVE"
                    self.wa_templates[agent.id] = catalog.wa_templates(seed.key) if active else []

    def _add_persona(self, persona: Persona) -> Customer:
        customer = self._create_customer(
            persona.phone, persona.name, customer_id=persona.id, country=persona.country
        )
        customer.persona = persona
        if persona.telegram_chat_id:
            customer.telegram_chat_id = persona.telegram_chat_id
            self.by_chat_id[persona.telegram_chat_id] = customer.id
        return customer

    def persona_agent(self, persona: Persona) -> Agent:
        return self.agents[catalog.channel_seed(persona.channel).agent_id(persona.agent)]

    def _seed_history(self) -> None:
        """Give a handful of customers recent conversations, so a fresh inbox shows some."""
        now = self.now_ms()
        minute = 60_000
        # (persona, minutes ago, who, text or kind)
        steps: list[tuple[str, float, str, str]] = [
            ("maria", 40, "CUSTOMER", ""),
            ("maria", 38, "AGENT", "Thanks for reaching out! Let me check that for you."),
            ("maria", 35, "CUSTOMER", ""),
            ("james", 12, "CUSTOMER", ""),
            ("olivia", 185, "CUSTOMER", ""),
            ("olivia", 180, "CUSTOMER", "STOP"),
            ("yulia", 25, "CUSTOMER", "kind:image"),
            ("yulia", 20, "AGENT", "Got it, thank you. Which account is it?"),
            ("noah", 9, "CUSTOMER", ""),
            ("noah", 8, "CUSTOMER", "kind:location"),
            ("aiko", 55, "CUSTOMER", ""),
            ("aiko", 50, "AGENT", "Sorry about that! Which size do you need?"),
            ("priya", 120, "CUSTOMER", ""),
            ("priya", 118, "AGENT", "Of course, which order is it?"),
            # Outside the 24-hour window: only a template may be sent to Ahmed (G7).
            ("ahmed", 30 * 60, "CUSTOMER", ""),
            ("ahmed", 29 * 60, "AGENT", "Yes, it runs until the end of the year."),
        ]
        for key, minutes, origin, what in steps:
            customer = self.customers[catalog.fixed_id(f"customer:{key}")]
            assert customer.persona is not None
            agent = self.persona_agent(customer.persona)
            at = now - int(minutes * minute)
            if origin == "AGENT":
                payload = {"type": "TEXT", "text": what}
                self._record_agent_message(agent, customer, payload, at, ())
                continue
            if what.startswith("kind:"):
                payload = self.customer_payload(what.removeprefix("kind:"))
            else:
                payload = {"type": "TEXT", "text": what or customer.next_line()}
            self._customer_message(customer, agent, payload, at)

    # --- Tokens (E01, §1.2) -------------------------------------------------------------------

    @locked
    def login(self, body: Any) -> JSON:
        """Issue a token for the account's email and password (E01)."""
        if not isinstance(body, dict):
            raise ApiError(400, '"value" must be an object')
        for key in ("email", "password"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise ApiError(400, f'"{key}" is required')
        unknown = [key for key in body if key not in ("email", "password")]
        if unknown:
            raise ApiError(400, f'"{unknown[0]}" is not allowed')
        if body["email"].strip().lower() != self.email.lower() or body["password"] != self.password:
            self.count("auth_refused")
            raise ApiError(401, "Invalid email or password", "Unauthorized")
        now = self.clock()
        expires = now + self.faults.token_ttl_seconds
        token = self._jwt(int(now), int(expires))
        self.tokens = {
            t: entry
            for t, entry in self.tokens.items()
            if entry[1] == self.token_generation and entry[0] > now
        }
        self.tokens[token] = (expires, self.token_generation)
        self.count("tokens_issued")
        # G10: `expires_at` says years; the JWT's `exp` is the truth.
        return {"token": token, "expires_at": int(now) + EXPIRES_AT_LIE_SECONDS}

    def _jwt(self, iat: int, exp: int) -> str:
        def part(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        header = {"typ": "JWT", "alg": "RS256", "kid": "omni"}
        claims = {
            "id": catalog.USER_ID,
            "adminEmail": "",
            "sub": "api",
            "aud": "anon",
            "iss": "omni",
            "iat": iat,
            "exp": exp,
        }
        return ".".join(
            (
                part(json.dumps(header, separators=(",", ":")).encode()),
                part(json.dumps(claims, separators=(",", ":")).encode()),
                part(secrets.token_bytes(256)),  # an RS256 signature's size; never verified
            )
        )

    @locked
    def authenticate(self, header: str | None) -> None:
        """Accept `Authorization: <token>` (or `Bearer <token>`, G9) of a live token, or 401."""
        if not header or not header.strip():
            raise ApiError(401, "Missing authentication", "Unauthorized")
        token = header.strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        entry = self.tokens.get(token)
        if entry is None or entry[1] != self.token_generation:
            raise ApiError(401, "Invalid token", "Unauthorized")
        if self.clock() >= entry[0]:
            raise ApiError(401, "Token expired", "Unauthorized")

    @locked
    def revoke_tokens(self) -> int:
        """Make every issued token answer 401 from now on; return how many were live."""
        now = self.clock()
        live = sum(
            1 for exp, gen in self.tokens.values() if gen == self.token_generation and exp > now
        )
        self.token_generation += 1
        self.tokens = {}
        return live

    # --- Channels and agents (E02, E04, E07) --------------------------------------------------

    @locked
    def list_channels(self, query: Query) -> JSON:
        """List channels (E02): `order` is asc/desc here, unlike everywhere else (G32)."""
        offset, limit = paging(query)
        order = query.get("order") or "asc"
        if order not in ("asc", "desc"):
            raise ApiError(400, '"order" must be one of [asc, desc]')
        sort = query.get("sort") or "created"
        keys: dict[str, Callable[[Channel], Any]] = {
            "created": lambda c: c.created_ms,
            "modified": lambda c: c.created_ms,
            "name": lambda c: c.name.lower(),
            "type": lambda c: c.type,
            "status": lambda c: c.status,
        }
        if sort not in keys:
            raise ApiError(400, f'"sort" must be one of [{", ".join(keys)}]')
        kind = _choice(query, "type", CHANNEL_TYPES)
        status = _choice(query, "status", CHANNEL_STATUSES)
        needle = (query.get("name") or query.get("search") or "").lower()
        items = [
            c
            for c in self.channels.values()
            if (kind is None or c.type == kind)
            and (status is None or c.status == status)
            and needle in c.name.lower()
        ]
        items.sort(key=keys[sort], reverse=order == "desc")
        return {
            "channels": [c.as_json() for c in items[offset : offset + limit]],
            "total": len(items),
            "offset": offset,
            "limit": limit,
        }

    @locked
    def get_channel(self, channel_id: str) -> JSON:
        """Return one channel (E04)."""
        channel = self.channels.get(channel_id)
        if channel is None:
            raise not_found()
        return {"channel": channel.as_json()}

    @locked
    def get_agent(self, channel_id: str, agent_id: str) -> JSON:
        """Return one agent, unwrapped (E07)."""
        agent = self.agents.get(agent_id)
        if agent is None or agent.channel_id != channel_id:
            raise not_found()
        return agent.as_json()

    # --- Customers (E12-E16) ------------------------------------------------------------------

    def _create_customer(
        self,
        phone: str,
        name: str | None,
        *,
        customer_id: str | None = None,
        country: str | None = None,
    ) -> Customer:
        now = self.now_ms()
        customer = Customer(
            id=customer_id or self.new_id(),
            seq=next(self._seq),
            phone=phone,
            name=name,
            country=country or catalog.country_of(phone),
            created_ms=now,
            modified_ms=now,
        )
        self.customers[customer.id] = customer
        if phone:
            self.by_phone[phone] = customer.id
        self._reindex(customer)
        return customer

    def _reindex(self, customer: Customer) -> None:
        self.indexes["created"].put(customer.id, customer.created_ms, customer.seq)
        self.indexes["modified"].put(customer.id, customer.modified_ms, customer.seq)
        self.indexes["last_message_time"].put(customer.id, customer.last_message_ms, customer.seq)

    def _touch(self, customer: Customer) -> None:
        customer.modified_ms = max(customer.modified_ms, self.now_ms())
        self._reindex(customer)

    def find_customer(self, ref: str) -> Customer | None:
        """Return the customer with this `_id` or phone (E12, E29 `identifier`)."""
        customer = self.customers.get(ref)
        if customer is None and ref in self.by_phone:
            customer = self.customers.get(self.by_phone[ref])
        return customer

    @locked
    def list_customers(self, query: Query) -> JSON:
        """List customers (E13), sorted by any indexed field without sorting per call."""
        offset, limit = paging(query)
        sort = query.get("sort") or "created"
        sorts = ("created", "modified", "last_message_time", "name", "phone")
        if sort not in sorts:
            raise ApiError(400, f'"sort" must be one of [{", ".join(sorts)}]')
        descending = numeric_order(query, 1) == -1
        name = (query.get("name") or "").lower()
        phone = (query.get("phone") or "").lstrip("+")
        search = (query.get("search") or "").lower()

        def wanted(c: Customer) -> bool:
            return (
                (not name or name in (c.name or "").lower())
                and (not phone or phone in c.phone)
                and (not search or search in (c.name or "").lower() or search in c.phone)
            )

        index = self.indexes.get(sort)
        if index is not None and not (name or phone or search):
            ids = index.page(offset, limit, descending)
            total = len(index)
        else:
            if index is not None:
                ordered: Iterator[str] = index.ids(descending)
            else:
                # name/phone sorts are rare: sorted per call, by (value, creation) like Mongo.
                def by_field(c: Customer) -> tuple[str, int]:
                    return ((c.name or "").lower() if sort == "name" else c.phone, c.seq)

                ordered = (
                    c.id for c in sorted(self.customers.values(), key=by_field, reverse=descending)
                )
            matched = [cid for cid in ordered if wanted(self.customers[cid])]
            ids, total = matched[offset : offset + limit], len(matched)
        return {
            "customers": [self.customers[cid].as_json() for cid in ids],
            "total": total,
            "limit": limit,
            "offset": offset,
        }

    @locked
    def get_customer(self, identifier: str) -> JSON:
        """Return one customer by `_id` or phone (E12)."""
        customer = self.find_customer(identifier)
        if customer is None:
            raise not_found()
        return {"customer": customer.as_json()}

    @locked
    def create_customer(self, body: Any) -> JSON:
        """Create a customer (E14); 409 when the phone is known."""
        if not isinstance(body, dict):
            raise ApiError(400, '"value" must be an object')
        unknown = [key for key in body if key not in ("phone", "name")]
        if unknown:
            raise ApiError(400, f'"{unknown[0]}" is not allowed')
        phone = _digits(body.get("phone"), "phone")
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise ApiError(400, '"name" must be a string')
        if phone in self.by_phone:
            raise ApiError(409, "Customer already exists", "Conflict")
        customer = self._create_customer(phone, name)
        return {"success": True, "customer": customer.as_json()}

    @locked
    def patch_customer(self, customer_id: str, body: Any) -> None:
        """Change a customer's name or chatbot states (E15, answered 204)."""
        customer = self.customers.get(customer_id)
        if customer is None:
            raise not_found()
        if not isinstance(body, dict):
            raise ApiError(400, '"value" must be an object')
        unknown = [key for key in body if key not in ("name", "chatbot_enabled")]
        if unknown:
            raise ApiError(400, f'"{unknown[0]}" is not allowed')
        if "name" in body:
            if not isinstance(body["name"], str):
                raise ApiError(400, '"name" must be a string')
            customer.name = body["name"]
        if "chatbot_enabled" in body:
            states = body["chatbot_enabled"]
            if not isinstance(states, dict) or not all(isinstance(v, str) for v in states.values()):
                raise ApiError(400, '"chatbot_enabled" must be an object of strings')
            customer.chatbot_enabled.update(states)
        self._touch(customer)

    @locked
    def delete_customer(self, customer_id: str) -> JSON:
        """Erase a customer and their history (E16)."""
        customer = self.customers.pop(customer_id, None)
        if customer is None:
            raise not_found()
        if customer.phone and self.by_phone.get(customer.phone) == customer.id:
            del self.by_phone[customer.phone]
        if customer.telegram_chat_id:
            self.by_chat_id.pop(customer.telegram_chat_id, None)
        for index in self.indexes.values():
            index.remove(customer.id)
        for message in customer.messages:
            self.messages.pop(message.message_id, None)
        return {"success": True}

    # --- History (E29, E30) -------------------------------------------------------------------

    def _status(self, message: Message, now: int) -> str:
        plan = message.plan
        if message.media_ids and len(plan) > 1:
            # The file is fetched when the message goes out: gone before then, UPLOAD_ERROR.
            going_out = plan[1][0]
            gone = [
                self.media[m].deleted_ms
                for m in message.media_ids
                if m in self.media and self.media[m].deleted_ms is not None
            ]
            if gone and min(g for g in gone if g is not None) <= going_out:
                return "UPLOAD_ERROR" if now >= going_out else plan[0][1]
        status = plan[0][1]
        for at, value in plan:
            if at > now:
                break
            status = value
        return status

    def message_json(self, message: Message, now: int | None = None) -> JSON:
        """Return a message exactly as §2.1 and ex:messages-history-response-200.json show."""
        return {
            "customer_id": message.customer_id,
            "message_id": message.message_id,
            "agent_id": message.agent_id,
            "payload": message.payload,
            "origin": message.origin,
            "sent": iso(message.sent_ms),
            "status": self._status(message, self.now_ms() if now is None else now),
        }

    @locked
    def history(self, identifier: str, query: Query) -> JSON:
        """Page a customer's history (E29), newest first by default; offsets shift as it grows."""
        customer = self.find_customer(identifier)
        if customer is None:
            raise not_found()
        offset, limit = paging(query)
        sort = query.get("sort") or "sent"
        if sort not in ("sent", "created"):
            raise ApiError(400, '"sort" must be one of [sent, created]')
        descending = numeric_order(query, -1) == -1
        agent_id = query.get("agentID") or None
        origin = _choice(query, "origin", ORIGINS)
        items = customer.messages
        if agent_id is not None or origin is not None:
            items = [
                m
                for m in items
                if (agent_id is None or m.agent_id == agent_id)
                and (origin is None or m.origin == origin)
            ]
        if descending:
            end = len(items) - offset
            page = list(reversed(items[max(0, end - limit) : end])) if end > 0 else []
        else:
            page = items[offset : offset + limit]
        now = self.now_ms()
        return {
            "messages": [self.message_json(m, now) for m in page],
            "total": len(items),
            "limit": limit,
            "offset": offset,
        }

    @locked
    def delete_message(self, message_id: str) -> None:
        """Delete a message from the store (E30, answered 204); it is not unsent (G44)."""
        message = self.messages.pop(message_id, None)
        if message is None:
            raise not_found()
        customer = self.customers.get(message.customer_id)
        if customer is not None:
            customer.messages.remove(message)

    # --- Keyword events (E17, E19) ------------------------------------------------------------

    @locked
    def list_keyword_events(self, query: Query) -> JSON:
        """List the account's keyword events (E17)."""
        offset, limit = paging(query)
        items = list(catalog.KEYWORD_EVENTS)
        if numeric_order(query, 1) == -1:
            items.reverse()
        return {
            "keyword_events": [dict(e) for e in items[offset : offset + limit]],
            "total": len(items),
            "limit": limit,
            "offset": offset,
        }

    @locked
    def get_keyword_event(self, event_id: str) -> JSON:
        """Return one keyword event (E19)."""
        for event in catalog.KEYWORD_EVENTS:
            if event["_id"] == event_id:
                return {"keyword_event": dict(event)}
        raise not_found()

    @staticmethod
    def keyword_event(text: str) -> JSON | None:
        """Return the keyword event a message text triggers: trimmed, any case (§4.7)."""
        word = text.strip().lower()
        for event in catalog.KEYWORD_EVENTS:
            if word in event["keywords"]:
                return event
        return None

    # --- Media (E24-E28) ----------------------------------------------------------------------

    def media_json(self, item: MediaFile) -> JSON:
        """Return a Media object; its URLs have no enterprise_id, as real ones (G13)."""
        url = f"{self.base_url}/api/media/{item.id}"
        return {
            "_id": item.id,
            "type": item.kind,
            "mime_type": item.mime_type,
            "full_size": len(item.data),
            "file_name": item.file_name,
            "url": url,
            "thumbnail": f"{url}/thumbnail",
            "preview": f"{url}/preview",
        }

    def _store_media(
        self, data: bytes, mime_type: str, file_name: str, message_id: str | None = None
    ) -> MediaFile:
        item = MediaFile(
            id=self.new_id(),
            data=data,
            mime_type=mime_type,
            file_name=file_name,
            created_ms=self.now_ms(),
            message_id=message_id,
        )
        self.media[item.id] = item
        return item

    @locked
    def upload(self, parts: list[media.Part], message_id: str | None = None) -> JSON:
        """Store an uploaded file (E25): one multipart field named `file` (G12)."""
        files = [p for p in parts if p.name == "file"]
        if not files:
            names = ", ".join(sorted({p.name for p in parts})) or "none"
            raise ApiError(400, f'"file" is required (form fields given: {names})')
        others = [p.name for p in parts if p.name != "file"]
        if others or len(files) > 1:
            raise ApiError(400, f'"{others[0] if others else "file"}" is not allowed')
        part = files[0]
        mime_type = media.bare_mime(part.content_type)
        if mime_type not in media.ALLOWED_MIME_TYPES:
            raise ApiError(400, f"File type {mime_type} is not allowed")
        if not part.data:
            raise ApiError(400, "File is empty")
        if len(part.data) > media.MAX_UPLOAD_BYTES:
            raise ApiError(400, "File is too large: the maximum size is 50 MB")
        item = self._store_media(part.data, mime_type, part.filename or "file", message_id)
        self.count("uploads")
        return self.media_json(item)

    @locked
    def list_media(self, query: Query) -> JSON:
        """List the gallery (E24): offset, limit and `type` only."""
        offset, limit = paging(query)
        kind = _choice(query, "type", ("image", "video", "file"))
        items = [
            m
            for m in self.media.values()
            if m.deleted_ms is None and (kind is None or m.kind == kind)
        ]
        return {
            "media": [self.media_json(m) for m in items[offset : offset + limit]],
            "total": len(items),
            "limit": limit,
            "offset": offset,
        }

    @locked
    def delete_media(self, media_ids: list[str]) -> JSON:
        """Delete files with their renditions (E26); sends still to go out end UPLOAD_ERROR."""
        if not media_ids:
            raise ApiError(400, '"media_ids" is required')
        items = [self.media.get(m) for m in media_ids]
        if any(item is None or item.deleted_ms is not None for item in items):
            raise not_found()
        now = self.now_ms()
        for item in items:
            assert item is not None
            item.deleted_ms = now
            item.data = b""
            item.renditions.clear()
        return {}

    def media_ref(self, path: str) -> tuple[str, str]:
        """Return (media id, size type or "") of a media path; raise 404 if it is no media path.

        Four forms: `/api/media/<id>[/<size>]`, the form the objects give (G13), and
        `/api/media/<enterprise_id>/<id>[/<size>]` (E27, E28).
        """
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[:2] != ["api", "media"]:
            raise not_found()
        rest = parts[2:]
        sizes = tuple(media.RENDITION_SIZES)
        if len(rest) == 1:
            return rest[0], ""
        if len(rest) == 2 and rest[1] in sizes:
            return rest[0], rest[1]
        if len(rest) in (2, 3) and rest[0] == catalog.ENTERPRISE_ID:
            if len(rest) == 2:
                return rest[1], ""
            if rest[2] in sizes:
                return rest[1], rest[2]
        raise not_found()

    @locked
    def media_bytes(self, media_id: str, size_type: str = "") -> tuple[str, bytes]:
        """Return (Content-Type, bytes) of a file or an image's rendition; 404 otherwise."""
        item = self.media.get(media_id)
        if item is None or item.deleted_ms is not None:
            raise not_found()
        if not size_type:
            return item.mime_type, item.data
        if item.kind != "image":
            raise not_found("Only images have a thumbnail and a preview")
        if size_type not in item.renditions:
            item.renditions[size_type] = media.rendition(item.data, size_type)
        return item.renditions[size_type]

    def _media_of_uri(self, uri: str) -> MediaFile | None:
        """Return the live file a payload URI names in any of the four forms, renditions of
        images included; None for anything else."""
        split = urlsplit(uri)
        if split.scheme not in ("http", "https"):
            return None
        try:
            media_id, size_type = self.media_ref(split.path)
        except ApiError:
            return None
        item = self.media.get(media_id)
        if item is None or item.deleted_ms is not None:
            return None
        if size_type and item.kind != "image":
            return None  # no renditions but an image's
        return item

    # --- Sends (E31, E34, E35, E37, E38, E45) -------------------------------------------------

    @locked
    def send(self, medium: str, agent_id: str, body: Any) -> Message:
        """Accept a send, or refuse it as the platform would; record what it accepted."""
        agent = self.agents.get(agent_id)
        channel = self.channels.get(agent.channel_id) if agent else None
        if agent is None or channel is None or catalog.MEDIUM_BY_TYPE.get(channel.type) != medium:
            raise not_found()
        if not isinstance(body, dict):
            raise ApiError(400, '"value" must be an object')
        unknown = [key for key in body if key not in ("customerNumber", "payload")]
        if unknown:
            raise ApiError(400, f'"{unknown[0]}" is not allowed')
        number = _digits(body.get("customerNumber"), "customerNumber")
        if body.get("payload") is None:
            raise ApiError(400, '"payload" is required')
        payload = body["payload"]
        try:
            checked = payloads.validate(channel.type, payload)
        except payloads.PayloadError as exc:
            raise ApiError(400, str(exc)) from None
        media_ids = self._check_media(checked)
        if checked.type == "CARD":
            self._check_card(agent, payload)
        if channel.status != "ACTIVE":
            raise ApiError(403, f"Channel is {channel.status}, not ACTIVE", "Forbidden")
        customer = self._recipient(channel, number)
        if customer is not None and customer.subscriptions.get(agent.id) is False:
            # §4.7: "no ability to chat with the client until he sends any message again".
            raise ApiError(403, "Customer unsubscribed from this agent (OPT_OUT)", "Forbidden")
        if channel.type == "WA" and checked.type != "CARD":
            self._check_window(agent, customer)
        if customer is None:
            customer = self._create_customer(number, None)
        message = self._record_agent_message(agent, customer, payload, self.now_ms(), media_ids)
        self.sent.append(
            {
                "message_id": message.message_id,
                "agent_id": agent.id,
                "medium": medium,
                "customerNumber": number,
                "customer_id": customer.id,
                "payload": payload,
                "at": iso(message.sent_ms),
            }
        )
        self.count("sends_accepted")
        return message

    def _recipient(self, channel: Channel, number: str) -> Customer | None:
        """Return the customer a send's customerNumber names (None: a new one, made on accept).

        Telegram takes the chat id or the phone of a customer who has written to a bot (G16);
        a bot cannot start a chat, so anyone else is 404 there.
        """
        if channel.type != "TG":
            return self.customers.get(self.by_phone.get(number, ""))
        customer = self.customers.get(self.by_chat_id.get(number) or self.by_phone.get(number, ""))
        if customer is None or customer.telegram_chat_id is None:
            raise not_found("No Telegram chat with this customerNumber")
        return customer

    def _check_media(self, checked: payloads.Checked) -> tuple[str, ...]:
        ids: list[str] = []
        for path, uri, _rendition in checked.uris:
            item = self._media_of_uri(uri)
            if item is None:
                raise ApiError(400, f'"{path}" media not found')
            if checked.type == "IMAGE" and path == "payload.src.uri" and item.kind != "image":
                raise ApiError(400, f'"{path}" must be an image')
            if item.id not in ids:
                ids.append(item.id)
        return tuple(ids)

    def _check_card(self, agent: Agent, payload: JSON) -> None:
        template_id = payload["template_id"]
        template = next(
            (t for t in self.wa_templates.get(agent.id, []) if t["id"] == template_id), None
        )
        if template is None:
            raise ApiError(400, f'"payload.template_id" template {template_id} not found')
        if template["status"] != "APPROVED":
            raise ApiError(
                400, f"Template {template['name']} is {template['status']}, not APPROVED"
            )
        body, header = catalog.wa_template_texts(template)
        for key, text, part in (
            ("body_variables", body, "body"),
            ("header_variables", header, "header"),
        ):
            wanted, given = payloads.placeholders(text), len(payload.get(key) or [])
            if wanted != given:
                raise ApiError(
                    400,
                    f'"payload.{key}" must contain {wanted} items: the template {part} has '
                    f"{wanted} variables, {given} were given",
                )

    def _check_window(self, agent: Agent, customer: Customer | None) -> None:
        """Refuse a free-form WhatsApp message outside the window (§4.6; G7 says MW is silent
        about the error, so this one is ours)."""
        last = customer.last_inbound_ms.get(agent.id) if customer else None
        if last is None or self.now_ms() - last > self.window_hours * 3_600_000:
            raise ApiError(
                400,
                f"The {self.window_hours:g}-hour customer service window is closed: only a "
                "template (CARD) message can be sent to this customer",
                "WINDOW_CLOSED",
            )

    def _plan(self, at: int, *, may_fail: bool) -> tuple[tuple[int, str], ...]:
        first, second, third = (int(d * 1000) for d in self.status_delays)
        plan = [(at, "CREATED"), (at + first, "SENT")]
        if may_fail and self.rng.random() < self.faults.status_error_rate:
            plan.append((at + second, self.rng.choice(FAILURES)))
        else:
            plan += [(at + second, "DELIVERED"), (at + third, "READ")]
        return tuple(plan)

    def _add_message(self, customer: Customer, message: Message) -> None:
        bisect.insort(customer.messages, message, key=lambda m: m.order)
        self.messages[message.message_id] = message
        if customer.last_message_ms is None or message.sent_ms > customer.last_message_ms:
            customer.last_message_ms = message.sent_ms
        self._touch(customer)

    def _record_agent_message(
        self,
        agent: Agent,
        customer: Customer,
        payload: JSON,
        at: int,
        media_ids: tuple[str, ...],
    ) -> Message:
        message = Message(
            message_id=self.new_id(),
            customer_id=customer.id,
            agent_id=agent.id,
            payload=payload,
            origin="AGENT",
            sent_ms=at,
            seq=next(self._seq),
            plan=self._plan(at, may_fail=True),
            media_ids=media_ids,
        )
        customer.subscriptions.setdefault(agent.id, True)
        self._add_message(customer, message)
        return message

    # --- WhatsApp and generic templates (E39, E41, E43, E47, E49) -----------------------------

    def _wa_agent(self, agent_id: str) -> Agent:
        agent = self.agents.get(agent_id)
        if agent is None or self.channels[agent.channel_id].type != "WA":
            raise not_found()
        return agent

    @locked
    def list_wa_templates(self, agent_id: str, query: Query) -> JSON:
        """Page a WhatsApp agent's templates (E39), in both shapes (G5)."""
        agent = self._wa_agent(agent_id)
        offset, limit = paging(query)
        sort = query.get("sort") or "created"
        if sort not in ("created", "name"):
            raise ApiError(400, '"sort" must be one of [created, name]')
        status = _choice(query, "status", TEMPLATE_STATUSES)
        items = [t for t in self.wa_templates[agent.id] if status is None or t["status"] == status]
        if sort == "name":
            items = sorted(items, key=lambda t: str(t["name"]))
        if numeric_order(query, 1) == -1:
            items = list(reversed(items))
        return {
            "templates": [dict(t) for t in items[offset : offset + limit]],
            "total": len(items),
            "offset": offset,
            "limit": limit,
        }

    @locked
    def get_wa_template(self, agent_id: str, template_id: str) -> JSON:
        """Return one WhatsApp template and the WABA namespace (E41)."""
        agent = self._wa_agent(agent_id)
        for template in self.wa_templates[agent.id]:
            if template["id"] == template_id:
                return {"template": dict(template), "namespace": WA_NAMESPACE}
        raise not_found()

    @locked
    def wa_template_active_broadcast(self, agent_id: str) -> JSON:
        """Say whether a template has an active broadcast (E43): never, here."""
        self._wa_agent(agent_id)
        return {"isActive": False}

    @locked
    def list_generic_templates(self, query: Query) -> JSON:
        """List the generic 2-way templates (E47)."""
        offset, limit = paging(query)
        kinds = ("CARD_TEMPLATE", "TEXT_TEMPLATE", "LIST_TEMPLATE", "CAROUSEL_TEMPLATE")
        kind = _choice(query, "type", kinds)
        items = [
            t for t in catalog.GENERIC_TEMPLATES if kind is None or t["payload"]["type"] == kind
        ]
        return {
            "templates": [dict(t) for t in items[offset : offset + limit]],
            "total": len(items),
            "offset": offset,
            "limit": limit,
        }

    @locked
    def settings(self) -> JSON:
        """Return the 2-way settings (E32), with no chatbot secrets in the sandbox."""
        return {
            "short_links_generation_enabled": False,
            "chatbot_settings": {
                "OWN": {"is_enabled": False},
                "CHATBOT_COM": {"is_enabled": False},
                "DIALOGFLOW": {"is_enabled": False, "credentials": None},
            },
            "notification_settings": {},
        }

    # --- Customers writing in -----------------------------------------------------------------

    def customer_payload(self, kind: str, text: str = "") -> JSON:
        """Return the payload of a customer message of a kind, its files held as Media (G28).

        Inbound payloads are read as mirrors of the send shapes (§4.4).
        """
        if kind == "text":
            return {"type": "TEXT", "text": text or "Hello 👋"}
        if kind == "location":
            return {"type": "LOCATION", "latitude": 40.7128, "longitude": -74.006}
        if kind == "contact":
            return {
                "type": "CONTACT",
                "firstname": "Jane",
                "lastname": "Doe",
                "phone": "14155550188",
            }
        names = {
            "image": ("photo.png", "receipt.png"),
            "video": ("clip.mp4",),
            "voice": ("voice.ogg",),
            "audio": ("voice.ogg",),
            "document": ("invoice.pdf",),
        }
        if kind not in names:
            raise ValueError(f"unknown message kind {kind!r}")
        name = self.rng.choice(names[kind])
        mime_type, data = media.sample_files()[name]
        item = self._store_media(data, mime_type, name)
        described = self.media_json(item)
        src = {"mime": mime_type, "size": len(data), "uri": described["url"]}
        if kind == "image":
            renditions = {}
            for size in media.RENDITION_SIZES:
                rendition_type, body = self.media_bytes(item.id, size)
                renditions[size] = {
                    "mime": rendition_type,
                    "size": len(body),
                    "uri": described[size],
                }
            return {
                "type": "IMAGE",
                "category": "UNSPECIFIED",
                "name": item.file_name,
                "src": src,
                **renditions,
            }
        category = {"video": "VIDEO", "voice": "VOICE", "audio": "AUDIO"}.get(kind, "APPLICATION")
        return {"type": "MEDIA", "category": category, "name": item.file_name, "src": src}

    def _customer_message(
        self, customer: Customer, agent: Agent, payload: JSON, at: int
    ) -> list[Message]:
        """Record what a customer wrote, then the keyword rules (§2.4, §4.7)."""
        channel = self.channels[agent.channel_id]
        if channel.type == "TG" and customer.telegram_chat_id is None:
            chat_id = str(self.rng.randrange(100_000_000, 999_999_999))
            customer.telegram_chat_id = chat_id
            self.by_chat_id[chat_id] = customer.id
        message = Message(
            message_id=self.new_id(),
            customer_id=customer.id,
            agent_id=agent.id,
            payload=payload,
            origin="CUSTOMER",
            sent_ms=at,
            seq=next(self._seq),
            plan=((at, "DELIVERED"),),
        )
        self._add_message(customer, message)
        previous = customer.last_inbound_ms.get(agent.id)
        customer.last_inbound_ms[agent.id] = max(previous or at, at)
        # "until he sends any message again": any message subscribes the customer again.
        customer.subscriptions[agent.id] = True
        out = [message]
        text = payload.get("text") if payload.get("type") == "TEXT" else None
        event = self.keyword_event(text) if isinstance(text, str) else None
        if event is not None:
            kind = event["config"]["type"]
            replies = channel.keyword_events_messages
            if kind == "OPT_OUT":
                customer.subscriptions[agent.id] = False
                reply = replies["opt_out_message"]
            elif kind == "HELP":
                reply = replies["help_message"]
            else:
                reply = event["config"].get("message") or channel.welcome_message
            bot = Message(
                message_id=self.new_id(),
                customer_id=customer.id,
                agent_id=agent.id,
                payload={"type": "TEXT", "text": reply},
                origin="BOT",
                sent_ms=at + 1,
                seq=next(self._seq),
                plan=self._plan(at + 1, may_fail=False),
            )
            self._add_message(customer, bot)
            out.append(bot)
            self.count(f"keyword_{kind.lower()}")
        self.count("inbound")
        return out

    def _agent_for(self, customer: Customer | None, medium: str) -> Agent:
        kind = catalog.TYPE_BY_MEDIUM.get(medium)
        if kind is None:
            raise ValueError(
                f"unknown medium {medium!r}: one of {', '.join(catalog.TYPE_BY_MEDIUM)}"
            )
        agents = [
            agent
            for channel in self.channels.values()
            if channel.type == kind and channel.status == "ACTIVE"
            for agent in channel.agents
        ]
        if customer is not None:
            ids = {a.id for a in agents}
            for message in reversed(customer.messages):
                if message.agent_id in ids:
                    return self.agents[message.agent_id]
            if customer.persona is not None:
                own = self.persona_agent(customer.persona)
                if own.id in ids:
                    return own
        return agents[0]

    def _inbound_item(self, item: Any, now: int) -> InboundItem:
        """Check one control-API inbound item; raise ValueError saying what is wrong."""
        if not isinstance(item, dict):
            raise ValueError("each message is a JSON object")
        ref = item.get("customer")
        if not isinstance(ref, str) or not ref:
            raise ValueError('"customer" (an _id or a phone) is required')
        if self.find_customer(ref) is None and not (ref.isdigit() and ref.isascii()):
            raise ValueError(f"unknown customer {ref!r}: give an _id, or a phone in digits")
        name = item.get("name")
        if name is not None and not isinstance(name, str):
            raise ValueError('"name" must be a string')
        agent, medium = None, item.get("medium")
        if item.get("agent_id") is not None:
            agent = self.agents.get(str(item["agent_id"]))
            if agent is None:
                raise ValueError(f"unknown agent_id {item['agent_id']!r}")
        elif medium not in catalog.TYPE_BY_MEDIUM:
            raise ValueError(
                f'give "agent_id" or "medium": one of {", ".join(catalog.TYPE_BY_MEDIUM)}'
            )
        payload, kind, words = (
            item.get("payload"),
            str(item.get("kind") or "text"),
            item.get("text"),
        )
        if payload is not None:
            if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
                raise ValueError('"payload" must be an object with a string "type"')
        elif kind == "text" and not isinstance(words, str):
            raise ValueError('give "text", "payload" or "kind"')
        elif kind not in INBOUND_KINDS:
            raise ValueError(f"unknown kind {kind!r}: one of {', '.join(INBOUND_KINDS)}")
        at = now
        if item.get("sent") is not None:
            try:
                at = parse_iso(str(item["sent"]))
            except ValueError as exc:
                raise ValueError(f'"sent" must be an ISO time with a zone: {exc}') from None
            if at > now:
                raise ValueError('"sent" must not be in the future')
        return InboundItem(
            customer=ref,
            name=name,
            agent=agent,
            medium=str(medium or ""),
            payload=payload,
            kind=kind,
            text=words if isinstance(words, str) else "",
            sent_ms=at,
        )

    @locked
    def inbound(self, items: list[Any]) -> list[JSON]:
        """Make customers write (the control API): all items are checked before any applies."""
        now = self.now_ms()
        answers = []
        for item in [self._inbound_item(item, now) for item in items]:
            customer = self.find_customer(item.customer)
            if customer is None:
                customer = self._create_customer(item.customer, item.name)
            elif item.name:
                customer.name = item.name
            agent = item.agent or self._agent_for(customer, item.medium)
            payload = item.payload or self.customer_payload(item.kind, item.text)
            message = self._customer_message(customer, agent, payload, item.sent_ms)[0]
            answers.append(
                {
                    "message_id": message.message_id,
                    "customer_id": customer.id,
                    "agent_id": agent.id,
                    "sent": iso(message.sent_ms),
                }
            )
        return answers

    @locked
    def simulate_inbound(self) -> Message | None:
        """Make a random persona write: mostly text, some media, now and then STOP."""
        personas = [
            c for c in self.customers.values() if c.persona is not None and c.persona.weight > 0
        ]
        if not personas:
            return None
        weights = [c.persona.weight for c in personas if c.persona is not None]
        customer = self.rng.choices(personas, weights=weights)[0]
        assert customer.persona is not None
        agent = self.persona_agent(customer.persona)
        kinds: dict[str, tuple[tuple[str, int], ...]] = {
            "SMS": (("text", 97), ("stop", 3)),
            "VI": (("text", 82), ("image", 15), ("stop", 3)),
            "TG": (
                ("text", 66),
                ("image", 12),
                ("voice", 8),
                ("location", 5),
                ("document", 5),
                ("video", 2),
                ("stop", 2),
            ),
            "WA": (("text", 75), ("image", 15), ("location", 8), ("stop", 2)),
        }
        options = kinds.get(self.channels[agent.channel_id].type, (("text", 1),))
        kind = self.rng.choices([k for k, _ in options], weights=[w for _, w in options])[0]
        if kind == "stop":
            payload = {"type": "TEXT", "text": "STOP"}
        elif kind == "text":
            payload = {"type": "TEXT", "text": customer.next_line()}
        else:
            payload = self.customer_payload(kind)
        return self._customer_message(customer, agent, payload, self.now_ms())[0]

    @locked
    def reply(self, customer_id: str, agent_id: str) -> Message | None:
        """Make a customer answer what an agent sent them."""
        customer = self.customers.get(customer_id)
        agent = self.agents.get(agent_id)
        if customer is None or agent is None:
            return None
        payload = {"type": "TEXT", "text": customer.next_line()}
        return self._customer_message(customer, agent, payload, self.now_ms())[0]

    # --- Control API --------------------------------------------------------------------------

    @locked
    def bulk_customers(self, count: Any, prefix: Any = "1999") -> JSON:
        """Create `count` customers with no messages (phones `<prefix><serial>`), quickly."""
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 200_000:
            raise ValueError('"count" must be a whole number from 1 to 200000')
        prefix = str(prefix or "1999")
        if not prefix.isdigit() or len(prefix) > 8:
            raise ValueError('"prefix" must be up to 8 digits (phones are <prefix><serial>)')
        made: list[JSON] = []
        while len(made) < count:
            serial = next(self._bulk_serial)
            phone = f"{prefix}{serial:07d}"
            if phone in self.by_phone:
                continue
            customer = self._create_customer(phone, f"Customer {prefix}-{serial}")
            made.append({"_id": customer.id, "phone": phone})
        return {"created": len(made), "customers": made}

    @locked
    def customer_detail(self, ref: str) -> JSON:
        """Return a customer and their whole history, oldest first (for tests)."""
        customer = self.find_customer(ref)
        if customer is None:
            raise not_found()
        now = self.now_ms()
        return {
            "customer": customer.as_json(),
            "messages": [self.message_json(m, now) for m in customer.messages],
        }

    @locked
    def sent_log(self, customer_ref: str = "") -> JSON:
        """Return every send the platform accepted, or one customer's."""
        items = self.sent
        if customer_ref:
            customer = self.find_customer(customer_ref)
            ids = {customer.id} if customer else set()
            items = [
                s for s in items if s["customer_id"] in ids or s["customerNumber"] == customer_ref
            ]
        return {"sent": list(items), "total": len(items)}

    @locked
    def count_call(self, route: str) -> None:
        self.calls[route] = self.calls.get(route, 0) + 1

    @locked
    def calls_summary(self) -> JSON:
        return {"total": sum(self.calls.values()), "calls": dict(sorted(self.calls.items()))}

    @locked
    def calls_reset(self) -> JSON:
        self.calls = {}
        return self.calls_summary()

    @locked
    def summary(self) -> JSON:
        """Say what the account holds and how it is set up (the control API's state)."""
        now = self.clock()
        return {
            "service": "MessageWhiz sandbox",
            "base_url": self.base_url,
            "email": self.email,
            "customers": len(self.customers),
            "messages": len(self.messages),
            "sent": len(self.sent),
            "media": sum(1 for m in self.media.values() if m.deleted_ms is None),
            "live_tokens": sum(
                1 for exp, gen in self.tokens.values() if gen == self.token_generation and exp > now
            ),
            "faults": asdict(self.faults),
            "status_delays": list(self.status_delays),
            "window_hours": self.window_hours,
            "calls": sum(self.calls.values()),
            "counters": dict(self.counters),
            "channels": [
                {
                    "_id": c.id,
                    "type": c.type,
                    "name": c.name,
                    "status": c.status,
                    "agents": [a.id for a in c.agents],
                }
                for c in self.channels.values()
            ],
        }
