"""Seed an inbox at scale for the pages benchmark: sessions, messages and all around them.

The fixed part (a platform account, channels of several media, teams, agents, labels, templates,
canned replies) is made through the ORM; the bulk (contacts, identities, sessions, messages,
labels on sessions, timeline entries, notes) goes in with PostgreSQL COPY. Seeding is additive:
`seed_to(world, size)` grows the database to `size`, so a run measures at 1/100 first and then
adds the other 99/100 to the same rows. One session, `world.thread`, is a long conversation that
grows by older history (its latest messages stay the same), so its page shows the same content
at every size.

Ids are assigned here: each table is locked against concurrent inserts for the step, its
sequence moved past the block we use, and the tables analysed afterwards.
"""

from __future__ import annotations

import heapq
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.hashers import make_password
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import AgentProfile, Team, User
from inbox.models import CannedReply, Label, Session
from integrations.models import Channel, ProviderAccount, Template, TemplateApproval


@dataclass(frozen=True)
class Size:
    """How big the seeded inbox is: sessions and messages in all, and the long thread."""

    sessions: int
    messages: int
    thread: int

    def __str__(self) -> str:
        return f"{self.sessions:,} sessions, {self.messages:,} messages (thread {self.thread:,})"


# The sizes a run measures at, in one place: (1/100, full) for the real run and for quick mode.
SIZES = (Size(500, 10_000, 100), Size(50_000, 1_000_000, 10_000))
QUICK_SIZES = (Size(50, 1_000, 100), Size(500, 10_000, 1_000))


def sizes(quick: bool) -> tuple[Size, Size]:
    """Return the (small, full) sizes a run seeds and measures at."""
    return QUICK_SIZES if quick else SIZES


AGENT_USERNAME = "bench-pages-agent"
AGENT_PASSWORD = "bench-pages-agent-password-0123"  # noqa: S105 - a throwaway user

# --- What the data looks like ------------------------------------------------------------------

# (name, medium, lane, share of sessions)
CHANNELS = [
    ("WhatsApp Support", "whatsapp", "4930901820", 0.30),
    ("WhatsApp Sales", "whatsapp", "4930901821", 0.15),
    ("WhatsApp LatAm", "whatsapp", "5215512345", 0.12),
    ("Telegram", "telegram", "switchboard_help_bot", 0.08),
    ("SMS Alerts", "sms", "447700900123", 0.10),
    ("SMS Sales", "sms", "447700900124", 0.05),
    ("Instagram", "instagram", "switchboard.shop", 0.10),
    ("Web chat", "webchat", "shop.example.com", 0.10),
]
# (name, channel indexes); the measured agent is in the first two.
TEAMS = [
    ("Support", [0, 3, 4, 7]),
    ("Billing", [0, 4]),
    ("Sales", [1, 5]),
    ("LatAm", [2]),
    ("Social", [6]),
]
AGENTS_PER_TEAM = 4
LABELS = [
    ("vip", "purple"),
    ("billing", "orange"),
    ("refund", "red"),
    ("delivery", "blue"),
    ("bug", "pink"),
    ("follow-up", "yellow"),
    ("feedback", "green"),
    ("spam", "grey"),
]
# (status, share, how long ago the last message was: (min, max) hours)
STATUSES = [
    ("open", 0.18, (0.0, 30.0)),
    ("pending", 0.04, (1.0, 72.0)),
    ("resolved", 0.48, (2.0, 24.0 * 180)),
    ("closed", 0.30, (24.0, 24.0 * 180)),
]
# (type, share of messages); templates are outbound only.
MESSAGE_TYPES = [
    ("text", 0.88),
    ("image", 0.04),
    ("document", 0.02),
    ("voice", 0.015),
    ("audio", 0.005),
    ("video", 0.01),
    ("location", 0.01),
    ("contact", 0.005),
    ("template", 0.015),
]
# A word that the generator puts in about one message in a thousand: a selective search.
RARE_WORD = "Quokka"
COMMON_WORD = "refund"
# The first sessions of every step: (status, channel index, assigned to the measured agent),
# all with one customer, the rare word and the "refund" label.
SHOWCASE = [("open", 0, True), ("pending", 4, False), ("resolved", 3, True), ("closed", 7, False)]
SHOWCASE_CONTACT = ("es_ES", "Lucía", "García")
SHOWCASE_LABEL = "refund"
THREAD = -1  # the long thread's key among a step's sessions (plan indexes are 0 and up)

# (language, country calling code, first names, last names)
PEOPLE = {
    "en_US": (
        "1",
        ["Emma", "Liam", "Olivia", "Noah", "Ava", "Mason"],
        ["Smith", "Johnson", "Brown"],
    ),
    "en_GB": ("44", ["Amelia", "Harry", "Isla", "George"], ["Taylor", "Davies", "Evans", "Wilson"]),
    "es_ES": (
        "34",
        ["Lucía", "Hugo", "Martina", "Pablo", "Sofía"],
        ["García", "Fernández", "López"],
    ),
    "es_MX": (
        "52",
        ["Valentina", "Santiago", "Ximena", "Mateo"],
        ["Hernández", "Martínez", "Pérez"],
    ),
    "pt_BR": ("55", ["Ana", "João", "Beatriz", "Lucas"], ["Silva", "Santos", "Oliveira", "Souza"]),
    "fr_FR": (
        "33",
        ["Léa", "Louis", "Chloé", "Gabriel"],
        ["Martin", "Bernard", "Dubois", "Lefèvre"],
    ),
    "de_DE": ("49", ["Mia", "Leon", "Hannah", "Jonas", "Lena"], ["Müller", "Schmidt", "Schneider"]),
    "it_IT": ("39", ["Giulia", "Francesco", "Aurora", "Alessandro"], ["Rossi", "Russo", "Ferrari"]),
    "tr_TR": ("90", ["Zeynep", "Yusuf", "Elif", "Mehmet"], ["Yılmaz", "Kaya", "Demir", "Şahin"]),
    "ar_AE": ("971", ["فاطمة", "محمد", "مريم", "أحمد"], ["الهاشمي", "المنصوري", "الكعبي"]),
    "hi_IN": ("91", ["आरव", "अनन्या", "विवान", "दिया"], ["शर्मा", "वर्मा", "पटेल", "सिंह"]),
    "zh_CN": ("86", ["伟", "芳", "娜", "磊"], ["王", "李", "张", "刘"]),
    "ja_JP": ("81", ["陽翔", "結衣", "蓮", "葵"], ["佐藤", "鈴木", "高橋", "田中"]),
    "ru_RU": ("7", ["Анна", "Иван", "Мария", "Дмитрий"], ["Иванов", "Смирнов", "Кузнецов"]),
}
LANGUAGE_SHARE = {
    "en_US": 0.22,
    "en_GB": 0.10,
    "es_ES": 0.08,
    "es_MX": 0.08,
    "pt_BR": 0.08,
    "fr_FR": 0.07,
    "de_DE": 0.08,
    "it_IT": 0.04,
    "tr_TR": 0.04,
    "ar_AE": 0.05,
    "hi_IN": 0.05,
    "zh_CN": 0.04,
    "ja_JP": 0.03,
    "ru_RU": 0.04,
}
# What customers write and agents answer, per language family; {o} is an order number,
# {p} a product, {a} an amount, {d} a day.
CUSTOMER_LINES = {
    "en": [
        "Hi, my order {o} hasn't arrived yet.",
        "Can I get a refund for order {o}? The {p} is broken.",
        "The app keeps crashing when I open my invoice.",
        "I was charged twice this month, {a} each time.",
        "Is the {p} available in blue?",
        "When will my package be delivered?",
        "Please cancel my subscription.",
        "Thanks, that worked!",
        "Still waiting for an answer about the {p}...",
        "Can you change the delivery address for {o}?",
        "ok",
        "Great, thank you so much 🙏",
    ],
    "es": [
        "Hola, mi pedido {o} todavía no ha llegado.",
        "¿Puedo obtener un reembolso del pedido {o}? El {p} vino roto.",
        "Me cobraron dos veces este mes, {a} cada vez.",
        "¿Tienen el {p} en azul?",
        "Por favor, cancelen mi suscripción.",
        "Gracias, ya funciona 👍",
        "¿Cuándo llega mi paquete?",
    ],
    "pt": [
        "Olá, meu pedido {o} ainda não chegou.",
        "Quero cancelar minha assinatura.",
        "Fui cobrado duas vezes, {a} cada vez.",
        "O {p} chegou com defeito, quero um reembolso (refund).",
        "Obrigado!",
    ],
    "fr": [
        "Bonjour, ma commande {o} n'est pas encore arrivée.",
        "Je voudrais un remboursement pour le {p}, s'il vous plaît.",
        "La facture de ce mois est incorrecte : {a} au lieu de 19,90 €.",
        "Merci beaucoup !",
    ],
    "de": [
        "Hallo, meine Bestellung {o} ist noch nicht angekommen.",
        "Ich möchte mein Abonnement kündigen.",
        "Die Rechnung stimmt nicht, mir wurden {a} abgebucht.",
        "Gibt es den {p} auch in Schwarz?",
        "Danke, hat geklappt!",
    ],
    "it": [
        "Ciao, il mio ordine {o} non è ancora arrivato.",
        "Vorrei un rimborso per il {p}.",
        "Grazie mille!",
    ],
    "tr": [
        "Merhaba, siparişim {o} henüz gelmedi.",
        "Aboneliğimi iptal etmek istiyorum.",
        "Teşekkürler!",
    ],
    "ar": ["مرحبا، طلبي {o} لم يصل بعد.", "أريد استرداد المبلغ {a} من فضلك.", "شكرا جزيلا!"],
    "hi": ["नमस्ते, मेरा ऑर्डर {o} अभी तक नहीं आया।", "मुझे रिफंड चाहिए।", "धन्यवाद!"],
    "zh": ["你好，我的订单 {o} 还没有到。", "我想申请退款，{p} 坏了。", "谢谢！"],
    "ja": [
        "こんにちは、注文 {o} がまだ届いていません。",
        "{p} の返金をお願いします。",
        "ありがとうございます！",
    ],
    "ru": ["Здравствуйте, мой заказ {o} ещё не пришёл.", "Хочу вернуть деньги за {p}.", "Спасибо!"],
}
AGENT_LINES = {
    "en": [
        "Thanks for reaching out! Let me check order {o} for you.",
        "I've issued a refund of {a}; it should appear in 3–5 business days.",
        "Your package is with the courier and should arrive {d}.",
        "Sorry about that! Could you send a photo of the {p}?",
        "I've cancelled the subscription; you won't be charged again.",
        "Is there anything else I can help you with?",
    ],
    "es": [
        "¡Gracias por escribirnos! Reviso el pedido {o} ahora mismo.",
        "Ya procesamos el reembolso de {a}; lo verás en 3 a 5 días hábiles.",
        "Tu paquete llega {d}.",
    ],
    "pt": ["Obrigado pelo contato! Vou verificar o pedido {o}.", "O reembolso de {a} foi feito."],
    "fr": [
        "Merci pour votre message ! Je vérifie la commande {o}.",
        "Le remboursement de {a} est fait.",
    ],
    "de": ["Danke für Ihre Nachricht! Ich prüfe die Bestellung {o}.", "Die {a} wurden erstattet."],
}
PRODUCTS = ["headphones", "phone case", "smart watch", "charger", "backpack", "coffee grinder"]
DAYS = ["tomorrow", "on Monday", "on Friday", "within two days", "next week"]


@dataclass
class World:
    """What a run seeds once, and the running counts of what it added since."""

    account: ProviderAccount
    channels: list[Channel]
    teams: list[Team]
    team_members: dict[int, list[int]]
    agent: User
    agent_ids: list[int]
    labels: list[Label]
    templates: list[Template]
    thread_id: int | None = None
    sessions: int = 0
    messages: int = 0
    thread_messages: int = 0
    thread_first_at: datetime | None = None
    steps: int = 0
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def thread(self) -> Session:
        assert self.thread_id is not None, "seed_to() first"
        return Session.objects.get(pk=self.thread_id)


@dataclass(frozen=True)
class SeedStep:
    """What one `seed_to` call added, and how long it took."""

    size: Size
    sessions: int
    messages: int
    seconds: float
    rows: dict[str, int]


@transaction.atomic
def seed_world(*, tag: str = "bench") -> World:
    """Create the fixed part of the inbox through the ORM: account, channels, teams, people.

    `tag` keeps two worlds in one database apart (unique names).
    """
    account = ProviderAccount.objects.create(
        kind="xms",
        name=f"{tag} pages",
        base_url="https://api.mehery.example/xms",
        api_key=f"{tag}-pages-api-key",
        api_id="61ec7d9c2ce85742b201c5ab",
        last_success_at=timezone.now(),
    )
    channels = [
        Channel.objects.create(
            account=account,
            external_id=f"{medium}:{lane}",
            medium=medium,
            lane=lane,
            name=name,
            raw={"channelId": f"{medium}:{lane}", "name": name},
        )
        for name, medium, lane, _ in CHANNELS
    ]
    agent, others = _seed_people(tag)
    teams, team_members = _seed_teams(tag, channels, agent, others)
    labels = []
    for name, color in LABELS:
        label, _ = Label.objects.get_or_create(name=name, defaults={"color": color})
        labels.append(label)
    templates = _seed_templates(tag, account, channels)
    _seed_canned_replies(tag, teams)
    return World(
        account=account,
        channels=channels,
        teams=teams,
        team_members=team_members,
        agent=agent,
        agent_ids=[agent.pk, *(o.pk for o in others)],
        labels=labels,
        templates=templates,
    )


def _seed_people(tag: str) -> tuple[User, list[User]]:
    """The agent the benchmark signs in as, the other agents, and a supervisor."""
    unusable = make_password(None)
    agent = User.objects.create_user(
        username=AGENT_USERNAME if tag == "bench" else f"{tag}-{AGENT_USERNAME}",
        password=AGENT_PASSWORD,
        first_name="Pat",
        last_name="Agent",
        display_name="Pat Agent",
        email="pat.agent@example.com",
    )
    first_names = ["Sam", "Alex", "Robin", "Kim", "Noor", "Jo", "Lee", "Max", "Ari", "Sasha"]
    last_names = ["Okafor", "Nguyen", "Kowalski", "Haddad", "Costa", "Berg", "Ito", "Novak"]
    others = User.objects.bulk_create(
        [
            User(
                username=f"{tag}-agent-{i:02d}",
                password=unusable,
                first_name=first_names[i % len(first_names)],
                last_name=last_names[i % len(last_names)],
                display_name=f"{first_names[i % len(first_names)]} {last_names[i % len(last_names)]}",
            )
            for i in range(AGENTS_PER_TEAM * len(TEAMS))
        ]
        + [User(username=f"{tag}-supervisor", password=unusable, display_name="Dana Supervisor")]
    )
    supervisor, others = others[-1], others[:-1]
    AgentProfile.objects.bulk_create(
        [
            AgentProfile(user=user, availability=AgentProfile.Availability.ONLINE, skills=["en"])
            for user in [agent, *others]
        ]
        + [AgentProfile(user=supervisor, role=AgentProfile.Role.SUPERVISOR)]
    )
    return agent, others


def _seed_teams(
    tag: str, channels: list[Channel], agent: User, others: list[User]
) -> tuple[list[Team], dict[int, list[int]]]:
    """The teams, the channels each serves and their members (the agent in the first two)."""
    teams: list[Team] = []
    team_members: dict[int, list[int]] = {}
    for index, (name, channel_indexes) in enumerate(TEAMS):
        team = Team.objects.create(
            name=f"{name} ({tag})", slug=f"{tag}-{name.lower()}", platform_code=name.upper()
        )
        team.channels.set([channels[i] for i in channel_indexes])
        members = others[index * AGENTS_PER_TEAM : (index + 1) * AGENTS_PER_TEAM]
        if index < 2:
            members = [agent, *members]
        team.members.set(members)
        teams.append(team)
        team_members[team.pk] = [m.pk for m in members]
    return teams, team_members


def _seed_templates(tag: str, account: ProviderAccount, channels: list[Channel]) -> list[Template]:
    """A few templates, approved on every WhatsApp channel."""
    templates = Template.objects.bulk_create(
        [
            Template(
                account=account,
                external_id=f"{tag}-tmpl-{code}-{lang}",
                code=code,
                lang=lang,
                name=code.replace("_", " ").title(),
                category="UTILITY",
                body=text,
                text=text,
                placeholders=[{"name": "name", "label": "Name", "sample": "Anna", "source": ""}],
                synced_at=timezone.now(),
            )
            for code, lang, text in [
                ("order_shipped", "en_US", "Hi {{name}}, your order has shipped."),
                ("order_shipped", "es_ES", "Hola {{name}}, tu pedido está en camino."),
                ("order_shipped", "de_DE", "Hallo {{name}}, Ihre Bestellung ist unterwegs."),
                ("follow_up", "en_US", "Hi {{name}}, do you still need help with your request?"),
                ("follow_up", "pt_BR", "Olá {{name}}, ainda precisa de ajuda?"),
                ("payment_due", "en_US", "Hi {{name}}, a payment is due this week."),
            ]
        ]
    )
    TemplateApproval.objects.bulk_create(
        [
            TemplateApproval(template=t, channel=c, status=TemplateApproval.APPROVED)
            for t in templates
            for c in channels
            if c.medium == "whatsapp"
        ]
    )
    return templates


def _seed_canned_replies(tag: str, teams: list[Team]) -> None:
    CannedReply.objects.bulk_create(
        [
            CannedReply(
                title=title,
                shortcut=f"{tag}-{shortcut}",
                body=body,
                team=teams[team] if team is not None else None,
            )
            for shortcut, title, body, team in [
                ("hello", "Greeting", "Hi {{contact.first_name}}, how can I help?", None),
                ("refund", "Refund issued", "Your refund is on its way, {{contact.name}}.", 1),
                ("bye", "Closing", "Thanks for writing to us! {{agent.name}}", None),
            ]
        ]
    )


# --- The bulk ---------------------------------------------------------------------------------

_TABLES = (
    "inbox_contact",
    "inbox_contactidentity",
    "inbox_session",
    "inbox_message",
    "inbox_session_labels",
    "inbox_timelineentry",
    "inbox_note",
)


def seed_to(world: World, size: Size, *, seed: int = 6) -> SeedStep:
    """Grow the seeded inbox to `size` (sessions, messages, thread length), in one transaction.

    Rows added before stay as they are, except the thread, which gains older history.
    """
    began = time.monotonic()
    new_sessions = size.sessions - world.sessions
    new_thread = size.thread - world.thread_messages
    new_messages = size.messages - world.messages - new_thread
    if new_sessions < 0 or new_thread < 0 or new_messages < 0:
        raise ValueError(f"cannot shrink the seeded inbox to {size}")
    plain_sessions = new_sessions - (1 if world.thread_id is None else 0)
    if plain_sessions and new_messages < plain_sessions:
        raise ValueError(f"{size}: every session needs a message")
    if world.thread_id is None and new_thread < 1:
        raise ValueError(f"{size}: the thread needs a message")
    rng = random.Random(seed * 1000 + world.steps)
    step = _Step(world, rng, timezone.now())
    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.cursor
        raw.execute(f"LOCK TABLE {', '.join(_TABLES)} IN EXCLUSIVE MODE")
        plan = step.plan(plain_sessions, new_messages)
        step.write(raw, plan, new_thread)
    # As autovacuum would leave them, and so it does not start during the measurements: hint
    # bits set, visibility map current (index-only scans), statistics fresh. VACUUM cannot run
    # in a transaction (tests): there, statistics only.
    command = "ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)"
    with connection.cursor() as cursor:
        for table in (*_TABLES, "accounts_team_members"):
            cursor.execute(f"{command} {table}")
    world.sessions = size.sessions
    world.messages = size.messages
    world.thread_messages = size.thread
    world.steps += 1
    for table, count in step.rows.items():
        world.rows[table] = world.rows.get(table, 0) + count
    return SeedStep(
        size=size,
        sessions=new_sessions,
        messages=new_messages + new_thread,
        seconds=time.monotonic() - began,
        rows=dict(step.rows),
    )


@dataclass
class _SessionPlan:
    contact: int  # index into the step's contacts
    channel: int  # index into CHANNELS
    status: str
    messages: int
    last_at: datetime
    team_id: int | None
    assignee_id: int | None
    last_inbound: bool
    showcase: bool = False


@dataclass
class _Plan:
    contacts: list[tuple[str, str, str]]  # (language, first name, last name)
    sessions: list[_SessionPlan]


def _weighted(rng: random.Random, options: Sequence[tuple[Any, float]]) -> Callable[[], Any]:
    values = [o for o, _ in options]
    cumulative = []
    total = 0.0
    for _, weight in options:
        total += weight
        cumulative.append(total)

    def pick() -> Any:
        return rng.choices(values, cum_weights=cumulative)[0]

    return pick


def _family(language: str) -> str:
    return language.split("_")[0]


class _Step:
    """One `seed_to` call: plans the sessions, then streams every table through COPY."""

    def __init__(self, world: World, rng: random.Random, now: datetime) -> None:
        self.world = world
        self.rng = rng
        self.now = now
        self.rows: dict[str, int] = {}
        self.account = str(world.account.pk)
        self.thread_notes: list[tuple[Any, ...]] = []
        self.thread_events: list[tuple[Any, ...]] = []
        self.names = dict(
            User.objects.filter(pk__in=world.agent_ids).values_list("pk", "display_name")
        )
        # Bodies are drawn from pools filled in once per step: generating each one would cost
        # more than everything else a message row needs.
        self.pools = {
            (family, direction): [self._fill(lines) for _ in range(512)]
            for direction, table in (("in", CUSTOMER_LINES), ("out", AGENT_LINES))
            for family, lines in table.items()
        }
        self.rare = [self._fill(CUSTOMER_LINES["en"], product=RARE_WORD) for _ in range(16)]

    def _fill(self, lines: list[str], *, product: str = "") -> str:
        rng = self.rng
        picked = rng.sample(lines, k=min(len(lines), rng.choice((1, 1, 1, 2))))
        if product and not any("{p}" in line for line in picked):
            picked.append(next(line for line in lines if "{p}" in line))
        return (
            " ".join(picked)
            .replace("{o}", f"#{rng.randrange(100000, 999999)}")
            .replace(
                "{p}",
                f"{product} {rng.choice(('X2', 'mini', 'Pro'))}"
                if product
                else rng.choice(PRODUCTS),
            )
            .replace("{a}", f"{rng.randrange(5, 400)}.{rng.randrange(0, 99):02d}")
            .replace("{d}", rng.choice(DAYS))
        )

    def _body(self, family: str, direction: str) -> str:
        roll = self.rng.random()
        if roll < 0.001 and direction == "in":
            return self.rare[int(roll * 16000)]
        pool = self.pools.get((family, direction)) or self.pools[("en", direction)]
        return pool[int(roll * 512)]

    # --- planning ---

    def plan(self, sessions: int, messages: int) -> _Plan:
        rng = self.rng
        world = self.world
        language = _weighted(rng, list(LANGUAGE_SHARE.items()))
        channel = _weighted(rng, [(i, c[3]) for i, c in enumerate(CHANNELS)])
        status = _weighted(rng, [(s[0], s[1]) for s in STATUSES])
        hours = {s[0]: s[2] for s in STATUSES}
        contacts: list[tuple[str, str, str]] = []
        plans: list[_SessionPlan] = []
        teams_of_channel = {
            i: [t for t, (_, chans) in zip(world.teams, TEAMS, strict=True) if i in chans]
            for i in range(len(CHANNELS))
        }
        # Every step starts with a few sessions every filter and search finds, so no measured
        # list is empty at a small size (an empty list skips its label query).
        if sessions:
            contacts.append(SHOWCASE_CONTACT)
        for state, chan, mine in SHOWCASE[:sessions]:
            low, high = hours[state]
            plans.append(
                _SessionPlan(
                    contact=len(contacts) - 1,
                    channel=chan,
                    status=state,
                    messages=1,
                    last_at=self.now - timedelta(hours=rng.uniform(low, high)),
                    team_id=teams_of_channel[chan][0].pk,
                    assignee_id=world.agent.pk if mine else None,
                    last_inbound=state in ("open", "pending"),
                    showcase=True,
                )
            )
        # A customer has one to four sessions; most have one.
        while len(plans) < sessions:
            lang = language()
            _, firsts, lasts = PEOPLE[lang]
            contacts.append((lang, rng.choice(firsts), rng.choice(lasts)))
            home = channel()
            if CHANNELS[home][0] == "WhatsApp LatAm" and _family(lang) not in ("es", "pt"):
                home = 0
            for _ in range(min(sessions - len(plans), rng.choice((1, 1, 1, 1, 2, 2, 3, 4)))):
                chan = home if rng.random() < 0.8 else channel()
                state = status()
                low, high = hours[state]
                last_at = self.now - timedelta(hours=rng.uniform(low, high))
                teams = teams_of_channel[chan]
                team = rng.choice(teams) if teams and rng.random() < 0.8 else None
                assigned = rng.random() < (0.55 if state in ("open", "pending") else 0.85)
                assignee = None
                if assigned:
                    pool = world.team_members[team.pk] if team else world.agent_ids
                    assignee = rng.choice(pool)
                plans.append(
                    _SessionPlan(
                        contact=len(contacts) - 1,
                        channel=chan,
                        status=state,
                        messages=1,
                        last_at=last_at,
                        team_id=team.pk if team else None,
                        assignee_id=assignee,
                        last_inbound=state in ("open", "pending") and rng.random() < 0.6,
                    )
                )
        # Messages per session: skewed (many short conversations, a few long ones), exact sum.
        if plans:
            weights = [rng.expovariate(1.0) + 0.05 for _ in plans]
            extra = messages - len(plans)
            scale = extra / sum(weights)
            given = 0
            for plan, weight in zip(plans, weights, strict=True):
                add = int(weight * scale)
                plan.messages += add
                given += add
            for _ in range(extra - given):
                plans[rng.randrange(len(plans))].messages += 1
        return _Plan(contacts=contacts, sessions=plans)

    # --- writing ---

    def _reserve(self, cursor: Any, table: str, count: int) -> int:
        """Move `table`'s id sequence past a block of `count` ids; return the first."""
        if count == 0:
            return 0
        cursor.execute(
            f"SELECT GREATEST(nextval(pg_get_serial_sequence('{table}', 'id')),"  # noqa: S608
            f" (SELECT COALESCE(max(id), 0) + 1 FROM {table}))"
        )
        first = int(cursor.fetchone()[0])
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), %s)", [first + count - 1]
        )
        return first

    def _copy(self, cursor: Any, table: str, columns: str, rows: Iterable[Sequence[Any]]) -> None:
        count = 0
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
        self.rows[table] = self.rows.get(table, 0) + count

    def write(self, cursor: Any, plan: _Plan, thread_messages: int) -> None:
        world = self.world
        thread_index = self._thread_customer(plan)
        n_messages = sum(p.messages for p in plan.sessions) + thread_messages
        contact0 = self._reserve(cursor, "inbox_contact", len(plan.contacts))
        session0 = self._reserve(cursor, "inbox_session", len(plan.sessions))
        message0 = self._reserve(cursor, "inbox_message", n_messages)
        pairs = sorted({(p.contact, p.channel) for p in plan.sessions})
        identity0 = self._reserve(cursor, "inbox_contactidentity", len(pairs))
        identity_of = {pair: identity0 + i for i, pair in enumerate(pairs)}
        phones = [self._phone(lang, contact0 + i) for i, (lang, _, _) in enumerate(plan.contacts)]
        self._write_contacts(cursor, plan, contact0, phones)
        self._write_identities(cursor, plan, contact0, phones, identity_of)
        # Messages before sessions (the foreign keys are checked at commit): a session's last
        # message, last inbound time and unread count come out of writing its messages.
        states: dict[int, _SessionState] = {}
        ids = iter(range(message0, message0 + n_messages))
        thread_id = session0 + thread_index if thread_index is not None else world.thread_id
        messages = self._messages(
            plan, session0, ids, states, thread_index, thread_id, thread_messages
        )
        self._copy(cursor, "inbox_message", _MESSAGE_COLUMNS, messages)
        if thread_messages and thread_index is None:
            # Older history: the thread now opened earlier.
            opened = world.thread_first_at
            cursor.execute(
                "UPDATE inbox_session SET opened_at = %s, created_at = %s WHERE id = %s",
                [opened, opened, thread_id],
            )
            cursor.execute(
                "UPDATE inbox_timelineentry SET occurred_at = %s, created_at = %s"
                " WHERE session_id = %s AND kind = 'opened'",
                [opened, opened, thread_id],
            )
        sessions = self._sessions(plan, session0, contact0, identity_of, states)
        self._copy(cursor, "inbox_session", _SESSION_COLUMNS, sessions)
        if thread_index is not None:
            world.thread_id = session0 + thread_index
        self._write_around_sessions(cursor, plan, session0, contact0, states, thread_index)

    def _thread_customer(self, plan: _Plan) -> int | None:
        """Plan the thread's customer in the first batch (a long-standing business customer on
        the main WhatsApp line); return the index of their session, or None later."""
        if self.world.thread_id is not None:
            return None
        plan.contacts.append(("de_DE", "Katharina", "Schröder-Okonkwo"))
        plan.sessions.append(
            _SessionPlan(
                contact=len(plan.contacts) - 1,
                channel=0,
                status="open",
                messages=0,
                last_at=self.now - timedelta(minutes=7),
                team_id=self.world.teams[0].pk,
                assignee_id=self.world.agent.pk,
                last_inbound=True,
            )
        )
        return len(plan.sessions) - 1

    def _write_contacts(self, cursor: Any, plan: _Plan, contact0: int, phones: list[str]) -> None:
        created = self.now - timedelta(days=200)
        updated = self.now - timedelta(days=1)
        self._copy(
            cursor,
            "inbox_contact",
            "id, uid, account_id, name, email, phone, language, business_profile_id, profile,"
            " created_at, updated_at",
            (
                (
                    contact0 + i,
                    uuid.uuid4(),
                    self.account,
                    f"{first} {last}",
                    f"{_ascii(first)}.{_ascii(last)}{contact0 + i}@example.com"
                    if i % 3 == 0 and _ascii(first) and _ascii(last)
                    else "",
                    phones[i],
                    lang,
                    f"CRM-{contact0 + i:08d}" if i % 4 == 0 else "",
                    '{"source": "callback"}',
                    created,
                    updated,
                )
                for i, (lang, first, last) in enumerate(plan.contacts)
            ),
        )

    def _write_identities(
        self,
        cursor: Any,
        plan: _Plan,
        contact0: int,
        phones: list[str],
        identity_of: dict[tuple[int, int], int],
    ) -> None:
        created = self.now - timedelta(days=200)
        updated = self.now - timedelta(days=1)
        self._copy(
            cursor,
            "inbox_contactidentity",
            "id, account_id, contact_id, channel_id, medium, external_id, address, profile_name,"
            " raw, created_at, updated_at",
            (
                (
                    identity,
                    self.account,
                    contact0 + c,
                    self.world.channels[ch].pk,
                    CHANNELS[ch][1],
                    f"{CHANNELS[ch][1][:2]}{phones[c]}_{CHANNELS[ch][2]}",
                    phones[c],
                    plan.contacts[c][1],
                    "{}",
                    created,
                    updated,
                )
                for (c, ch), identity in identity_of.items()
            ),
        )

    def _write_around_sessions(
        self,
        cursor: Any,
        plan: _Plan,
        session0: int,
        contact0: int,
        states: dict[int, _SessionState],
        thread_index: int | None,
    ) -> None:
        """The sessions' labels, timeline entries and notes."""
        links = [
            (session0 + i, label.pk)
            for i, p in enumerate(plan.sessions)
            for label in self._labels_for(i, p, i == thread_index)
        ]
        link0 = self._reserve(cursor, "inbox_session_labels", len(links))
        self._copy(
            cursor,
            "inbox_session_labels",
            "id, session_id, label_id",
            ((link0 + i, s, label) for i, (s, label) in enumerate(links)),
        )
        events = list(self._events(plan, session0, contact0, states))
        event0 = self._reserve(cursor, "inbox_timelineentry", len(events))
        self._copy(
            cursor,
            "inbox_timelineentry",
            "id, account_id, session_id, contact_id, kind, summary, data, actor_id, dedupe_key,"
            " occurred_at, created_at",
            ((event0 + i, *row) for i, row in enumerate(events)),
        )
        notes = list(self._notes(plan, session0, states))
        note0 = self._reserve(cursor, "inbox_note", len(notes))
        self._copy(
            cursor,
            "inbox_note",
            "id, session_id, author_id, body, idempotency_key, created_at",
            ((note0 + i, *row) for i, row in enumerate(notes)),
        )

    def _phone(self, language: str, number: int) -> str:
        code = PEOPLE[language][0]
        return f"{code}{700_000_000 + number}"

    # --- rows ---

    def _pick_type(self) -> str:
        roll = self.rng.random()
        for name, threshold in _TYPE_THRESHOLDS:
            if roll < threshold:
                return name
        return "text"

    def _message(
        self,
        mid: int,
        session_id: int,
        channel: int,
        family: str,
        direction: str,
        at: datetime,
        author: int | None,
        text: str | None = None,
    ) -> tuple[Any, ...]:
        mtype = "text" if text is not None else self._pick_type()
        if mtype == "template" and direction == "in":
            mtype = "text"
        medium = CHANNELS[channel][1]
        c = self._content(mid, medium, family, direction, mtype, text)
        d = self._delivery(mid, medium, mtype, direction, at)
        return (
            mid,
            self.account,
            session_id,
            direction,
            mtype,
            mtype if medium != "whatsapp" else mtype.upper(),
            c["body"],
            c["caption"],
            c["media_url"],
            c["mime"],
            c["filename"],
            c["size"],
            c["sha"],
            c["media_id"],
            c["attachments"],
            c["latitude"],
            c["longitude"],
            c["place"],
            c["address"],
            "",
            d["external_id"],
            d["external_ext"],
            d["status"],
            at,
            d["delivered"],
            d["read"],
            d["failed"],
            d["error_code"],
            d["error_title"],
            author if direction == "out" and c["template"] is None else None,
            d["raw"],
            at + timedelta(milliseconds=350),
            "",
            c["template"],
            c["template_data"],
            "[]",
            d["attempts"],
            d["accepted"],
            False,
        )

    def _content(
        self, mid: int, medium: str, family: str, direction: str, mtype: str, text: str | None
    ) -> dict[str, Any]:
        """What a message says or carries: its body, media, location, card or template."""
        rng = self.rng
        c: dict[str, Any] = {
            "body": text if text is not None else self._body(family, direction),
            **dict.fromkeys(("caption", "media_url", "mime", "filename", "sha", "media_id"), ""),
            "size": None,
            "attachments": "[]",
            "latitude": None,
            "longitude": None,
            "place": "",
            "address": "",
            "template": None,
            "template_data": "{}",
        }
        if mtype == "text":
            return c
        c["body"] = ""
        if mtype == "template":
            chosen = self.world.templates[mid % len(self.world.templates)]
            c["template"] = chosen.pk
            c["body"] = chosen.text.replace("{{name}}", "Anna")
            c["template_data"] = '{"name": "Anna"}'
        elif mtype == "location":
            c["latitude"] = round(rng.uniform(-40, 60), 6)
            c["longitude"] = round(rng.uniform(-120, 140), 6)
            c["place"] = rng.choice(
                ("Home", "Office", "Warehouse 3", "Hauptbahnhof", "Plaza Mayor")
            )
            c["address"] = f"{rng.randrange(1, 200)} Example Street"
        elif mtype == "contact":
            c["attachments"] = (
                '[{"name": {"formatted_name": "Chris Example"},'
                ' "phones": [{"phone": "+4915112345678"}]}]'
            )
        else:
            ext, c["mime"] = _MEDIA[mtype]
            c["filename"] = f"{mtype}-{mid}.{ext}" if mtype in ("document", "audio") else ""
            c["media_url"] = f"https://media.example.com/{medium}/{mid:x}.{ext}"
            c["size"] = rng.randrange(8_000, 4_000_000)
            c["sha"] = f"{mid:064x}"
            c["media_id"] = f"media-{mid}"
            if rng.random() < 0.3:
                c["caption"] = self._body(family, direction)
        return c

    def _delivery(
        self, mid: int, medium: str, mtype: str, direction: str, at: datetime
    ) -> dict[str, Any]:
        """Where a message's delivery stands: received, or sent and on to delivered, read or
        failed (a few per cent)."""
        whatsapp = medium == "whatsapp"
        d: dict[str, Any] = {
            **dict.fromkeys(("error_code", "error_title"), ""),
            **dict.fromkeys(("delivered", "read", "failed", "accepted"), None),
        }
        if direction == "in":
            external_id = f"in-{mid:x}"
            d.update(
                status="received",
                external_id=external_id,
                external_ext=f"wamid.HBgM{mid:012d}" if whatsapp else "",
                raw=f'{{"id": "{external_id}", "type": "{mtype}"}}',
                attempts=0,
            )
            return d
        roll = self.rng.random()
        d.update(
            accepted=at,
            attempts=1,
            external_id=f"out-{mid:x}",
            external_ext=f"wamid.HBgN{mid:012d}" if whatsapp else "",
            raw="{}",
        )
        if roll < 0.03:
            d.update(status="failed", failed=at + timedelta(seconds=2))
            d["error_code"], d["error_title"] = _FAILURES[mid % len(_FAILURES)]
        elif roll < 0.15:
            d["status"] = "sent"
        elif roll < 0.40:
            d.update(status="delivered", delivered=at + timedelta(seconds=3))
        else:
            d.update(
                status="read",
                delivered=at + timedelta(seconds=3),
                read=at + timedelta(seconds=self.rng.randrange(10, 3600)),
            )
        return d

    def _conversation(
        self,
        count: int,
        end: datetime,
        mean_gap: float,
        *,
        last_inbound: bool | None,
    ) -> tuple[list[datetime], list[str]]:
        """Return the times (oldest first) and directions of `count` messages ending at `end`."""
        rng = self.rng
        times = [end]
        at = end
        for _ in range(count - 1):
            at -= timedelta(seconds=rng.expovariate(1.0 / mean_gap) + 4)
            times.append(at)
        times.reverse()
        directions = ["in"]
        for _ in range(count - 1):
            previous = directions[-1]
            if rng.random() < 0.65:
                directions.append("out" if previous == "in" else "in")
            else:
                directions.append(previous)
        if last_inbound is not None:
            directions[-1] = "in" if last_inbound else "out"
        return times, directions

    def _messages(
        self,
        plan: _Plan,
        session0: int,
        ids: Iterator[int],
        out: dict[int, _SessionState],
        thread_index: int | None,
        thread_id: int | None,
        thread_count: int,
    ) -> Iterator[tuple[Any, ...]]:
        """Yield the step's messages in the order they were sent, across all sessions.

        A real inbox stores a conversation's messages between those of the conversations
        going on at the same time; writing each session's messages together would put them
        on a page or two of the table and flatter every per-session read.
        """
        agents = self.world.agent_ids
        # Per session: (session id, channel, language family, author, times, directions).
        talks: dict[int, tuple[int, int, str, int, list[datetime], list[str]]] = {}
        for index, p in enumerate(plan.sessions):
            if index == thread_index:
                continue
            active = p.status in ("open", "pending")
            times, directions = self._conversation(
                p.messages, p.last_at, 300.0, last_inbound=p.last_inbound if active else None
            )
            author = p.assignee_id or agents[index % len(agents)]
            family = _family(plan.contacts[p.contact][0])
            talks[index] = (session0 + index, p.channel, family, author, times, directions)
        if thread_count:
            assert thread_id is not None
            times, directions = self._thread_history(thread_id, thread_count, thread_index)
            talks[THREAD] = (thread_id, 0, "de", self.world.agent.pk, times, directions)
        states = {
            key: _SessionState(first_at=talk[4][0], last_at=talk[4][0])
            for key, talk in talks.items()
        }
        ordered = heapq.merge(*(_timed(key, talk[4]) for key, talk in talks.items()))
        for at, key, n in ordered:
            session_id, channel, family, author, _, directions = talks[key]
            mid = next(ids)
            states[key].add(mid, directions[n], at)
            showcase = key != THREAD and n == 0 and plan.sessions[key].showcase
            text = self.rare[0] if showcase else None
            yield self._message(mid, session_id, channel, family, directions[n], at, author, text)
        for key, state in states.items():
            if key == THREAD:
                if thread_index is not None:
                    out[thread_index] = state
                continue
            p = plan.sessions[key]
            if not (p.status in ("open", "pending") and p.last_inbound):
                state.unread = 0
            out[key] = state

    def _thread_history(
        self, thread_id: int, count: int, thread_index: int | None
    ) -> tuple[list[datetime], list[str]]:
        """Return the times and directions of `count` messages of the long thread, older than
        the ones it has, and note the notes and timeline entries among them."""
        world = self.world
        end = (
            world.thread_first_at - timedelta(minutes=20)
            if world.thread_first_at is not None
            else self.now - timedelta(minutes=7)
        )
        times, directions = self._conversation(
            count, end, 1200.0, last_inbound=True if thread_index is not None else None
        )
        world.thread_first_at = times[0]
        for n, at in enumerate(times):
            if n % 250 == 125:
                self.thread_notes.append(
                    (thread_id, world.agent.pk, f"Call notes: {_NOTES[n % len(_NOTES)]}", "", at)
                )
            if n % 400 == 200:
                self.thread_events.append(
                    (
                        self.account,
                        thread_id,
                        None,
                        "assigned",
                        "Assigned to Pat Agent",
                        '{"by": "routing"}',
                        None,
                        "",
                        at,
                        at,
                    )
                )
        return times, directions

    def _sessions(
        self,
        plan: _Plan,
        session0: int,
        contact0: int,
        identity_of: dict[tuple[int, int], int],
        states: dict[int, _SessionState],
    ) -> Iterator[tuple[Any, ...]]:
        rng = self.rng
        codes = {team.pk: team.platform_code for team in self.world.teams}
        for index, p in enumerate(plan.sessions):
            state = states[index]
            session_id = session0 + index
            resolved = closed = None
            if p.status in ("resolved", "closed"):
                resolved = min(state.last_at + timedelta(minutes=rng.randrange(2, 120)), self.now)
            if p.status == "closed":
                closed = min((resolved or state.last_at) + timedelta(hours=24), self.now)
            code = codes.get(p.team_id or 0, "")
            yield (
                session_id,
                self.account,
                self.world.channels[p.channel].pk,
                contact0 + p.contact,
                identity_of[(p.contact, p.channel)],
                f"xs{session_id:010d}",
                f"rt-{session_id}" if code else "",
                p.status,
                f"AGENT{p.assignee_id}" if p.assignee_id else "",
                code,
                f"{code}-Q1" if code else "",
                "faq-bot" if not code else "",
                "agent" if p.assignee_id else "bot",
                "",
                p.assignee_id,
                p.team_id,
                state.first_at,
                state.last_inbound_at,
                state.last_at,
                state.last_id,
                state.unread,
                resolved,
                closed,
                state.first_at,
                closed or resolved or state.last_at,
            )

    def _labels_for(self, index: int, p: _SessionPlan, is_thread: bool) -> list[Label]:
        labels = self.world.labels
        if is_thread:
            return [labels[0], labels[1]]
        if p.showcase:
            return [label for label in labels if label.name == SHOWCASE_LABEL]
        if self.rng.random() >= 0.15:
            return []
        return self.rng.sample(labels, k=self.rng.choice((1, 1, 2)))

    def _events(
        self, plan: _Plan, session0: int, contact0: int, states: dict[int, _SessionState]
    ) -> Iterator[tuple[Any, ...]]:
        names = self.names
        for index, p in enumerate(plan.sessions):
            state = states[index]
            session_id = session0 + index
            contact_id = contact0 + p.contact
            channel = CHANNELS[p.channel][0]
            opened = state.first_at
            yield (
                self.account,
                session_id,
                contact_id,
                "opened",
                f"Conversation started on {channel}",
                "{}",
                None,
                "",
                opened,
                opened,
            )
            if p.assignee_id:
                at = opened + timedelta(seconds=30)
                yield (
                    self.account,
                    session_id,
                    contact_id,
                    "assigned",
                    f"Assigned to {names.get(p.assignee_id, 'an agent')}",
                    '{"via": "routing"}',
                    None,
                    "",
                    at,
                    at,
                )
            if p.status in ("resolved", "closed"):
                at = state.last_at + timedelta(minutes=1)
                yield (
                    self.account,
                    session_id,
                    contact_id,
                    p.status,
                    "Resolved" if p.status == "resolved" else "Closed",
                    "{}",
                    p.assignee_id,
                    "",
                    at,
                    at,
                )
        yield from self.thread_events

    def _notes(
        self, plan: _Plan, session0: int, states: dict[int, _SessionState]
    ) -> Iterator[tuple[Any, ...]]:
        rng = self.rng
        for index, p in enumerate(plan.sessions):
            if rng.random() >= 0.03:
                continue
            state = states[index]
            at = state.first_at + (state.last_at - state.first_at) / 2
            body = _NOTES[index % len(_NOTES)]
            yield (session0 + index, p.assignee_id, body, "", at)
        yield from self.thread_notes


@dataclass
class _SessionState:
    """What a session row says about its messages, gathered while they are written."""

    first_at: datetime
    last_at: datetime
    last_id: int | None = None
    last_inbound_at: datetime | None = None
    unread: int = 0

    def add(self, mid: int, direction: str, at: datetime) -> None:
        if self.last_id is None or at >= self.last_at:
            self.last_at = at
            self.last_id = mid
        if direction == "in":
            if self.last_inbound_at is None or at > self.last_inbound_at:
                self.last_inbound_at = at
            self.unread += 1
        else:
            self.unread = 0


def _timed(key: int, times: list[datetime]) -> Iterator[tuple[datetime, int, int]]:
    return ((at, key, n) for n, at in enumerate(times))


def _ascii(text: str) -> str:
    return text.encode("ascii", "ignore").decode().lower()


_TYPE_THRESHOLDS: list[tuple[str, float]] = []
_running = 0.0
for _name, _share in MESSAGE_TYPES:
    _running += _share
    _TYPE_THRESHOLDS.append((_name, _running))

_MEDIA = {
    "image": ("jpg", "image/jpeg"),
    "document": ("pdf", "application/pdf"),
    "voice": ("ogg", "audio/ogg; codecs=opus"),
    "audio": ("mp3", "audio/mpeg"),
    "video": ("mp4", "video/mp4"),
}
_FAILURES = [
    ("131047", "Re-engagement message: more than 24 hours since the customer last replied."),
    ("131026", "Message undeliverable."),
    ("130429", "Rate limit hit."),
]
_NOTES = [
    "Customer is a VIP: offer free shipping on the replacement.",
    "Escalated to billing, see ticket BILL-4471.",
    "Called back, no answer. Try again tomorrow morning.",
    "Refund approved by Dana.",
    "Asked for the serial number; waiting for a photo.",
]
_MESSAGE_COLUMNS = (
    "id, account_id, session_id, direction, type, raw_type, body, caption, media_url,"
    " media_mime_type, media_filename, media_size, media_sha256, media_external_id, attachments,"
    " latitude, longitude, location_name, location_address, location_url, external_id,"
    " external_id_ext, status, sent_at, delivered_at, read_at, failed_at, error_code,"
    " error_title, author_id, raw, created_at, idempotency_key, template_id, template_data,"
    " buttons, attempts, accepted_at, outcome_unknown"
)
_SESSION_COLUMNS = (
    "id, account_id, channel_id, contact_id, identity_id, external_id, routing_id, status,"
    " platform_agent, platform_dept, platform_queue, platform_bot, platform_mode, ticket_hash,"
    " assignee_id, team_id, opened_at, last_inbound_at, last_activity_at, last_message_id,"
    " unread_count, resolved_at, closed_at, created_at, updated_at"
)
