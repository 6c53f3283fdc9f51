"""Discord buttons. All are ``DynamicItem``s whose state lives in the custom id, so
they keep working after a restart:

* ``fb:+:<item id>`` / ``fb:-:<item id>``: rate an item;
* ``g:<request id>:<garment number | w>``: show another garment of a photo (``w``: the
  whole photo); ``service.switch`` answers only the user who sent the photo;
* ``fb:forget:yes|no``: the answer to ``/forget`` (asked ephemerally, so only the
  asker can press it).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol

import discord

from bot import render
from bot.discord.embeds import MAX_EMBEDS, clip
from engine.types import Recommendation, UserRef


class _Host(Protocol):
    """What the views need of the client (bot.discord.client.FashionBot), named here so
    the views and the client don't import each other."""

    service: Any
    flow: Any

    def deferred(self, *args: Any, **kwargs: Any) -> Any: ...

    def recommendation_reply(self, *args: Any, **kwargs: Any) -> Any: ...


log = logging.getLogger(__name__)

PLATFORM = "discord"
FEEDBACK_TEMPLATE = r"fb:(?P<v>[+-]):(?P<id>\d+)"
FORGET_TEMPLATE = r"fb:forget:(?P<answer>yes|no)"
SWITCH_TEMPLATE = r"g:(?P<rid>\d{1,18}):(?P<g>w|\d{1,3})"
FORGET_CANCELLED = "OK, I haven't deleted anything."
MAX_ROWS = 5
ROW_WIDTH = 5
SWITCH_BUTTONS = 5  # one row: up to four other garments and "Whole photo"


def user_ref(user: discord.abc.User) -> UserRef:
    return UserRef(PLATFORM, str(user.id))


def _bot(interaction: discord.Interaction) -> _Host:
    client: Any = interaction.client
    if not (hasattr(client, "deferred") and hasattr(client, "service")):
        raise TypeError("a fashionbot button pressed on another client")
    return client


class FeedbackButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=FEEDBACK_TEMPLATE):
    """👍 / 👎 for one item of a recommendation."""

    def __init__(self, value: int, item_id: int, *, rank: int | None = None, row: int | None = None) -> None:
        self.value = 1 if value > 0 else -1
        self.item_id = int(item_id)
        super().__init__(
            discord.ui.Button(
                style=discord.ButtonStyle.secondary,
                emoji="👍" if self.value > 0 else "👎",
                label=str(rank) if rank is not None else None,
                custom_id=f"fb:{'+' if self.value > 0 else '-'}:{self.item_id}",
            ),
            row=row,
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> FeedbackButton:
        return cls(1 if match["v"] == "+" else -1, int(match["id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = _bot(interaction)

        async def work() -> dict[str, Any]:
            await bot.service.feedback(user_ref(interaction.user), self.item_id, self.value)
            return {"content": render.FEEDBACK_THANKS[self.value]}

        await bot.deferred(interaction, work, ephemeral=True, what="feedback")


class SwitchButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=SWITCH_TEMPLATE):
    """Show another garment of a photo (or the whole photo), answered to the presser only."""

    def __init__(self, request_id: int, garment: int | None, label: str, *, row: int | None = None) -> None:
        self.request_id = int(request_id)
        self.garment = garment
        super().__init__(
            discord.ui.Button(
                style=discord.ButtonStyle.primary if garment is None else discord.ButtonStyle.secondary,
                label=clip(label, 80),
                custom_id=f"g:{self.request_id}:{'w' if garment is None else garment}",
            ),
            row=row,
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> SwitchButton:
        garment = None if match["g"] == "w" else int(match["g"])
        label = item.label if isinstance(item, discord.ui.Button) and item.label else render.WHOLE_PHOTO
        return cls(int(match["rid"]), garment, label)

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = _bot(interaction)

        async def work() -> dict[str, Any]:
            result = await bot.flow.switch(user_ref(interaction.user), self.request_id, self.garment)
            if isinstance(result, str):
                return {"content": clip(result, 2000)}
            return await bot.recommendation_reply(result)

        await bot.deferred(interaction, work, ephemeral=True, what="switch")


class ForgetButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=FORGET_TEMPLATE):
    """The answer to /forget's question. Acts on whoever clicks (the question is ephemeral)."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        yes = answer == "yes"
        super().__init__(
            discord.ui.Button(
                style=discord.ButtonStyle.danger if yes else discord.ButtonStyle.secondary,
                label="Yes, delete everything" if yes else "Cancel",
                custom_id=f"fb:forget:{answer}",
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> ForgetButton:
        return cls(match["answer"])

    async def callback(self, interaction: discord.Interaction) -> None:
        from bot.flows import error_text

        bot = _bot(interaction)
        try:
            await interaction.response.defer()  # "deferred update": we edit the question below
        except discord.HTTPException:
            log.warning("could not acknowledge a /forget answer in time")
            return
        user = user_ref(interaction.user)
        try:
            if self.answer == "yes":
                text = render.forgotten(await bot.service.forget(user))
            else:
                text = FORGET_CANCELLED
        except Exception as err:
            text = error_text(err, what="forget", user=user)
        try:
            await interaction.edit_original_response(content=text, view=None)
        except Exception:
            log.exception("could not answer a /forget button")


def forget_view() -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ForgetButton("yes"))
    view.add_item(ForgetButton("no"))
    return view


def switch_buttons(rec: Recommendation, row: int | None = None) -> list[SwitchButton]:
    """Buttons to the photo's other garments and to the whole photo (one row at most)."""
    if rec.request_id is None or not rec.garments:
        return []
    buttons = [
        SwitchButton(rec.request_id, g.number, render.garment_button_label(g), row=row)
        for g in rec.garments
        if g.number != rec.garment
    ][: SWITCH_BUTTONS - 1]
    if rec.garment is not None:
        buttons.append(SwitchButton(rec.request_id, None, render.WHOLE_PHOTO, row=row))
    return buttons


def results_view(rec: Recommendation) -> discord.ui.View | None:
    """👍/👎 per item, and a row of switch-garment buttons when the photo has garments.

    Without garments: two items per row (10 items: 5 rows of 4 buttons, as before).
    With them the last row switches garment, so the 20 rating buttons take 4 rows of 5."""
    items = rec.items[:MAX_EMBEDS]
    switch = switch_buttons(rec, row=MAX_ROWS - 1)
    if not items and not switch:
        return None
    view = discord.ui.View(timeout=None)
    for n, s in enumerate(items):
        if switch:
            view.add_item(FeedbackButton(1, s.item.id, rank=s.rank, row=(2 * n) // ROW_WIDTH))
            view.add_item(FeedbackButton(-1, s.item.id, rank=s.rank, row=(2 * n + 1) // ROW_WIDTH))
        else:
            view.add_item(FeedbackButton(1, s.item.id, rank=s.rank, row=n // 2))
            view.add_item(FeedbackButton(-1, s.item.id, rank=s.rank, row=n // 2))
    for button in switch:
        view.add_item(button)
    return view


def whole_photo_view(request_id: int) -> discord.ui.View:
    """The refusal's way out: search the whole picture anyway."""
    view = discord.ui.View(timeout=None)
    view.add_item(SwitchButton(request_id, None, render.SEARCH_WHOLE_PHOTO))
    return view
