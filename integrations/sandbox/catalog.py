"""What the simulated tenant has: channels, customers and HSM templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CHANNELS: list[dict[str, Any]] = [
    {
        "channelId": "wa360:918828218374",
        "contactType": "WHATSAPP",
        "lane": "918828218374",
        "name": "Customer Support",
    },
    {
        "channelId": "wa360:918828218375",
        "contactType": "WHATSAPP",
        "lane": "918828218375",
        "name": "Sales",
    },
    {
        "channelId": "tg:switchboard_help_bot",
        "contactType": "TELEGRAM",
        "lane": "switchboard_help_bot",
        "name": "Telegram Help",
    },
]
# Listed only with ?sabdnox=true / ?sandbox=true (spec §2.1).
SANDBOX_CHANNELS: list[dict[str, Any]] = [
    {
        "channelId": "wa360:910000000000",
        "contactType": "WHATSAPP",
        "lane": "910000000000",
        "name": "WhatsApp test number",
    },
]


@dataclass
class Persona:
    """A simulated customer."""

    key: str
    name: str
    channel_id: str
    phone: str = ""
    handle: str = ""
    lang: str = "en_US"
    email: str = ""
    lines: list[str] = field(default_factory=list)
    # Hours since this customer last wrote when the sandbox starts (outside the 24-hour window).
    dormant_hours: float = 0.0

    def contact_id(self, lane: str) -> str:
        """Return the platform contact id, shaped as the docs show it (spec §6.2)."""
        if self.phone:
            return f"wa{self.phone}_{lane}"
        return f"tg:{self.handle}"


PERSONAS: list[Persona] = [
    Persona(
        key="amira",
        name="أميرة حداد",
        channel_id="wa360:918828218374",
        phone="971501234567",
        lang="ar_AE",
        lines=[
            "مرحبا، طلبي لم يصل بعد 📦",
            "رقم الطلب هو 48213، هل يمكنكم التحقق؟",
            "شكرا جزيلا! 🙏",
        ],
    ),
    Persona(
        key="lucas",
        name="Lucas Martin",
        channel_id="wa360:918828218374",
        phone="33612345678",
        lang="fr_FR",
        email="lucas.martin@example.fr",
        lines=[
            "Bonjour ! Ma facture de novembre est incorrecte 😕",
            "Je vous envoie une capture d'écran.",
            "Parfait, merci beaucoup 👍",
        ],
    ),
    Persona(
        key="priya",
        name="Priya Sharma",
        channel_id="wa360:918828218375",
        phone="919988776655",
        lang="hi_IN",
        lines=[
            "नमस्ते! क्या प्रीमियम प्लान में 5 यूज़र शामिल हैं?",
            "And is there a discount for yearly billing? 🤔",
            "ठीक है, धन्यवाद!",
        ],
    ),
    Persona(
        key="yossi",
        name="יוסי כהן",
        channel_id="wa360:918828218375",
        phone="972521234567",
        lang="he_IL",
        lines=["שלום, אני רוצה לשדרג את המנוי שלי", "כמה זה עולה לחודש? 💳", "תודה רבה!"],
    ),
    Persona(
        key="mei",
        name="陈美",
        channel_id="tg:switchboard_help_bot",
        handle="mei_chen_88",
        lang="zh_CN",
        lines=["你好！我无法登录我的账户 🔒", "我已经重置了密码，但还是不行。", "好的，谢谢！😊"],
    ),
    Persona(
        key="joao",
        name="João Silva",
        channel_id="tg:switchboard_help_bot",
        handle="joaosilva",
        lang="pt_BR",
        lines=["Olá! Vocês entregam em Porto Alegre? 🚚", "Qual é o prazo?", "Valeu! 🎉"],
    ),
    Persona(
        key="anna",
        name="Anna Müller",
        channel_id="wa360:918828218374",
        phone="4915112345678",
        lang="de_DE",
        lines=[
            "Hallo, ich habe eine Frage zu meiner Rücksendung.",
            "Danke für die schnelle Hilfe!",
        ],
        dormant_hours=30.0,
    ),
]

APPROVED = "APPROVED"


def _template(
    tid: str,
    code: str,
    lang: str,
    *,
    title: str,
    body: str,
    header: str = "",
    footer: str = "",
    category: str = "UTILITY",
    model: dict[str, Any] | None = None,
    buttons: list[dict[str, Any]] | None = None,
    approvals: dict[str, str] | None = None,
    attachments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    approvals = approvals or {
        c["channelId"]: APPROVED for c in CHANNELS if c["contactType"] == "WHATSAPP"
    }
    parts = [p for p in (header, body, footer) if p]
    return {
        "id": tid,
        "code": code,
        "name": f"{code.lower()}_{lang.lower()}",
        "title": title,
        "desc": title,
        "lang": lang,
        "category": category,
        "categoryType": category,
        "contactType": "WHATSAPP",
        "formatType": "TEXT" if not attachments else "MEDIA",
        "header": header,
        "body": body,
        "footer": footer,
        "template": "\n\n".join(parts),
        "attachments": attachments or [],
        "options": {"buttons": buttons or []},
        "model": model or {},
        "meta": {"placeholder": "{{name}}"},
        "approved": [
            {
                "channelId": channel,
                "status": status,
                "templateId": f"{tid}-{channel.split(':')[-1]}",
            }
            for channel, status in approvals.items()
        ],
        "createdBy": "sandbox",
        "createdStamp": 1700000000000,
    }


def _var(label: str, sample: str, source: str = "") -> dict[str, str]:
    var = {"type": "TEXT", "label": label, "sample": sample}
    if source:
        var["source"] = source
    return var


def base_templates() -> list[dict[str, Any]]:
    """Return the realistic template set: several languages, media header, buttons, approvals."""
    return [*_order_templates(), *_service_templates(), *_media_and_marketing_templates()]


def _order_templates() -> list[dict[str, Any]]:
    """Order updates in three languages, sharing one placeholder model."""
    order_model = {
        "name": _var("Customer name", "Amira", "contact.name"),
        "order_id": _var("Order number", "48213"),
        "eta": _var("Delivery date", "Friday"),
    }
    return [
        _template(
            "65a1f0c2e4b0a1b2c3d4e501",
            "ORDER_UPDATE",
            "en_US",
            title="Order update",
            header="Your order {{order_id}}",
            body="Hi {{name}}, your order {{order_id}} is on its way and arrives {{eta}}.",
            footer="Reply STOP to opt out",
            model=order_model,
            buttons=[
                {"type": "QUICK_REPLY", "code": "track", "label": "Track order", "name": "track"}
            ],
        ),
        _template(
            "65a1f0c2e4b0a1b2c3d4e502",
            "ORDER_UPDATE",
            "es_ES",
            title="Actualización de pedido",
            header="Tu pedido {{order_id}}",
            body="Hola {{name}}, tu pedido {{order_id}} está en camino y llega el {{eta}}.",
            footer="Responde STOP para darte de baja",
            model=order_model,
        ),
        _template(
            "65a1f0c2e4b0a1b2c3d4e503",
            "ORDER_UPDATE",
            "ar_AE",
            title="تحديث الطلب",
            header="طلبك {{order_id}}",
            body="مرحبا {{name}}، طلبك {{order_id}} في الطريق ويصل {{eta}}.",
            model=order_model,
        ),
    ]


def _service_templates() -> list[dict[str, Any]]:
    """Feedback, appointment reminders and a welcome back."""
    return [
        _template(
            "60d236c6142e53561cb7716c",
            "FEEDBACK",
            "en_US",
            title="Payment feedback",
            body="Thank you for your payment of {{amount}} {{currency}}. How did we do?",
            model={"amount": _var("Amount", "10"), "currency": _var("Currency", "INR")},
            buttons=[
                {"type": "QUICK_REPLY", "code": "good", "label": "Great 👍", "name": "good"},
                {"type": "QUICK_REPLY", "code": "bad", "label": "Not good 👎", "name": "bad"},
            ],
        ),
        _template(
            "60d236c6142e53561cb7716d",
            "FEEDBACK",
            "hi_IN",
            title="भुगतान प्रतिक्रिया",
            body="{{amount}} {{currency}} के भुगतान के लिए धन्यवाद। हमारी सेवा कैसी रही?",
            model={"amount": _var("Amount", "10"), "currency": _var("Currency", "INR")},
        ),
        _template(
            "65a1f0c2e4b0a1b2c3d4e504",
            "APPOINTMENT_REMINDER",
            "en_US",
            title="Appointment reminder",
            body="Hello {{name}}, this is a reminder of your appointment on {{date}} at {{time}}.",
            footer="Switchboard Clinic",
            model={
                "name": _var("Customer name", "Lucas", "contact.name"),
                "date": _var("Date", "12 March"),
                "time": _var("Time", "10:30"),
            },
            buttons=[
                {"type": "QUICK_REPLY", "code": "confirm", "label": "Confirm", "name": "confirm"},
                {"type": "QUICK_REPLY", "code": "cancel", "label": "Cancel", "name": "cancel"},
                {
                    "type": "PHONE_NUMBER",
                    "label": "Call us",
                    "phone": "+91 9988776655",
                    "name": "call",
                },
            ],
        ),
        _template(
            "65a1f0c2e4b0a1b2c3d4e505",
            "APPOINTMENT_REMINDER",
            "fr_FR",
            title="Rappel de rendez-vous",
            body="Bonjour {{name}}, nous vous rappelons votre rendez-vous le {{date}} à {{time}}.",
            model={
                "name": _var("Nom du client", "Lucas", "contact.name"),
                "date": _var("Date", "12 mars"),
                "time": _var("Heure", "10h30"),
            },
        ),
        _template(
            "65a1f0c2e4b0a1b2c3d4e506",
            "WELCOME_BACK",
            "en_US",
            title="Welcome back",
            body="Hi {{name}}! We're here if you need anything else. Just reply to this message.",
            model={"name": _var("Customer name", "Anna", "contact.name")},
            category="MARKETING",
        ),
    ]


def _media_and_marketing_templates() -> list[dict[str, Any]]:
    """A media header, a marketing promotion and a payment reminder."""
    return [
        _template(
            "65a1f0c2e4b0a1b2c3d4e507",
            "DELIVERY_PHOTO",
            "en_US",
            title="Delivery photo",
            body="Your parcel {{order_id}} was delivered. Here is the photo from our courier.",
            model={"order_id": _var("Order number", "48213")},
            attachments=[
                {
                    "mediaCaption": "Delivery photo",
                    "mediaId": "9001",
                    "mediaMimeType": "image/png",
                    "mediaName": "delivery.png",
                    "mediaType": "IMAGE",
                    "mediaURL": "{media}/delivery.png",
                    "mediaSrc": "{media}/delivery.png",
                }
            ],
        ),
        _template(
            "65a1f0c2e4b0a1b2c3d4e508",
            "SUMMER_PROMO",
            "en_US",
            title="Summer promotion",
            body="☀️ {{name}}, get 20% off everything this week with code SUMMER20.",
            model={"name": _var("Customer name", "Priya", "contact.name")},
            category="MARKETING",
            approvals={
                "wa360:918828218374": "PENDING",
                "wa360:918828218375": "PENDING",
            },
        ),
        _template(
            "65a1f0c2e4b0a1b2c3d4e509",
            "PAYMENT_OVERDUE",
            "en_US",
            title="Payment overdue",
            body="{{name}}, your payment of {{amount}} is overdue. Pay now to avoid suspension!!!",
            model={"name": _var("Customer name", "Yossi"), "amount": _var("Amount", "99 USD")},
            approvals={
                "wa360:918828218374": "REJECTED",
                "wa360:918828218375": "REJECTED",
            },
        ),
    ]


def bulk_templates(count: int) -> list[dict[str, Any]]:
    """Return `count` extra synthetic templates (for sync benchmarks)."""
    return [
        _template(
            f"bulk{i:020d}",
            f"BULK_{i:05d}",
            "en_US",
            title=f"Bulk template {i}",
            body=f"Message {i} for {{{{name}}}}: your code is {{{{code}}}}.",
            model={"name": _var("Customer name", "Ann"), "code": _var("Code", "1234")},
        )
        for i in range(count)
    ]
