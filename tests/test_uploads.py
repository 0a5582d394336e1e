"""Attachments: a refused send leaves no file behind; names in any script are kept, safely."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import timedelta
from urllib.parse import unquote

import pytest
import responses
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inbox.models import Message, Session
from inbox.services.stored_files import UPLOAD_PATH
from inbox.services.uploads import safe_filename, upload_content_disposition
from integrations.models import Channel
from tests.factories import make_session

pytestmark = pytest.mark.django_db
SEND = "https://api.mehery.example/xms/api/v1/message/send"
ACCEPTED = {"data": {"id": "abc"}, "statusKey": "SUCCESS", "status": 200, "errors": []}
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
HTMX = {"HTTP_HX_REQUEST": "true"}


def stored_files(directory: str = "uploads") -> list[str]:
    if not default_storage.exists(directory):
        return []
    folders, files = default_storage.listdir(directory)
    found = [f"{directory}/{name}" for name in files]
    for folder in folders:
        found += stored_files(f"{directory}/{folder}")
    return found


@pytest.fixture(autouse=True)
def no_files_before() -> None:
    for path in stored_files():
        default_storage.delete(path)


def send_file(client: Client, session: Session, name: str, key: str, **extra: str):
    upload = SimpleUploadedFile(name, PDF, content_type="application/pdf")
    return client.post(
        f"/s/{session.pk}/send/",
        {"mode": "reply", "body": "", "idempotency_key": key, "file": upload},
        **extra,
    )


# --- A refused send ---------------------------------------------------------------------------


@pytest.mark.parametrize("with_htmx", [True, False])
def test_an_upload_whose_send_is_refused_is_deleted(as_agent, account, channel, with_htmx):
    # The customer wrote 30 hours ago: a file is a free-form message, refused outside the window.
    session = make_session(account, channel, inbound_ago=timedelta(hours=30))

    response = send_file(as_agent, session, "invoice.pdf", "r1", **(HTMX if with_htmx else {}))

    assert response.status_code == 422
    assert "template" in response.content.decode()
    assert not Message.objects.exists()
    assert stored_files() == []


def test_an_upload_refused_on_an_inactive_channel_is_deleted(as_agent, account, channel):
    session = make_session(account, channel)
    Channel.objects.filter(pk=channel.pk).update(is_active=False)

    response = send_file(as_agent, session, "invoice.pdf", "r2", **HTMX)

    assert response.status_code == 422
    assert stored_files() == []


@responses.activate
def test_an_upload_whose_send_is_accepted_is_kept(
    as_agent, account, channel, django_capture_on_commit_callbacks
):
    responses.post(SEND, json=ACCEPTED)
    session = make_session(account, channel)

    with django_capture_on_commit_callbacks(execute=True):
        send_file(as_agent, session, "invoice.pdf", "ok1", **HTMX)

    message = Message.objects.get(idempotency_key="ok1")
    assert stored_files() == [message.media_url.split("/media/", 1)[1]]


# --- Names in any script ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("فاتورة نوفمبر.pdf", "فاتورة_نوفمبر.pdf"),
        ("חשבונית.pdf", "חשבונית.pdf"),
        ("चालान रसीद.pdf", "चालान_रसीद.pdf"),
        ("发票 2026.pdf", "发票_2026.pdf"),
        ("Quittung für März.PDF", "Quittung_für_März.pdf"),
        ("My receipt (1).png", "My_receipt_1.png"),
    ],
)
@responses.activate
def test_a_file_name_in_any_script_is_kept_through_sending_and_serving(
    as_agent, account, channel, name, kept, django_capture_on_commit_callbacks, settings
):
    settings.PUBLIC_BASE_URL = "https://inbox.example.com"
    responses.post(SEND, json=ACCEPTED)
    session = make_session(account, channel)

    with django_capture_on_commit_callbacks(execute=True):
        upload = SimpleUploadedFile(name, PDF, content_type="application/octet-stream")
        as_agent.post(
            f"/s/{session.pk}/send/",
            {"mode": "reply", "body": "", "idempotency_key": "n1", "file": upload},
            **HTMX,
        )

    message = Message.objects.get(idempotency_key="n1")
    assert message.media_filename == kept
    path = message.media_url.removeprefix("https://inbox.example.com")
    assert unquote(path).endswith("/" + kept)
    # Served to the agent by the media view, under the name it was sent with.
    served = as_agent.get(f"/media/{message.media_file.pk}/")
    assert served.status_code == 200
    disposition = served["Content-Disposition"]
    assert disposition.isascii()
    star = re.search(r"filename\*=UTF-8''([^;\s]+)", disposition)
    assert star is not None and unquote(star.group(1)) == kept


DANGEROUS = [
    "../../etc/passwd",
    "..\\..\\windows\\system.ini",
    "/absolute/path.pdf",
    "invoice\x00.pdf",
    "in\nvoice\r.pdf",
    "gpj.\u202eexe.pdf",  # right-to-left override: would show as "fdp.exe.jpg"
    "\u2066hidden\u2069.pdf",
    ".htaccess",
    "..",
    ".",
    "",
    "con.pdf\x1b[31m",
    'quote".pdf',
    "semi;colon=.pdf",
]


@pytest.mark.parametrize("name", DANGEROUS)
def test_a_dangerous_file_name_is_made_safe(name):
    _assert_safe(safe_filename(name))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_any_file_name_is_made_safe(name):
    _assert_safe(safe_filename(name))


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        alphabet=st.characters(
            categories=["L", "M", "N"],
            exclude_characters="\u0345",  # combining ypogegrammeni: NFC composes it away
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(["pdf", "png", "docx"]),
)
def test_a_name_of_letters_marks_and_digits_in_any_script_is_kept_whole(stem, suffix):
    name = f"{stem}.{suffix}"

    assert safe_filename(name) == unicodedata.normalize("NFC", name)


def _assert_safe(cleaned: str) -> None:
    assert cleaned and cleaned not in (".", "..")
    assert "/" not in cleaned and "\\" not in cleaned
    assert not cleaned.startswith(".")
    assert all(unicodedata.category(c) not in ("Cc", "Cs", "Co", "Cn", "Zl", "Zp") for c in cleaned)
    assert all(unicodedata.category(c) != "Cf" or c in "\u200c\u200d" for c in cleaned)
    assert not set(cleaned) & set('<>:"|?*;=%')
    assert unicodedata.normalize("NFC", cleaned) == cleaned
    assert len(cleaned.encode()) <= 180
    assert UPLOAD_PATH.match(f"uploads/2026/11/{'a' * 32}/{cleaned}")


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_the_content_disposition_is_ascii_with_the_whole_name_in_filename_star(name):
    cleaned = safe_filename(name)

    header = upload_content_disposition(cleaned, inline=False)

    assert header.isascii() and "\n" not in header and "\r" not in header
    match = re.fullmatch(r'attachment; filename="([^"\\]*)"; filename\*=UTF-8\'\'(\S+)', header)
    assert match is not None, header
    assert match.group(1) and match.group(1).isprintable()
    assert unquote(match.group(2)) == cleaned


# --- Audio has no caption (spec §5.5) ---------------------------------------------------------


@responses.activate
def test_the_words_typed_with_an_audio_file_go_as_a_text_right_after_it(
    as_agent, account, channel, django_capture_on_commit_callbacks
):
    responses.post(SEND, json=ACCEPTED)
    responses.post(SEND, json={**ACCEPTED, "data": {"id": "def"}})
    session = make_session(account, channel)
    upload = SimpleUploadedFile("note.mp3", b"ID3\x03\x00\x00\x00\x00\x00\x00", "audio/mpeg")

    with django_capture_on_commit_callbacks(execute=True):
        as_agent.post(
            f"/s/{session.pk}/send/",
            {"mode": "reply", "body": "Listen to this", "idempotency_key": "au1", "file": upload},
            **HTMX,
        )

    sent = [json.loads(c.request.body) for c in responses.calls if c.request.url == SEND]
    assert [b["type"] for b in sent] == ["audio", "text"]
    assert "caption" not in sent[0]["audio"]
    assert sent[1]["text"] == {"body": "Listen to this"}
    audio, text = Message.objects.filter(session=session).order_by("pk")
    assert (audio.type, audio.caption, text.body) == ("audio", "", "Listen to this")


def test_an_audio_message_with_a_caption_is_refused_not_sent_without_it(account, channel):
    from inbox.services.refusals import SendRefused
    from inbox.services.send import Draft, message_send

    session = make_session(account, channel)

    with pytest.raises(SendRefused) as refused:
        message_send(
            session,
            Draft(type="audio", media_url="https://cdn.example/a.mp3", caption="Hear this"),
        )

    assert refused.value.code == "caption_not_allowed"
    assert not Message.objects.filter(direction="out").exists()
