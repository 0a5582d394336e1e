"""What the simulated MessageWhiz account has: channels, agents, keyword events, templates and
customers. Ids are fixed (uuid5 of a name), so a restarted sandbox is the same account."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

_NAMESPACE = uuid.UUID("5b0c3f8e-2a61-4d0e-9a7c-6d3f1e2b9c40")

# The account's creation time: every seeded entity was created then (2024-03-01T09:00:00Z).
SEEDED_MS = 1_709_283_600_000


def fixed_id(name: str) -> str:
    """Return the stable uuid of a seeded entity."""
    return str(uuid.uuid5(_NAMESPACE, name))


# The send path's medium for each channel type (§3.1); ECHO channels cannot send.
MEDIUM_BY_TYPE = {
    "RCS": "rcs",
    "SMS": "sms",
    "TG": "telegram",
    "VI": "viber",
    "WA": "whatsapp",
    "WECHAT": "wechat",
}
TYPE_BY_MEDIUM = {medium: kind for kind, medium in MEDIUM_BY_TYPE.items()}

OPT_OUT_MESSAGE = "You are unsubscribed and will get no more messages. Write to us any time."
HELP_MESSAGE = "We'll help you as soon as possible. Reply STOP to unsubscribe."


@dataclass(frozen=True)
class ChannelSeed:
    """A channel and the configs of its agents."""

    key: str
    type: str
    status: str
    config: JSON
    agent_configs: tuple[JSON, ...]
    welcome_message: str = "Welcome to Switchboard Demo! How can we help you?"

    @property
    def id(self) -> str:
        return fixed_id(f"channel:{self.key}")

    def agent_id(self, index: int) -> str:
        return fixed_id(f"agent:{self.key}:{index}")


CHANNELS: tuple[ChannelSeed, ...] = (
    ChannelSeed(
        key="sms-usa",
        type="SMS",
        status="ACTIVE",
        config={
            "type": "SMS",
            "name": "SMS USA",
            "region": "NA",
            "country": "US",
            "short_code": None,
            "mw_sender_list_id": None,
        },
        # Two VLNs: only SMS channels may have more than one agent (§0.3).
        agent_configs=({"vln": "14155550100"}, {"vln": "14155550101"}),
    ),
    ChannelSeed(
        key="whatsapp-support",
        type="WA",
        status="ACTIVE",
        config={"type": "WA", "name": "WhatsApp Support"},
        # Agent config is undocumented beyond SMS's vln (G38): a plausible one.
        agent_configs=({"phone": "14155550123"},),
    ),
    ChannelSeed(
        key="viber",
        type="VI",
        status="ACTIVE",
        config={"type": "VI", "name": "Viber Switchboard"},
        agent_configs=({"sender": "Switchboard"},),
    ),
    ChannelSeed(
        key="telegram",
        type="TG",
        status="ACTIVE",
        # The access token is never listed (G35).
        config={"type": "TG", "name": "Telegram Concierge", "bot_name": "SwitchboardHelpBot"},
        agent_configs=({"bot_name": "SwitchboardHelpBot"},),
    ),
    ChannelSeed(
        key="rcs",
        type="RCS",
        status="ACTIVE",
        config={
            "type": "RCS",
            "name": "Switchboard RCS",
            "region": "EU",
            "country": ["GB", "FR"],
            "description": "Switchboard demo brand",
            "color": "#1F4E79",
            "banner": "https://example.com/rcs/banner.jpg",
            "logo": "https://example.com/rcs/logo.jpg",
            "phone": "+442071838750",
            "label_phone": "Call us",
            "website": "https://example.com",
            "label_website": "Website",
            "email": "support@example.com",
            "label_email": "Email",
            "privacy": "https://example.com/privacy",
            "terms": "https://example.com/terms",
            "category": "Productivity",
        },
        agent_configs=({"agent_name": "Switchboard"},),
    ),
    ChannelSeed(
        key="wechat",
        type="WECHAT",
        status="ACTIVE",
        config={"type": "WECHAT", "name": "WeChat Service"},
        agent_configs=({"app_id": "wx5b0c3f8e2a614d0e"},),
    ),
    ChannelSeed(
        key="whatsapp-marketing",
        type="WA",
        status="ON_APPROVAL",
        config={"type": "WA", "name": "WhatsApp Marketing"},
        agent_configs=({"phone": "14155550124"},),
    ),
)


def channel_seed(key: str) -> ChannelSeed:
    """Return the seeded channel with this key."""
    return next(seed for seed in CHANNELS if seed.key == key)


# Keyword events are account-wide (§2.4); OPT_OUT and HELP answer with the channel's messages,
# JOIN with its own.
KEYWORD_EVENTS: tuple[JSON, ...] = (
    {
        "_id": fixed_id("keyword:opt-out"),
        "keywords": ["stop", "unsubscribe"],
        "config": {"type": "OPT_OUT"},
    },
    {
        "_id": fixed_id("keyword:join"),
        "keywords": ["start", "join"],
        "config": {"type": "JOIN", "message": "You've joined Switchboard Demo updates."},
    },
    {
        "_id": fixed_id("keyword:help"),
        "keywords": ["help"],
        "config": {"type": "HELP"},
    },
)


# A WhatsApp agent's templates, in both shapes the spec shows (G5): most are Meta's
# `components[]` + `preview` shape, as every example is; `payment_due` is the flat response
# schema (`body`, `header`, `buttons`, `footer`). Ids are filled in per agent.
_WA_TEMPLATES: tuple[JSON, ...] = (
    {
        "id": "1",
        "category": "UTILITY",
        "status": "APPROVED",
        "language": "en",
        "name": "order_update",
        "preview": "Hi {{1}}, your order {{2}} is on its way.",
        "components": [
            {"type": "BODY", "text": "Hi {{1}}, your order {{2}} is on its way."},
            {"type": "FOOTER", "text": "Switchboard Demo"},
        ],
    },
    {
        "id": "2",
        "category": "UTILITY",
        "status": "APPROVED",
        "language": "en",
        "name": "appointment_reminder",
        "preview": "Your appointment is confirmed for {{1}}. Reply to reschedule.",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Reminder for {{1}}"},
            {
                "type": "BODY",
                "text": "Your appointment is confirmed for {{1}}. Reply to reschedule.",
            },
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Confirm"},
                    {"type": "QUICK_REPLY", "text": "Reschedule"},
                ],
            },
        ],
    },
    {
        "id": "3",
        "category": "MARKETING",
        "status": "APPROVED",
        "language": "en",
        "name": "welcome_back",
        "preview": "Welcome back! Reply to this message to talk to our team.",
        "components": [
            {"type": "BODY", "text": "Welcome back! Reply to this message to talk to our team."}
        ],
    },
    {
        # The docs' own example (legacy category, Afrikaans), as it is listed.
        "id": "4",
        "category": "APPOINTMENT_UPDATE",
        "status": "APPROVED",
        "language": "af",
        "name": "button_for_demo_1",
        "preview": "some text",
        "components": [
            {"type": "BODY", "text": "some text"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "button 1"},
                    {"type": "QUICK_REPLY", "text": "button 3"},
                ],
            },
        ],
    },
    {
        # The flat schema shape (§5.1 (a)).
        "id": "5",
        "category": "UTILITY",
        "status": "APPROVED",
        "language": "en_US",
        "name": "payment_due",
        "body": "Hello {{1}}, your payment of {{2}} is due on {{3}}.",
        "header": {"type": "TEXT", "value": "Payment reminder"},
        "buttons": {
            "type": "CTA",
            "text": "Contact us",
            "CTAOrder": ["PHONE", "WEBSITE"],
            "phone": {"text": "Call us", "number": "+14155550123"},
            "website": {"text": "Pay online", "link": "https://example.com/pay"},
            "quickReplyBlocks": [],
        },
        "footer": None,
    },
    {
        "id": "6",
        "category": "ALERT_UPDATE",
        "status": "PENDING",
        "language": "en",
        "name": "summer_promo",
        "preview": "Summer sale: {{1}} off everything until {{2}}!",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Summer sale"},
            {"type": "BODY", "text": "Summer sale: {{1}} off everything until {{2}}!"},
            {"type": "FOOTER", "text": "Reply STOP to unsubscribe"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "PHONE_NUMBER", "text": "Call", "phone_number": "+14155550123"},
                    {"type": "URL", "text": "Shop", "url": "https://example.com/shop"},
                ],
            },
        ],
    },
    {
        "id": "7",
        "category": "MARKETING",
        "status": "REJECTED",
        "language": "en",
        "name": "win_a_prize",
        "preview": "You won! Click now to claim your prize.",
        "components": [{"type": "BODY", "text": "You won! Click now to claim your prize."}],
    },
)


def wa_templates(agent_key: str) -> list[JSON]:
    """Return a WhatsApp agent's templates, with numeric ids like Facebook's (E39)."""
    base = 493_000_000_000_000 + uuid.uuid5(_NAMESPACE, f"templates:{agent_key}").int % 10**12 * 10
    return [{**template, "id": str(base + int(template["id"]))} for template in _WA_TEMPLATES]


def wa_template_texts(template: JSON) -> tuple[str, str]:
    """Return a template's (body text, TEXT header text), from either shape."""
    if "components" in template:
        body = header = ""
        for component in template["components"]:
            if component.get("type") == "BODY":
                body = str(component.get("text") or "")
            elif component.get("type") == "HEADER" and component.get("format") == "TEXT":
                header = str(component.get("text") or "")
        return body, header
    head = template.get("header") or {}
    header = str(head.get("value") or "") if head.get("type") == "TEXT" else ""
    return str(template.get("body") or ""), header


# Generic "2-way" templates (§5.2), which also tell the enterprise id (§2.6).
ENTERPRISE_ID = fixed_id("enterprise")
USER_ID = fixed_id("user")
GENERIC_TEMPLATES: tuple[JSON, ...] = (
    {
        "_id": fixed_id("generic:greeting"),
        "enterprise_id": ENTERPRISE_ID,
        "user_id": USER_ID,
        "payload": {"type": "TEXT_TEMPLATE", "title": "Greeting", "text": "Good day!"},
        "created": "2024-03-01T09:00:00.000Z",
        "modified": "2024-03-01T09:00:00.000Z",
    },
)


@dataclass(frozen=True)
class Persona:
    """A simulated customer: who, on which channel and agent, saying what."""

    key: str
    name: str
    phone: str
    channel: str
    agent: int = 0
    country: str = "US"
    # Telegram customers have a chat id; one of them has no phone at all (§4.2).
    telegram_chat_id: str = ""
    # How often the background traffic picks this persona (0: only through the control API).
    weight: int = 0
    lines: tuple[str, ...] = field(default_factory=tuple)

    @property
    def id(self) -> str:
        return fixed_id(f"customer:{self.key}")


PERSONAS: tuple[Persona, ...] = (
    Persona(
        "maria",
        "Maria Gonzalez",
        "14155550111",
        "sms-usa",
        0,
        weight=5,
        lines=(
            "Hi, my package hasn't arrived yet",
            "The tracking number is 1Z999AA10123456784",
            "Thanks, that helps!",
            "Can I change the delivery address?",
        ),
    ),
    Persona(
        "james",
        "James Carter",
        "14155550112",
        "sms-usa",
        0,
        weight=4,
        lines=(
            "Is the store open on Sunday?",
            "What time do you close today?",
            "Great, see you then",
        ),
    ),
    Persona(
        "olivia",
        "Olivia Brown",
        "14155550113",
        "sms-usa",
        1,
        weight=3,
        lines=("I was charged twice for order 5521", "Any update on my refund?", "ok thanks"),
    ),
    Persona(
        "ethan",
        "Ethan Miller",
        "14155550114",
        "sms-usa",
        1,
        weight=3,
        lines=("Do you ship to Canada?", "How long does it take?", "Perfect"),
    ),
    Persona(
        "sophie",
        "Sophie Martin",
        "33612345678",
        "sms-usa",
        1,
        country="FR",
        weight=2,
        lines=("Bonjour, ma commande est en retard", "Merci beaucoup !"),
    ),
    Persona(
        "yulia",
        "Yulia Kovalenko",
        "380671234567",
        "viber",
        country="UA",
        weight=4,
        lines=(
            "Hello! I need help with my account",
            "I can't log in since yesterday",
            "It works now, thank you",
        ),
    ),
    Persona(
        "daniel",
        "Daniel Cohen",
        "972521234567",
        "viber",
        country="IL",
        weight=3,
        lines=("Is the blue model back in stock?", "Please tell me when it is", "Thanks!"),
    ),
    Persona(
        "noah",
        "Noah Fischer",
        "4915112345678",
        "telegram",
        country="DE",
        telegram_chat_id="584712390",
        weight=4,
        lines=(
            "Hallo, where is my order?",
            "Order number 88120",
            "Danke!",
        ),
    ),
    Persona(
        "aiko",
        "Aiko Tanaka",
        "",
        "telegram",
        country="JP",
        telegram_chat_id="731955201",
        weight=3,
        lines=("Hello, I'd like to return an item", "It was the wrong size", "Thank you 🙏"),
    ),
    Persona(
        "lucas",
        "Lucas Silva",
        "5511987654321",
        "telegram",
        country="BR",
        telegram_chat_id="602384117",
        weight=2,
        lines=("Oi! Do you have gift cards?", "How much are they?", "Obrigado!"),
    ),
    Persona(
        "priya",
        "Priya Sharma",
        "919876543210",
        "whatsapp-support",
        country="IN",
        weight=2,
        lines=(
            "Hi, I need an invoice for my last purchase",
            "The order was placed on Monday",
            "Got it, thanks 👍",
        ),
    ),
    Persona(
        "ahmed",
        "Ahmed Hassan",
        "971501234567",
        "whatsapp-support",
        country="AE",
        weight=1,
        lines=("Hello, is my subscription still active?", "Thank you"),
    ),
    Persona(
        "emma",
        "Emma Wilson",
        "447700900123",
        "rcs",
        country="GB",
        lines=("Hi! Which plan suits a small team?", "Sounds good"),
    ),
    Persona(
        "li",
        "Li Wei",
        "8613812345678",
        "wechat",
        country="CN",
        lines=("Hello, do you deliver to Shanghai?", "Thanks"),
    ),
)

# What customers with no persona (new numbers, bulk customers) say when they answer.
CUSTOMER_LINES = (
    "Thanks!",
    "OK, got it",
    "When will it arrive?",
    "Can someone call me back?",
)

# Where a phone number's country code points (longest prefix wins); the platform derives a new
# customer's country from the number (ex:customer-create-response-201.json).
COUNTRY_PREFIXES = {
    "1": "US",
    "7": "RU",
    "33": "FR",
    "34": "ES",
    "39": "IT",
    "44": "GB",
    "49": "DE",
    "52": "MX",
    "55": "BR",
    "61": "AU",
    "81": "JP",
    "86": "CN",
    "91": "IN",
    "380": "UA",
    "971": "AE",
    "972": "IL",
}


def country_of(phone: str) -> str | None:
    """Return the ISO-2 country of a phone number's calling code, if known."""
    for length in (3, 2, 1):
        country = COUNTRY_PREFIXES.get(phone[:length])
        if country:
            return country
    return None
