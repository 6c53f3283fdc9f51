"""Inline keyboards and their callback data (at most 64 bytes each, Telegram's limit).

What a button needs to be answered lives server-side; the data only names it:
``fb:+:<item id>`` (rate an item), ``g:<request id>:<garment number | w>`` (show another
garment of a photo, ``w`` = the whole photo: ``service.switch`` checks it is the
presser's), ``forget:yes:<user id>`` (bound to the user who asked)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import render
from bot.telegram.text import fit
from bot.urls import is_public_url
from engine.types import Recommendation, ScoredItem

CALLBACK_DATA_MAX = 64
GARMENTS_PER_ROW = 3

FEEDBACK_RE = re.compile(r"fb:([+-]):(\d{1,12})")
SWITCH_RE = re.compile(r"g:(\d{1,18}):(w|\d{1,3})")
FORGET_RE = re.compile(r"forget:(yes|no):(\d{1,20})")

RESULTS_LINKS = "👆 Your {n} matches. Tap a name to open its shop page; 👍 / 👎 tell me what you like."
RESULTS_NO_LINKS = "👆 Your {n} matches (these catalogue items have no shop pages). 👍 / 👎 tell me what you like."
SWITCH_HINT = "Tap another garment to see its matches."


def feedback_data(value: int, item_id: int) -> str:
    return f"fb:{'+' if value > 0 else '-'}:{item_id}"


def parse_feedback(data: str | None) -> tuple[int, int] | None:
    m = FEEDBACK_RE.fullmatch(data or "")
    if not m:
        return None
    return (1 if m.group(1) == "+" else -1), int(m.group(2))


def switch_data(request_id: int, garment: int | None) -> str:
    return f"g:{request_id}:{'w' if garment is None else garment}"


def parse_switch(data: str | None) -> tuple[int, int | None] | None:
    """(request id, garment number or None for the whole photo), or None when forged."""
    m = SWITCH_RE.fullmatch(data or "")
    if not m:
        return None
    return int(m.group(1)), None if m.group(2) == "w" else int(m.group(2))


def forget_data(answer: str, user_id: int) -> str:
    return f"forget:{answer}:{user_id}"


def parse_forget(data: str | None) -> tuple[bool, int] | None:
    """(yes?, the user id the prompt belongs to), or None for an unknown button."""
    m = FORGET_RE.fullmatch(data or "")
    if not m:
        return None
    return m.group(1) == "yes", int(m.group(2))


def switch_rows(rec: Recommendation) -> list[list[InlineKeyboardButton]]:
    """Buttons to the other garments of the photo and to the whole photo."""
    if rec.request_id is None or not rec.garments:
        return []
    rid = rec.request_id
    buttons = [
        InlineKeyboardButton(fit(render.garment_button_label(g), 40), callback_data=switch_data(rid, g.number))
        for g in rec.garments
        if g.number != rec.garment
    ]
    if rec.garment is not None:
        buttons.append(InlineKeyboardButton(render.WHOLE_PHOTO, callback_data=switch_data(rec.request_id, None)))
    return [buttons[i : i + GARMENTS_PER_ROW] for i in range(0, len(buttons), GARMENTS_PER_ROW)]


def results_keyboard(items: Sequence[ScoredItem], rec: Recommendation | None = None) -> InlineKeyboardMarkup:
    """One row per item: a link button (public shop links only), then 👍 and 👎; then
    the buttons that switch garment, when the photo has several."""
    rows = []
    for s in items:
        row = []
        if s.item.url is not None and is_public_url(s.item.url):
            row.append(InlineKeyboardButton(fit(f"{s.rank}. {s.item.title}", 40) + " ↗", url=s.item.url))
            row.append(InlineKeyboardButton("👍", callback_data=feedback_data(1, s.item.id)))
            row.append(InlineKeyboardButton("👎", callback_data=feedback_data(-1, s.item.id)))
        else:
            row.append(InlineKeyboardButton(f"{s.rank}. 👍", callback_data=feedback_data(1, s.item.id)))
            row.append(InlineKeyboardButton(f"{s.rank}. 👎", callback_data=feedback_data(-1, s.item.id)))
        rows.append(row)
    if rec is not None:
        rows.extend(switch_rows(rec))
    return InlineKeyboardMarkup(rows)


def results_text(items: Sequence[ScoredItem], rec: Recommendation | None = None) -> str:
    template = RESULTS_LINKS if any(is_public_url(s.item.url) for s in items) else RESULTS_NO_LINKS
    text = template.format(n=len(items))
    if rec is not None and len(rec.garments) > 1:
        text += "\n" + SWITCH_HINT
    return text


def whole_photo_keyboard(request_id: int) -> InlineKeyboardMarkup:
    """The refusal's way out: search the whole picture anyway."""
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(render.SEARCH_WHOLE_PHOTO, callback_data=switch_data(request_id, None))]]
    )


def forget_keyboard(user_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("Yes, delete everything", callback_data=forget_data("yes", user_id)),
                InlineKeyboardButton("Cancel", callback_data=forget_data("no", user_id)),
            ]
        ]
    )
