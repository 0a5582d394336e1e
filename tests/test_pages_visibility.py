"""The contact panel shows an agent only what their teams' channels allow."""

from __future__ import annotations

import pytest

from inbox.models import ContactIdentity
from tests.factories import (
    AgentProfileFactory,
    ChannelFactory,
    ContactFactory,
    TeamFactory,
    make_session,
)

pytestmark = pytest.mark.django_db


def test_an_agents_contact_panel_hides_identities_on_channels_their_teams_do_not_serve(
    client, account
):
    served, other = ChannelFactory(account=account, name="Served"), ChannelFactory(account=account)
    contact = ContactFactory(account=account)
    session = make_session(account, served, contact=contact)
    hidden = ContactIdentity.objects.create(
        account=account,
        contact=contact,
        channel=other,
        medium="sms",
        external_id="sms-hidden-identity",
        address="44700900123",
    )
    agent = AgentProfileFactory().user
    team = TeamFactory()
    team.members.add(agent)
    team.channels.add(served)
    client.force_login(agent)

    page = client.get(f"/s/{session.pk}/").content.decode()

    assert session.identity.address in page
    assert hidden.address not in page
