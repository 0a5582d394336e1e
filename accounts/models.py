"""Users, teams and agent profiles.

A custom `User` from day one so that nothing has to migrate away from `auth.User` later. Teams
serve channels; an agent sees the sessions of the channels their teams serve (issue: agent pages).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A person who signs in: an agent, a supervisor or an admin (staff)."""

    display_name = models.CharField(max_length=150, blank=True)

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"

    def __str__(self) -> str:
        return self.display_name or self.get_full_name() or self.username


class Team(models.Model):
    """A group of agents serving a set of channels."""

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=120, unique=True)
    # The platform's code for this team, used when routing through the platform (XMS `team`).
    platform_code = models.CharField(max_length=120, blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="teams", blank=True)
    channels = models.ManyToManyField("integrations.Channel", related_name="teams", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AgentProfile(models.Model):
    """What routing needs to know about an agent: role, skills, capacity and availability."""

    class Role(models.TextChoices):
        AGENT = "agent", "Agent"
        SUPERVISOR = "supervisor", "Supervisor"

    class Availability(models.TextChoices):
        ONLINE = "online", "Online"
        AWAY = "away", "Away"
        OFFLINE = "offline", "Offline"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_profile"
    )
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.AGENT)
    skills = models.JSONField(default=list, blank=True, help_text="List of skill codes.")
    capacity = models.PositiveSmallIntegerField(
        default=5, help_text="How many open sessions this agent takes at once."
    )
    availability = models.CharField(
        max_length=20, choices=Availability.choices, default=Availability.OFFLINE
    )
    # The platform's code for this agent, so platform assignments (XMS `assignedToAgent`,
    # `sessionAssigned.newAgent`) map to a local user.
    platform_code = models.CharField(max_length=120, blank=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(capacity__lte=500), name="agentprofile_capacity_sane"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.get_role_display()})"


class ApiToken(models.Model):
    """A key an integrator sends as `Authorization: Token <key>`; only its hash is stored.

    The full key is shown once, when it is made (`accounts.services.api_token_create`); the
    database keeps its SHA-256 `digest` (keys are 256 random bits, so a plain hash suffices and
    survives a SECRET_KEY rotation) and a short `prefix` so people can tell their keys apart.
    A revoked or expired token authenticates nobody; it stays listed until deleted.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What or who uses this token.")
    prefix = models.CharField(max_length=12, help_text="The first characters of the key.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Empty: the token does not expire."
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
