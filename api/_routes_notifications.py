"""A user's notifications (actors/conversation.py writes them), the original backend's
paths and list envelope."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_response, validate_querystring

from api._errors import ApiError
from api._guard import current_principal, requires
from api._pages import NotificationQuery, PageHeaders, page_response
from api._payloads import CountOut, NotificationOut, NotificationPage, Pagination
from api._respond import respond
from api._schemas import MessageOut
from api._services import services
from store import Role

notifications = Blueprint("notifications", __name__)

NOTIFIED = (Role.AGENT, Role.CUSTOMER)


def _not_found(notification_id: str) -> ApiError:
    return ApiError(404, "notification_not_found", f"no notification {notification_id} of yours")


@notifications.get("/notification")
@requires(*NOTIFIED)
@validate_querystring(NotificationQuery)
@document_response(NotificationPage, 200, PageHeaders)
async def list_notifications(query_args: NotificationQuery) -> Response:
    """Your notifications, newest first.

    The cursor counts notifications from the newest, so one arriving between two pages shows the
    last item of the first page again at the top of the second.
    """
    me = current_principal().user
    offset = query_args.after
    items, total = await services().store.list_notifications(
        me.id, limit=query_args.size, offset=offset
    )
    has_more = offset + len(items) < total
    body = NotificationPage(
        notifications=[
            NotificationOut.model_validate(item, from_attributes=True) for item in items
        ],
        pagination=Pagination(total=total, limit=query_args.size, offset=offset, has_more=has_more),
    )
    return page_response(body, offset + len(items) if has_more else None)


@notifications.get("/notification/unread")
@requires(*NOTIFIED)
@document_response(CountOut)
async def unread_count() -> Response:
    """How many of your notifications are unread."""
    me = current_principal().user
    return respond(CountOut(count=await services().store.count_unread_notifications(me.id)))


@notifications.put("/notification/read-all")
@requires(*NOTIFIED)
@document_response(CountOut)
async def mark_all_read() -> Response:
    """Mark all your notifications read; answers how many changed."""
    me = current_principal().user
    return respond(CountOut(count=await services().store.mark_all_notifications_read(me.id)))


@notifications.put("/notification/<id:notification_id>/read")
@requires(*NOTIFIED)
@document_response(MessageOut)
async def mark_read(notification_id: str) -> Response:
    """Mark one of your notifications read."""
    me = current_principal().user
    if not await services().store.mark_notification_read(me.id, notification_id):
        raise _not_found(notification_id)
    return respond(MessageOut(message="notification marked read"))


@notifications.delete("/notification/<id:notification_id>")
@requires(*NOTIFIED)
@document_response(MessageOut)
async def delete(notification_id: str) -> Response:
    """Delete one of your notifications."""
    me = current_principal().user
    if not await services().store.delete_notification(me.id, notification_id):
        raise _not_found(notification_id)
    return respond(MessageOut(message="notification deleted"))
