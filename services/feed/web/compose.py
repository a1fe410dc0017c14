"""The compose form, read into the API's MessageDraft; and the measure of
a short post as each network counts it (the server's own functions, so
the counters in the browser can never disagree with the refusal)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from starlette.datastructures import FormData

from services.feed.content import ChannelLimit, render_markdown
from shared.events import Variants
from shared.postlength import short_post
from shared.web.forms import blank_to_none, field, words

CAMPAIGN_TZ = ZoneInfo("Europe/Paris")  # times typed in the console are the campaign's local time


def local_time(value: str | None, field: str) -> datetime | None:
    """An <input type=datetime-local> value, in the campaign's time zone."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=CAMPAIGN_TZ)
    except ValueError:
        raise ValueError(f"{field}: not a date and time (YYYY-MM-DDTHH:MM)") from None


def priority(value: str | None) -> int:
    try:
        return int(value or 1)
    except ValueError:
        raise ValueError("priority: a number from 0 (low) to 3 (urgent)") from None


def draft_fields(form: FormData) -> dict:
    """What MessageDraft takes, from the form (validated by the model)."""
    short = blank_to_none(field(form, "short_text"))
    return {
        "title": form.get("title", ""), "body": form.get("body", ""), "link": blank_to_none(field(form, "link")),
        "interests": form.getlist("interests") or words(field(form, "interests_text")),
        "regions": words(field(form, "regions")), "priority": priority(field(form, "priority")),
        "publish_at": local_time(field(form, "publish_at"), "publish_at"),
        "expires_at": local_time(field(form, "expires_at"), "expires_at"),
        "variants": {"email": {"subject": form.get("email_subject", ""), "body": form.get("email_body", "")},
                     **({"short": {"text": short}} if short else {})},
    }


def as_form(message) -> dict:
    """A stored message back into the form's fields (to edit a draft)."""
    variants = Variants.model_validate(message.variants)

    def local(at: datetime | None) -> str:
        return at.astimezone(CAMPAIGN_TZ).strftime("%Y-%m-%dT%H:%M") if at else ""

    return {"title": message.title, "body": message.body, "link": message.link or "",
            "interests": message.interests, "interests_text": ", ".join(message.interests),
            "regions": ", ".join(message.regions), "priority": message.priority,
            "publish_at": local(message.publish_at), "expires_at": local(message.expires_at),
            "email_subject": variants.email.subject, "email_body": variants.email.body,
            "short_text": variants.short.text if variants.short else ""}


def measure(text: str, link: str | None, limits: tuple[ChannelLimit, ...]) -> dict:
    post = short_post(text, link) if text.strip() else ""
    return {"post": post, "networks": [
        {"network": limit.network, "limit": limit.limit, "unit": limit.unit,
         "count": limit.measure(post), "fits": limit.measure(post) <= limit.limit}  # type: ignore[operator]
        for limit in limits]}


def preview_html(markdown: str) -> str:
    """The body as volunteers will see it: feed's own sanitized rendering."""
    return render_markdown(markdown)
