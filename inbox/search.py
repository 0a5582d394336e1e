"""What the list's search box compares: phones as digits, names without their accents.

Phones are stored as digits with the country code (`inbox.services.contacts.phone_normalize`),
so whatever an agent types that looks like a phone (`+33 6 12 34 56 78`, `0033…`, `06 12…`) is
searched as its digits, without the international (`00`) or national (`0`) prefix: the digits
that remain are part of the stored number.

Names are compared accent-free on both sides (`muller` finds `Müller`) with the database
function `inbox_unaccent`: on PostgreSQL an immutable wrapper around the `unaccent` extension
(migration 0008), which a trigram index on `UPPER(inbox_unaccent(name))` answers; on SQLite the
Python function below, registered on every connection (`inbox.apps`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from django.db.models import CharField, Func, Q, QuerySet, Value

from inbox.models import Contact

# Letters that do not decompose into a base letter and a mark; PostgreSQL's unaccent rules
# map them the same way.
_UNACCENT_EXTRA = str.maketrans(
    {
        "ß": "ss",
        "ẞ": "SS",
        "Æ": "AE",
        "æ": "ae",
        "Œ": "OE",
        "œ": "oe",
        "Ø": "O",
        "ø": "o",
        "Ł": "L",
        "ł": "l",
        "Đ": "D",
        "đ": "d",
        "Ð": "D",
        "ð": "d",
        "Þ": "TH",
        "þ": "th",
        "\u0131": "i",  # dotless i
    }
)
# Scripts whose marks carry the word (Devanagari vowel signs, Hebrew and Arabic points are
# kept as typed): only Latin, Greek and Cyrillic letters lose their accents.
_FOLDED_SCRIPTS = ("LATIN", "GREEK", "CYRILLIC")


def unaccent(value: str | None) -> str | None:
    """Return `value` with the accents of Latin, Greek and Cyrillic letters removed."""
    if value is None:
        return None
    out: list[str] = []
    for char in value.translate(_UNACCENT_EXTRA):
        name = unicodedata.name(char, "")
        if not name.startswith(_FOLDED_SCRIPTS):
            out.append(char)
            continue
        decomposed = unicodedata.normalize("NFKD", char)
        out.append("".join(c for c in decomposed if not unicodedata.combining(c)))
    return "".join(out)


class Unaccent(Func):
    """`inbox_unaccent(expression)`: the text without its accents (see the module docstring)."""

    function = "inbox_unaccent"
    output_field = CharField()


def register_sqlite_functions(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Give a new SQLite connection the functions search uses (a `connection_created` hook)."""
    if connection.vendor == "sqlite":
        connection.connection.create_function("inbox_unaccent", 1, unaccent, deterministic=True)


# What a typed phone number may hold besides digits.
_PHONE_LIKE = re.compile(r"[\d\s+()./-]+")
_TRUNK_ZERO = re.compile(r"\(\s*0\s*\)")  # "+33 (0)6 …": the optional national 0
_NON_DIGITS = re.compile(r"\D")
PHONE_SEARCH_MIN_DIGITS = 3


def phone_search_digits(text: str) -> str:
    """Return the digits to look for in stored phones, or "" if `text` is not phone-like.

    `+33 6 12 34 56 78`, `0033 6 12…` and `33612…` all give `33612…`; a national `06 12…`
    gives `612…`, which the stored `33612…` contains.
    """
    text = text.strip()
    if not _PHONE_LIKE.fullmatch(text):
        return ""
    digits = _NON_DIGITS.sub("", _TRUNK_ZERO.sub("", text))
    if digits.startswith("00"):
        digits = digits[2:]  # the international prefix
    elif digits.startswith("0") and not text.startswith("+"):
        digits = digits[1:]  # the national trunk prefix
    return digits if len(digits) >= PHONE_SEARCH_MIN_DIGITS else ""


def contacts_matching(text: str) -> QuerySet[Contact]:
    """Return the contacts whose name (accents aside) or phone contains `text`.

    Each side is a condition one trigram index answers (migrations 0006 and 0008).
    """
    text = text.strip()
    digits = phone_search_digits(text)
    by_name = Q(name_unaccented__icontains=Unaccent(Value(text)))
    by_phone = Q(phone__icontains=digits or text)
    return Contact.objects.alias(name_unaccented=Unaccent("name")).filter(by_name | by_phone)
