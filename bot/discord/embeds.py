"""How a Discord answer looks: embeds for the shown garment's items, attachment checks."""

from __future__ import annotations

import discord

from bot import render
from bot.urls import public_url
from engine.types import ScoredItem

MAX_EMBEDS = 10  # Discord: at most 10 embeds per message
MAX_CONTENT = 2000  # Discord: message content
EMBED_TITLE_MAX = 256
EMBED_DESCRIPTION_MAX = 300  # ours; Discord allows 4096 (and 6000 across a message's embeds)
THUMBNAIL_PX = 280

IMAGE_CONTENT_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "image/webp", "image/gif", "image/bmp"})
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def attachment_refusal(attachment: discord.Attachment) -> str | None:
    """Why we won't download ``attachment`` because of its type (a message), or None.
    Only what Discord declares is used: the content type, or the file name when
    Discord sent none. (The declared size is checked by the shared photo flow.)"""
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if content_type:
        is_image = content_type in IMAGE_CONTENT_TYPES
    else:
        is_image = attachment.filename.lower().endswith(IMAGE_SUFFIXES)
    return None if is_image else render.HINT


def first_image(attachments: list[discord.Attachment]) -> discord.Attachment | None:
    """The attachment to look at: the first that declares an image type, else the first."""
    for att in attachments:
        if (att.content_type or "").lower().startswith("image/"):
            return att
    return attachments[0] if attachments else None


def item_embed(s: ScoredItem, thumbnail_name: str | None) -> discord.Embed:
    lines = [f"{s.item.price_text} · {s.score * 100:.0f}% similar"]
    where = " · ".join(x for x in (s.item.brand, s.item.shop) if x)
    if where:
        lines.append(where)
    embed = discord.Embed(
        title=clip(f"{s.rank}. {s.item.title}", EMBED_TITLE_MAX),
        url=public_url(s.item.url),
        description=clip("\n".join(lines), EMBED_DESCRIPTION_MAX),
    )
    if thumbnail_name is not None:
        embed.set_thumbnail(url=f"attachment://{thumbnail_name}")
    return embed
