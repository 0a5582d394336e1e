"""The Content-Security-Policy holds in a real browser, and the sign-in pages look right.

Every page an agent or an admin uses is opened in Debian's Chromium with the policy the server
sends (never bypassed); each `securitypolicyviolation` event and console error is collected,
and there must be none. Screenshots at 1440x900 and 390x844 go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from accounts.models import User
from devstack import Stack, wait_for
from integrations.models import ProviderAccount, WebhookEvent
from tests.e2e.test_browser import (  # noqa: F401 - fixtures
    ARTIFACTS,
    DESKTOP,
    PASSWORD,
    PHONE,
    chromium,
    customer_writes,
    open_session,
    playwright_api,
    pytestmark,
    session_of,
    world,
)

REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolation({
    page: location.pathname + location.search,
    directive: e.effectiveDirective,
    blocked: e.blockedURI,
    sample: e.sample,
    source: e.sourceFile + ":" + e.lineNumber,
  });
});
"""


class Watched:
    """A browser context whose policy violations and console errors are collected."""

    def __init__(self, browser: Any, stack: Stack) -> None:
        self.violations: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.missing_policy: list[str] = []
        self.context = browser.new_context(viewport=DESKTOP, base_url=stack.web_url)
        self.context.expose_function("__cspViolation", lambda v: self.violations.append(v))
        self.context.add_init_script(REPORT_VIOLATIONS)
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.page.on("response", self._response)
        self.page.on(
            "requestfailed", lambda r: self.errors.append(f"failed: {r.url} ({r.failure})")
        )

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"{self.page.url}: {message.text}")

    def _response(self, response: Any) -> None:
        if response.request.resource_type != "document":
            if response.status >= 400:
                self.errors.append(f"{response.status} {response.url}")
            return
        if "content-security-policy" not in response.headers:
            self.missing_policy.append(f"{response.status} {response.url}")

    def visit(self, path: str) -> Any:
        response = self.page.goto(path)
        assert response is not None and response.status < 400, f"{path}: {response}"
        self.page.wait_for_load_state("load")
        return response

    def screenshots(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for label, size in (("1440x900", DESKTOP), ("390x844", PHONE)):
            self.page.set_viewport_size(size)
            self.page.wait_for_timeout(200)
            self.page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
        self.page.set_viewport_size(DESKTOP)

    def sign_in(self, username: str, password: str, path: str = "/login/") -> Any:
        self.visit(path)
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=password]", password)
        with self.page.expect_navigation() as navigation:
            self.page.click("[type=submit]")
        return navigation.value

    def assert_clean(self, *, expected_status: int | None = None) -> None:
        """Assert no violation, no page without the policy and no console error.

        `expected_status`: the page under test answers with this error status on purpose
        (Chromium logs every 4xx document as a console error).
        """
        # Violations are reported asynchronously; one more round trip lets the last arrive.
        self.page.evaluate("() => new Promise((r) => setTimeout(r, 0))")
        errors = self.errors
        if expected_status is not None:
            expected = f"the server responded with a status of {expected_status} "
            errors = [e for e in errors if expected not in e]
        assert self.missing_policy == []
        assert self.violations == []
        assert errors == []


@pytest.fixture
def watched(chromium: Any, stack: Stack, world: dict[str, Any]) -> Iterator[Watched]:  # noqa: F811
    browser = Watched(chromium, stack)
    yield browser
    browser.context.close()


def test_the_inbox_a_thread_and_the_template_form_break_no_policy_rule(watched, stack):
    anna = session_of(customer_writes(stack, "anna", text="Rücksendung?", hoursAgo=30))
    lucas = session_of(customer_writes(stack, "lucas", type="image"))

    watched.visit("/login/")
    watched.screenshots("sign-in")
    watched.sign_in("agent.ann", PASSWORD)
    page = watched.page
    page.wait_for_selector("[data-testid=session-list]")
    status = page.locator("[data-testid=live-status]")
    wait_for(lambda: status.get_attribute("data-state") == "live", what="the live indicator")

    open_session(page, lucas)  # an htmx swap
    page.locator("[data-testid=message-image]").first.wait_for()
    customer_writes(stack, "lucas", text="Et la facture ?")
    page.locator("[data-testid=thread-message]", has_text="Et la facture").wait_for()

    open_session(page, anna)
    page.locator("[data-testid=composer-window-closed]").wait_for()
    option = page.locator("[data-testid=template-select] option", has_text="WELCOME_BACK").first
    page.select_option("[data-testid=template-select]", value=option.get_attribute("value"))
    page.locator("[data-testid=template-field]").first.wait_for()
    page.locator("[data-testid=template-preview]").wait_for()
    watched.screenshots("inbox-template-form-under-csp")

    assert status.get_attribute("data-state") == "live"
    watched.assert_clean()


def test_admin_pages_and_the_api_reference_break_no_policy_rule(watched, stack, e2e_account):
    admin = User.objects.create_superuser("csp.admin", password=PASSWORD)
    customer_writes(stack, "mei", text="你好")
    event = wait_for(lambda: WebhookEvent.objects.first(), what="a stored callback")
    account: ProviderAccount = e2e_account
    watched.sign_in("csp.admin", PASSWORD, path="/admin/login/")

    for path in (
        "/admin/",
        "/admin/accounts/user/",
        f"/admin/accounts/user/{admin.pk}/change/",
        "/admin/accounts/team/add/",
        "/admin/accounts/apitoken/",
        "/admin/axes/accessattempt/",
        "/admin/inbox/session/",
        "/admin/integrations/webhookevent/",
        f"/admin/integrations/webhookevent/{event.pk}/change/",
        f"/admin/integrations/provideraccount/{account.pk}/change/",
        "/api/docs/",
    ):
        watched.visit(path)
    watched.page.locator(".swagger-ui .info").wait_for()

    watched.visit("/admin/accounts/apitoken/add/")
    watched.page.select_option("select[name=user]", label=str(admin))
    watched.page.fill("input[name=name]", "Reporting")
    watched.page.click("input[name=_save]")
    key = watched.page.locator("[data-testid=api-token-key]").input_value()
    watched.screenshots("admin-api-token-created")
    watched.visit("/admin/accounts/apitoken/")
    watched.screenshots("admin-api-tokens")
    assert key not in watched.page.content()

    watched.assert_clean()


def test_a_locked_out_person_is_told_when_to_try_again(watched):
    for _ in range(5):
        response = watched.sign_in("agent.ann", "not-the-password")
        if response.status == 429:
            break
    page = watched.page

    page.locator("[data-testid=locked-out]").wait_for()
    until = page.locator("[data-testid=locked-out-until]").inner_text()
    assert re.fullmatch(r"\d\d:\d\d \S+", until)
    watched.screenshots("sign-in-locked-out")
    watched.assert_clean(expected_status=429)
