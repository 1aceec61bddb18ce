"""Timestamps as people read them, for the templates: `{{ x.created_at|when }}` on a detail
page, `{{ x.created_at|ago }}` in a list.

Both render `<time datetime="ISO" title="exact UTC value">text</time>`. The page's script
(app/static/ui/app.js) then shows the reader's own time zone ("Nov 30, 2026, 08:19:17
GMT+1") and keeps a list's "3 min ago" current. Without the script the page still reads
well: the time in UTC to the minute, or the age when the page was made.
"""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup

from app.models.common import utcnow


def when(value: datetime | None) -> Markup:
    """A moment on a detail page: "2026-11-30 07:19 UTC" until the script localises it."""
    if value is None:
        return Markup("")
    return _time(value, f"{_utc(value):%Y-%m-%d %H:%M} UTC", relative=False)


def ago(value: datetime | None, now: datetime | None = None) -> Markup:
    """A moment in a list, where age matters more than the date: "3 min ago"."""
    if value is None:
        return Markup("")
    return _time(value, age(_utc(value), now or utcnow()), relative=True)


def age(value: datetime, now: datetime) -> str:
    """The same words as app.js's `age()`: keep the two alike."""
    seconds = (now - value).total_seconds()
    if seconds < 45:
        return "just now"  # also a moment slightly ahead of this clock
    minutes = int(seconds // 60)
    if minutes < 45:
        return f"{max(minutes, 1)} min ago"
    hours = int(seconds // 3600)
    if hours < 24:
        return f"{max(hours, 1)} h ago"
    days = int(seconds // 86400)
    if days < 30:
        return "1 day ago" if days == 1 else f"{days} days ago"
    return f"{value:%Y-%m-%d}"


def _time(value: datetime, text: str, *, relative: bool) -> Markup:
    moment = _utc(value)
    element = (
        Markup('<time datetime="{}" title="{}" data-relative>{}</time>')
        if relative
        else Markup('<time datetime="{}" title="{}">{}</time>')
    )
    # Markup.format escapes what it is given.
    return element.format(f"{moment:%Y-%m-%dT%H:%M:%SZ}", f"{moment:%Y-%m-%d %H:%M:%S} UTC", text)


def _utc(value: datetime) -> datetime:
    """The database gives aware UTC values; a naive one is taken as UTC too."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
