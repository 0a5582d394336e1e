"""The contact's language takes only codes the platform understands, chosen from a picker.

The list belongs to the provider (`Provider.contact_languages`): XMS takes a locale such as
`en_US` whose language is one of the codes its ContactMeta enum documents (spec §2.5, §3.6).
"""

from __future__ import annotations

import re

import pytest
import responses
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import User
from inbox.models import Session, SessionAction
from inbox.services.refusals import SendRefused
from inbox.services.session_actions import session_action_request
from integrations.base import Language, Provider
from integrations.registry import get_provider
from integrations.xms.provider import XmsProvider

pytestmark = pytest.mark.django_db
API = "https://api.mehery.example/xms/api/v1"

# ContactMeta.lang (spec §3.6), verbatim: the languages XMS knows, in Java's codes.
_ENUM = """
AB AE AF AK AM AN AR AS AV AY AZ BA BE BG BH BI BM BN BO BR BS CA CE CH CO CR CS CU CV CY
DA DE DV DZ EE EL EN EO ES ET EU FA FF FI FJ FO FR FY GA GD GL GN GU GV HA HI HO HR HT HU
HY HZ IA IN IE IG II IK IO IS IT IU IW JA JI JV KA KG KI KJ KK KL KM KN KO KR KS KU KV KW
KY LA LB LG LI LN LO LT LU LV MG MH MI MK ML MN MO MR MS MT MY NA NB ND NE NG NL NN NO NR
NV NY OC OJ OM OR OS PA PI PL PS PT QU RM RN RO RU RW SA SC SD SE SG SI SK SL SM SN SO SQ
SR SS ST SU SV SW TA TE TG TH TI TK TL PH TN TO TR TS TT TW TY UG UK UR UZ VE VI VO WA WO
XH YO ZA ZH ZU
"""
XMS_DOCUMENTED = set(_ENUM.split())
# Java's legacy codes for Hebrew, Indonesian and Yiddish, as the modern codes are written.
MODERN = {"HE": "IW", "ID": "IN", "YI": "JI"}


@pytest.fixture
def session(xms_session: Session) -> Session:
    return xms_session


@pytest.fixture
def as_admin(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("boss", password="x-long-password-1"))
    return client


def test_xms_offers_locales_of_the_languages_it_documents_each_with_a_name():
    languages = get_provider("xms").contact_languages

    assert len(languages) >= 40
    assert len({language.code for language in languages}) == len(languages)
    for language in languages:
        lang, _, country = language.code.partition("_")
        assert re.fullmatch(r"[a-z]{2}", lang) and re.fullmatch(r"[A-Z]{2}", country), language
        assert MODERN.get(lang.upper(), lang.upper()) in XMS_DOCUMENTED, language
        assert language.name and language.code not in language.name
    assert {"en_US", "fr_FR", "de_DE", "ar_AE", "he_IL", "hi_IN", "zh_CN", "pt_BR"} <= {
        language.code for language in languages
    }


def test_a_provider_without_contact_languages_offers_none():
    class Quiet(Provider):
        kind = "quiet"
        label = "Quiet"

        def parse_callback(self, body):  # pragma: no cover - not called
            raise NotImplementedError

    assert Quiet().contact_languages == ()
    assert Quiet().contact_language_find("en_US") is None


@pytest.mark.parametrize(
    ("typed", "code"),
    [("en_US", "en_US"), ("en-us", "en_US"), (" de_de ", "de_DE"), ("FR-fr", "fr_FR")],
)
def test_a_listed_language_is_found_however_its_case_and_separator_are_written(typed, code):
    found = XmsProvider().contact_language_find(typed)

    assert found is not None and found.code == code


@responses.activate
def test_a_listed_language_is_saved_at_the_platform_in_its_listed_form(
    session, django_capture_on_commit_callbacks
):
    responses.post(f"{API}/contact/prefs/lang", json={"results": [], "status": 200})

    with django_capture_on_commit_callbacks(execute=True):
        action = session_action_request(session, SessionAction.Kind.LANGUAGE, {"lang": "de-de"})

    assert action.params == {"lang": "de_DE"}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    typed=st.one_of(
        st.text(max_size=20),
        st.sampled_from(["english", "en", "xx_XX", "en_USA", "klingon", "e\x00n_US", "<b>"]),
        st.from_regex(r"[a-z]{2}_[A-Z]{2}", fullmatch=True),
    )
)
def test_a_language_the_platform_does_not_understand_is_refused_with_a_reason(session, typed):
    listed = {language.code for language in XmsProvider.contact_languages}
    normalized = typed.strip().replace("-", "_")
    if normalized.lower() in {code.lower() for code in listed}:
        return

    with pytest.raises(SendRefused) as refused:
        session_action_request(session, SessionAction.Kind.LANGUAGE, {"lang": typed})

    assert refused.value.code in ("lang_required", "lang_unknown")
    assert not SessionAction.objects.filter(session=session).exists()


def test_the_language_form_answers_an_unknown_code_with_a_clear_422(as_admin, session):
    response = as_admin.post(
        f"/s/{session.pk}/language/", {"lang": "klingon"}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 422
    assert "from the list" in response.content.decode()
    assert not SessionAction.objects.filter(session=session).exists()


def test_the_contact_panel_offers_a_picker_of_the_platforms_languages_with_names(as_admin, session):
    session.contact.language = "fr_FR"
    session.contact.save()

    page = as_admin.get(f"/s/{session.pk}/").content.decode()

    picker = re.search(r'<select[^>]*data-testid="contact-language".*?</select>', page, re.S)
    assert picker is not None
    options = re.findall(r'<option value="([^"]*)"([^>]*)>([^<]*)</option>', picker.group(0))
    codes = [code for code, _, _ in options]
    assert set(codes) >= {language.code for language in XmsProvider.contact_languages}
    chosen = [(code, label) for code, attrs, label in options if "selected" in attrs]
    assert chosen == [("fr_FR", "French (France) · fr_FR")]


def test_a_contacts_language_outside_the_list_is_shown_but_not_offered_again(as_admin, session):
    session.contact.language = "tlh"
    session.contact.save()

    page = as_admin.get(f"/s/{session.pk}/").content.decode()

    picker = re.search(r'<select[^>]*data-testid="contact-language".*?</select>', page, re.S)
    assert picker is not None
    assert re.search(r'<option value="" selected disabled>tlh \(not a language', picker.group(0))


def test_language_is_a_provider_contract_value():
    assert Language(code="en_US", name="English (United States)").code == "en_US"
