"""What a platform can do is declared once (`Provider.capabilities`) and matches its methods."""

from __future__ import annotations

import pytest
from django.utils.module_loading import import_string

from integrations.base import (
    CAPABILITIES_WITHOUT_METHOD,
    CAPABILITY_METHODS,
    CAPABILITY_WORDS,
    JSON,
    AccountConfig,
    Callback,
    Capability,
    OutboundRequest,
    Provider,
    SendResult,
    UnsupportedError,
)
from integrations.registry import PROVIDERS


class Bare(Provider):
    """A platform that takes messages and nothing else."""

    kind = "bare"
    label = "Bare"

    def parse_callback(self, body: JSON) -> Callback:
        return Callback()

    def send_message(self, account: AccountConfig, request: OutboundRequest) -> SendResult:
        return SendResult(external_id="1")


def test_every_capability_has_its_words_and_its_method_unless_it_is_no_call():
    assert set(CAPABILITY_WORDS) == set(Capability)
    assert set(CAPABILITY_METHODS) | CAPABILITIES_WITHOUT_METHOD == set(Capability)
    assert not set(CAPABILITY_METHODS) & CAPABILITIES_WITHOUT_METHOD
    assert all(hasattr(Provider, method) for method in CAPABILITY_METHODS.values())


@pytest.mark.parametrize(
    "path", [*sorted(PROVIDERS.values()), "integrations.fake.provider.FakeProvider"]
)
def test_a_provider_declares_exactly_the_capabilities_it_implements(path):
    provider_class: type[Provider] = import_string(path)
    implemented = {
        capability
        for capability, method in CAPABILITY_METHODS.items()
        if getattr(provider_class, method) is not getattr(Provider, method)
    }

    assert implemented == set(provider_class.capabilities) - CAPABILITIES_WITHOUT_METHOD


def test_a_platform_without_a_capability_refuses_it_in_words_for_the_person_asking():
    bare = Bare()
    account = AccountConfig(id="1", kind="bare", base_url="http://bare.invalid")

    with pytest.raises(UnsupportedError) as refused:
        bare.session_route(account, "s-1", queue="billing")

    assert not bare.can(Capability.ROUTE)
    assert refused.value.detail == "Bare cannot route sessions."
