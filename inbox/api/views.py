"""API views: parse the request, call a selector or a service, render the answer.

Every lookup goes through a visibility selector, so a session, message or action outside the
user's reach is a 404 whatever the endpoint. A `SendRefused` from a service is a 422 with the
service's code and reason: {"error": "window_closed", "detail": "..."}. The schema states the
errors every operation can give once, in `inbox.api.openapi`; views declare only their own.
"""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import UUID

from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import Cursor, CursorPagination, PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inbox.api.filters import SessionFilter, TemplateFilter
from inbox.api.permissions import Forbidden, assignment_refusal, request_user
from inbox.api.serializers import (
    AssignSerializer,
    ChannelSerializer,
    ErrorSerializer,
    MessageSendSerializer,
    MessageSerializer,
    ResendAsTemplateSerializer,
    RouteSerializer,
    SessionActionSerializer,
    SessionDetailSerializer,
    SessionSerializer,
    TemplateSerializer,
)
from inbox.models import Message, Session, SessionAction
from inbox.selectors.messages import message_list_for_session
from inbox.selectors.replies import template_get_for_account, template_list_for_user
from inbox.selectors.sessions import session_detail_for_user, session_list_for_user
from inbox.selectors.visibility import (
    channels_visible_to,
    messages_visible_to,
    session_actions_visible_to,
    sessions_visible_to,
)
from inbox.services.refusals import SendRefused
from inbox.services.send import Draft, message_resend_as_template, message_retry, message_send
from inbox.services.session_actions import session_action_request, session_assign
from integrations.base import MessageType
from integrations.models import Channel, Template

_Row = TypeVar("_Row")
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description=(
        "Up to 100 characters. The same key returns the message it first created (200) "
        "instead of sending again."
    ),
)
REFUSED = OpenApiResponse(
    ErrorSerializer,
    description="Refused before any platform call; `error` says why (e.g. window_closed).",
)


class Refused(exceptions.APIException):
    """A service refused the request: 422 with the service's code and reason."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The request cannot be carried out."
    default_code = "refused"


def refused(exc: SendRefused) -> Refused:
    """Return the API error for a service's refusal."""
    return Refused(detail=exc.reason, code=exc.code)


def idempotency_key(request: Request, from_body: str) -> str:
    """Return the request's idempotency key: the header, or else the body field."""
    header = request.headers.get("Idempotency-Key", "").strip()
    from_body = from_body.strip()
    if len(header) > 100:
        raise exceptions.ValidationError(
            {"Idempotency-Key": ["Ensure this header has no more than 100 characters."]}
        )
    if header and from_body and header != from_body:
        raise exceptions.ValidationError(
            {"idempotency_key": ["It differs from the Idempotency-Key header."]}
        )
    return header or from_body


def template_or_invalid(account_id: UUID, template_id: int) -> Template:
    """Return the account's template with this id, or raise a 400 naming `template_id`."""
    template = template_get_for_account(account_id, template_id)
    if template is None:
        raise exceptions.ValidationError({"template_id": ["No such template on this account."]})
    return template


class CodedErrors(APIView):
    """Answer a missing object as {"error": "not_found", ...} like every other API error."""

    def handle_exception(self, exc: Exception) -> Response:
        # Django's Http404 carries no DRF code, so the API-wide handler would say "error".
        if isinstance(exc, Http404):
            exc = exceptions.NotFound()
        return super().handle_exception(exc)


class SessionPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class MessageCursorPagination(CursorPagination):
    ordering = ("sent_at", "id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def decode_cursor(self, request: Request) -> Cursor | None:
        # DRF checks a cursor's shape, not its position: one that is not a time would reach
        # the query (`sent_at > 'garbage'`) and fail there.
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            try:
                valid = parse_datetime(str(cursor.position)) is not None
            except ValueError:
                valid = False
            if not valid:
                raise exceptions.NotFound(self.invalid_cursor_message)
        return cursor


# --- Sessions ---------------------------------------------------------------------------------


@extend_schema(tags=["sessions"])
class SessionViewSet(
    CodedErrors, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Session]
):
    """The sessions the user can see, and what can be done with one."""

    serializer_class = SessionSerializer
    filterset_class = SessionFilter
    pagination_class = SessionPagination

    def get_queryset(self) -> QuerySet[Session]:
        if getattr(self, "swagger_fake_view", False):
            return Session.objects.none()
        user = request_user(self.request)
        if self.action == "list":
            return session_list_for_user(user)
        if self.action == "retrieve":
            return session_detail_for_user(user)
        return sessions_visible_to(user).select_related("account", "channel")

    def filter_queryset(self, queryset: QuerySet[Session, _Row]) -> QuerySet[Session, _Row]:
        # The query-string filters are the list's; a detail or an action ignores them.
        return super().filter_queryset(queryset) if self.action == "list" else queryset

    def get_serializer_class(self) -> type[SessionSerializer]:
        return SessionSerializer if self.action == "list" else SessionDetailSerializer

    @extend_schema(
        summary="List sessions",
        description="The sessions you can see (an agent: those of the channels their teams "
        "serve), newest activity first, 50 a page.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Get a session",
        description="With the contact's identities, the last 50 timeline entries and the "
        "actions pending, running or failed.",
        responses={200: SessionDetailSerializer},
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    def _detail(self, session: Session) -> Response:
        fresh = session_detail_for_user(request_user(self.request)).get(pk=session.pk)
        return Response(SessionDetailSerializer(fresh, context=self.get_serializer_context()).data)

    @extend_schema(
        summary="Assign a session",
        description="Inside Switchboard only (no platform call). Supervisors assign anyone; an "
        "agent may take a session, or give up their own.",
        request=AssignSerializer,
        responses={
            200: SessionDetailSerializer,
            403: OpenApiResponse(
                ErrorSerializer,
                description="The assignment is not yours to make; `detail` says why.",
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def assign(self, request: Request, pk: str | None = None) -> Response:
        session = self.get_object()
        user = request_user(request)
        serializer = AssignSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        assignee = data.get("assignee", session.assignee)
        team = data.get("team")
        reason = assignment_refusal(user, session, assignee=assignee, team=team)
        if reason:
            raise Forbidden(reason)
        if (
            assignee is not None
            and not sessions_visible_to(assignee).filter(pk=session.pk).exists()
        ):
            raise exceptions.ValidationError(
                {"assignee": ["This user does not serve the session's channel."]}
            )
        session_assign(session, assignee=assignee, team=team, by=user)
        return self._detail(session)

    def _request_action(
        self, session: Session, kind: str, params: dict[str, Any] | None = None
    ) -> Response:
        try:
            session_action = session_action_request(
                session, kind, params, by=request_user(self.request)
            )
        except SendRefused as exc:
            raise refused(exc) from exc
        return Response(SessionActionSerializer(session_action).data, status=202)

    @extend_schema(
        summary="Route a session at the platform",
        description="Answers at once with the action; a worker calls the platform. Poll "
        "/api/v1/actions/{id}/ for its state.",
        request=RouteSerializer,
        responses={202: SessionActionSerializer, 422: REFUSED},
    )
    @action(detail=True, methods=["post"])
    def route(self, request: Request, pk: str | None = None) -> Response:
        session = self.get_object()
        serializer = RouteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        params = dict(serializer.validated_data)
        return self._request_action(session, SessionAction.Kind.ROUTE, params)

    @extend_schema(
        summary="Resolve a session at the platform",
        description="Answers at once with the action; a worker calls the platform and then "
        "marks the session resolved. Poll /api/v1/actions/{id}/ for its state.",
        request=None,
        responses={202: SessionActionSerializer, 422: REFUSED},
    )
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, pk: str | None = None) -> Response:
        return self._request_action(self.get_object(), SessionAction.Kind.RESOLVE)

    @extend_schema(
        summary="Close a session at the platform",
        description="Answers at once with the action; a worker calls the platform and then "
        "marks the session closed. Poll /api/v1/actions/{id}/ for its state.",
        request=None,
        responses={202: SessionActionSerializer, 422: REFUSED},
    )
    @action(detail=True, methods=["post"])
    def close(self, request: Request, pk: str | None = None) -> Response:
        return self._request_action(self.get_object(), SessionAction.Kind.CLOSE)


@extend_schema(tags=["messages"])
class SessionMessagesView(CodedErrors, generics.GenericAPIView[Message]):
    """A session's messages: read them page by page, or send one."""

    serializer_class = MessageSerializer
    pagination_class = MessageCursorPagination
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[Message]:
        if getattr(self, "swagger_fake_view", False):
            return Message.objects.none()
        return message_list_for_session(self.get_session())

    def get_session(self) -> Session:
        sessions = sessions_visible_to(request_user(self.request)).select_related(
            "account", "channel", "contact", "identity"
        )
        return get_object_or_404(sessions, pk=self.kwargs["session_id"])

    @extend_schema(
        summary="List a session's messages",
        description="Oldest first; follow `next` to page through (a cursor: pages neither skip "
        "nor repeat messages when new ones arrive).",
        responses={200: MessageSerializer(many=True)},
    )
    def get(self, request: Request, session_id: int) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(
            MessageSerializer(page, many=True, context={"request": request}).data
        )

    @extend_schema(
        summary="Send a message",
        description="Queues the message and answers at once; a worker delivers it (follow its "
        "`status`). Checked first: the channel, the 24-hour window (outside it only an "
        "approved template can be sent), the template's approval and placeholders.",
        parameters=[IDEMPOTENCY_HEADER],
        request=MessageSendSerializer,
        responses={
            201: OpenApiResponse(MessageSerializer, description="Queued."),
            200: OpenApiResponse(
                MessageSerializer, description="The message this idempotency key first created."
            ),
            422: REFUSED,
        },
    )
    def post(self, request: Request, session_id: int) -> Response:
        session = self.get_session()
        serializer = MessageSendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        key = idempotency_key(request, data.pop("idempotency_key"))
        template_id = data.pop("template_id")
        template = (
            None if template_id is None else template_or_invalid(session.account_id, template_id)
        )
        default_type = MessageType.TEMPLATE if template is not None else MessageType.TEXT
        data["type"] = data.get("type") or default_type.value
        try:
            message, created = message_send(
                session,
                Draft(**data, template=template),
                author=request_user(request),
                idempotency_key=key,
            )
        except SendRefused as exc:
            raise refused(exc) from exc
        return Response(
            MessageSerializer(message, context={"request": request}).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


@extend_schema(tags=["messages"])
class MessageViewSet(CodedErrors, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Message]):
    """One message, and the agent actions on a failed one."""

    serializer_class = MessageSerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[Message]:
        if getattr(self, "swagger_fake_view", False):
            return Message.objects.none()
        return (
            messages_visible_to(request_user(self.request))
            .select_related(
                "account",
                "author",
                "template",
                "media_file",
                "session__account",
                "session__channel",
                "session__contact",
                "session__identity",
            )
            .prefetch_related("copies")
        )

    @extend_schema(summary="Get a message", responses={200: MessageSerializer})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Retry a failed or unconfirmed message",
        description="Queues the failed message again for a new set of attempts. Refused when "
        "the 24-hour window has closed: re-send it as a template instead. An `unconfirmed` "
        "message may already have reached the customer: sending it again may duplicate it.",
        request=None,
        responses={200: MessageSerializer, 422: REFUSED},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        message = self.get_object()
        try:
            message = message_retry(message, by=request_user(request))
        except SendRefused as exc:
            raise refused(exc) from exc
        return Response(MessageSerializer(message, context={"request": request}).data)

    @extend_schema(
        summary="Re-send a failed message as a template",
        description="For a message the 24-hour window refused: sends the template in its "
        "place (the new message's `replaces` is the failed one).",
        parameters=[IDEMPOTENCY_HEADER],
        request=ResendAsTemplateSerializer,
        responses={201: MessageSerializer, 422: REFUSED},
    )
    @action(detail=True, methods=["post"], url_path="resend-as-template")
    def resend_as_template(self, request: Request, pk: str | None = None) -> Response:
        message = self.get_object()
        serializer = ResendAsTemplateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        key = idempotency_key(request, data["idempotency_key"])
        template = template_or_invalid(message.account_id, data["template_id"])
        try:
            replacement = message_resend_as_template(
                message,
                template,
                data["template_data"],
                by=request_user(request),
                idempotency_key=key,
            )
        except SendRefused as exc:
            raise refused(exc) from exc
        return Response(
            MessageSerializer(replacement, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )


@extend_schema(tags=["sessions"])
class SessionActionViewSet(
    CodedErrors, mixins.RetrieveModelMixin, viewsets.GenericViewSet[SessionAction]
):
    """A route/resolve/close request, to poll until it is done or failed."""

    serializer_class = SessionActionSerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[SessionAction]:
        if getattr(self, "swagger_fake_view", False):
            return SessionAction.objects.none()
        return session_actions_visible_to(request_user(self.request))

    @extend_schema(summary="Get a session action", responses={200: SessionActionSerializer})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)


@extend_schema(tags=["templates"])
class TemplateViewSet(CodedErrors, mixins.ListModelMixin, viewsets.GenericViewSet[Template]):
    """The active templates of the user's accounts."""

    serializer_class = TemplateSerializer
    filterset_class = TemplateFilter

    def get_queryset(self) -> QuerySet[Template]:
        if getattr(self, "swagger_fake_view", False):
            return Template.objects.none()
        return template_list_for_user(request_user(self.request))

    @extend_schema(summary="List templates", responses={200: TemplateSerializer(many=True)})
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)


@extend_schema(tags=["channels"])
class ChannelViewSet(CodedErrors, mixins.ListModelMixin, viewsets.GenericViewSet[Channel]):
    """The channels the user can see."""

    serializer_class = ChannelSerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[Channel]:
        if getattr(self, "swagger_fake_view", False):
            return Channel.objects.none()
        return channels_visible_to(request_user(self.request)).order_by("name", "id")

    @extend_schema(summary="List channels")
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)
