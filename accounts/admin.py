from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from accounts.models import AgentProfile, ApiToken, Team, User
from accounts.services import api_token_create, api_token_revoke


class AgentProfileInline(admin.StackedInline):
    model = AgentProfile
    can_delete = False
    extra = 0


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    inlines = [AgentProfileInline]
    list_display = ("username", "display_name", "email", "is_staff", "is_active", "last_login")
    fieldsets = (
        *(DjangoUserAdmin.fieldsets or ()),
        ("Inbox", {"fields": ("display_name",)}),
    )


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "platform_code", "member_count")
    prepopulated_fields = {"slug": ("name",)}
    filter_horizontal = ("members", "channels")
    search_fields = ("name", "slug", "platform_code")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        return super().get_queryset(request).annotate(member_total=Count("members"))

    @admin.display(description="Members", ordering="member_total")
    def member_count(self, obj: Team) -> int:
        return int(getattr(obj, "member_total", 0))


class ApiTokenForm(forms.ModelForm):
    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """List, make and revoke API tokens; a new token's key is shown once, on the next page."""

    form = ApiTokenForm
    list_display = (
        "name",
        "user",
        "prefix_shown",
        "status",
        "created_at",
        "expires_at",
        "last_used_at",
    )
    list_select_related = ("user",)
    search_fields = ("name", "prefix", "user__username")
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> Any:
        if obj is None:
            return ("user", "name", "expires_at")
        return (
            "user",
            "name",
            "prefix_shown",
            "status",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
        )

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> Any:
        if obj is None:
            return ()
        return ("user", "prefix_shown", "status", "created_at", "last_used_at", "revoked_at")

    @admin.display(description="Key starts with")
    def prefix_shown(self, obj: ApiToken) -> str:
        return f"{obj.prefix}…"

    @admin.display(description="Status")
    def status(self, obj: ApiToken) -> str:
        if obj.revoked_at is not None:
            return "Revoked"
        if obj.expires_at is not None and obj.expires_at <= timezone.now():
            return "Expired"
        return "Active"

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, key = api_token_create(obj.user, name=obj.name, expires_at=obj.expires_at)
        obj.pk, obj.prefix, obj.digest = token.pk, token.prefix, token.digest
        obj.created_at = token.created_at
        obj._state.adding = False
        obj._state.db = token._state.db
        request._api_token_key = key  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None
    ) -> HttpResponse:
        key = getattr(request, "_api_token_key", None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API token created",
            "token": obj,
            "key": key,
        }
        response = TemplateResponse(request, "admin/accounts/apitoken/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = sum(api_token_revoke(token) for token in queryset)
        already = queryset.count() - revoked
        note = f" ({already} already revoked)" if already else ""
        self.message_user(request, f"Revoked {revoked} token(s){note}.", messages.SUCCESS)
