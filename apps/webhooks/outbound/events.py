"""Event types a client endpoint can subscribe to, and what produces each."""

from __future__ import annotations

DELIVERY_SENT = "delivery.sent"
DELIVERY_DELIVERED = "delivery.delivered"
DELIVERY_FAILED = "delivery.failed"
DELIVERY_BOUNCED = "delivery.bounced"
DELIVERY_SUPPRESSED = "delivery.suppressed"
DELIVERY_OPENED = "delivery.opened"
DELIVERY_CLICKED = "delivery.clicked"
# In-app engagement (apps/inbox): the recipient saw / read the message in their inbox.
DELIVERY_SEEN = "delivery.seen"
DELIVERY_READ = "delivery.read"
NOTIFICATION_COMPLETED = "notification.completed"
# Sent on request (POST /webhooks/{id}/test) whatever the endpoint subscribes to.
WEBHOOK_TEST = "webhook.test"

EVENT_TYPES = (
    DELIVERY_SENT,
    DELIVERY_DELIVERED,
    DELIVERY_FAILED,
    DELIVERY_BOUNCED,
    DELIVERY_SUPPRESSED,
    DELIVERY_OPENED,
    DELIVERY_CLICKED,
    DELIVERY_SEEN,
    DELIVERY_READ,
    NOTIFICATION_COMPLETED,
)

# A delivery reaching this status → this event.
STATUS_EVENTS = {
    "sent": DELIVERY_SENT,
    "delivered": DELIVERY_DELIVERED,
    "failed": DELIVERY_FAILED,
    "bounced": DELIVERY_BOUNCED,
    "suppressed": DELIVERY_SUPPRESSED,
}
# A provider receipt event (engagement; no status change) → this event.
ENGAGEMENT_EVENTS = {
    "opened": DELIVERY_OPENED,
    "clicked": DELIVERY_CLICKED,
    "seen": DELIVERY_SEEN,
    "read": DELIVERY_READ,
}
# Engagement details copied into the event's data.
ENGAGEMENT_DETAIL_KEYS = ("url", "useragent")
# A notification reaching one of these → notification.completed (once per final status).
FINAL_NOTIFICATION_STATUSES = ("completed", "partially_failed", "failed", "cancelled")
