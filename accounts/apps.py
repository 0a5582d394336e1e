from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "People and teams"

    def ready(self) -> None:
        # drf-spectacular finds extensions by subclassing; importing registers it. (Not in
        # accounts.authentication: drf_spectacular.openapi imports DRF's views, which import
        # the authentication classes.)
        from accounts import schema  # noqa: F401
