from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from accounts.models import AgentProfile, Team, User


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
