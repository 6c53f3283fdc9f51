"""Discord front-end: a thin adapter over `FashionService` (discord.py 2.x).

* Slash commands ``/recommend`` (an image attachment), ``/style``, ``/trend tag``,
  ``/forget`` (with a confirmation button), ``/about`` and ``/help``. Every command is
  deferred at once (Discord wants an answer within 3 seconds) and answered with a
  follow-up.
* An image sent in a DM, or attached to a message that mentions the bot in a server
  channel, is a recommendation request too. The bot asks for no privileged intent:
  Discord delivers the content and attachments of DMs and of mentions without one.
* A recommendation is one message of up to 10 embeds (title linked to the shop when the
  item has a public http(s) page, a thumbnail uploaded as an attachment, price and
  similarity) with 👍/👎 buttons. The buttons are ``DynamicItem``s with persistent custom
  ids (``fb:+:<item id>``), so they keep working after a restart.
* Attachments are checked by content type and declared size before anything is
  downloaded; the size check, the per-user rate limit and all texts are shared with the
  other front-ends (`bot.guards`, `bot.render`).

`run_discord(service, settings)` runs the bot until cancelled; `build_client` builds the
client without connecting it.
"""
from __future__ import annotations

import asyncio
import io
import ipaddress
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import discord
import yarl
from discord import app_commands

from bot import render
from bot.guards import RateLimiter, declared_size_problem
from engine.config import Settings
from engine.errors import BadImage, ServiceError
from engine.types import Recommendation, UserRef

log = logging.getLogger(__name__)

PLATFORM = "discord"
MAX_EMBEDS = 10  # Discord: at most 10 embeds per message
MAX_CONTENT = 2000  # Discord: message content
EMBED_TITLE_MAX = 256
EMBED_DESCRIPTION_MAX = 300  # ours; Discord allows 4096 (and 6000 across a message's embeds)
THUMBNAIL_PX = 280
TREND_EDIT_INTERVAL = 1.5  # seconds between edits of a trend's progress message

IMAGE_CONTENT_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "image/webp", "image/gif", "image/bmp"})
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")

FEEDBACK_TEMPLATE = r"fb:(?P<v>[+-]):(?P<id>\d+)"
FORGET_TEMPLATE = r"fb:forget:(?P<answer>yes|no)"

# Discord-only texts (the shared ones live in bot/render.py).
HELP = (
    render.HELP
    + "\n\nOn Discord: use /recommend with a photo, send me a photo in a direct message, "
    "or mention me in a channel with a photo attached."
)
TREND_UNAVAILABLE = "Searching shops for a trend isn't available yet, sorry."
FORGET_CANCELLED = "OK, I haven't deleted anything."
RESULTS_HEADER = "The {n} most similar items I found:"


class DiscordStartError(RuntimeError):
    """The bot can't start; ``str(err)`` is one line of text for the person running it."""


# ---- small helpers ------------------------------------------------------------------
def user_ref(user: discord.abc.User) -> UserRef:
    return UserRef(PLATFORM, str(user.id))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def public_http_url(url: str | None) -> str | None:
    """``url`` when it is an absolute http(s) URL on a public host (what may become an
    embed link), else None."""
    if not url or len(url) > 2048 or any(c.isspace() for c in url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")) or "." not in host and ":" not in host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return url  # a DNS name
    return url if address.is_global else None


def attachment_problem(attachment: discord.Attachment, max_bytes: int) -> str | None:
    """Why we won't download ``attachment`` (a message for the user), or None.

    Only what Discord declares is used: content type (or the file name when Discord
    sent none) and size."""
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if content_type:
        is_image = content_type in IMAGE_CONTENT_TYPES
    else:
        is_image = attachment.filename.lower().endswith(IMAGE_SUFFIXES)
    if not is_image:
        return render.HINT
    return declared_size_problem(attachment.size, max_bytes)


def first_image(attachments: list[discord.Attachment]) -> discord.Attachment | None:
    """The attachment to look at: the first that declares an image type, else the first."""
    for att in attachments:
        if (att.content_type or "").lower().startswith("image/"):
            return att
    return attachments[0] if attachments else None


def thumbnail_jpeg(data: bytes, size: int = THUMBNAIL_PX) -> bytes:
    """A catalogue picture as a ~``size`` px JPEG (Fashion-MNIST's 28×28 PNGs are upscaled).
    CPU work: call it in a thread."""
    from PIL import Image

    from engine.vision.images import open_image

    img = open_image(data)
    scale = size / max(img.size)
    if abs(scale - 1.0) > 0.05:
        new = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(new, Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=85, optimize=True)
    return out.getvalue()


# ---- persistent buttons ---------------------------------------------------------------
class FeedbackButton(discord.ui.DynamicItem[discord.ui.Button], template=FEEDBACK_TEMPLATE):
    """👍 / 👎 for one item of a recommendation; all state lives in the custom id."""

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
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> "FeedbackButton":
        return cls(1 if match["v"] == "+" else -1, int(match["id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = interaction.client
        assert isinstance(bot, FashionBot)

        async def work() -> dict[str, Any]:
            await bot.service.feedback(user_ref(interaction.user), self.item_id, self.value)
            return {"content": render.FEEDBACK_THANKS[self.value]}

        await bot.deferred(interaction, work, ephemeral=True, what="feedback")


class ForgetButton(discord.ui.DynamicItem[discord.ui.Button], template=FORGET_TEMPLATE):
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
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> "ForgetButton":
        return cls(match["answer"])

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = interaction.client
        assert isinstance(bot, FashionBot)
        try:
            await interaction.response.defer()  # "deferred update": we edit the question below
        except discord.HTTPException:
            log.warning("could not acknowledge a /forget answer in time")
            return
        try:
            if self.answer == "yes":
                counts = await bot.service.forget(user_ref(interaction.user))
                text = render.forgotten(counts)
            else:
                text = FORGET_CANCELLED
        except ServiceError as err:
            text = str(err)
        except Exception:
            log.exception("forget failed")
            text = render.INTERNAL_ERROR
        try:
            await interaction.edit_original_response(content=text, view=None)
        except Exception:
            log.exception("could not answer a /forget button")


def forget_view() -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ForgetButton("yes"))
    view.add_item(ForgetButton("no"))
    return view


def feedback_view(rec: Recommendation) -> discord.ui.View | None:
    """👍/👎 per item: two items per row, so 10 items take 5 rows of 4 buttons."""
    items = rec.items[:MAX_EMBEDS]
    if not items:
        return None
    view = discord.ui.View(timeout=None)
    for n, s in enumerate(items):
        row = n // 2
        view.add_item(FeedbackButton(1, s.item.id, rank=s.rank, row=row))
        view.add_item(FeedbackButton(-1, s.item.id, rank=s.rank, row=row))
    return view


# ---- the client -------------------------------------------------------------------------
Reply = dict[str, Any]  # keyword arguments for Messageable.send / Webhook.send


class FashionBot(discord.Client):
    def __init__(self, service: Any, settings: Settings, **options: Any) -> None:
        # No privileged intents: DMs and messages that mention the bot carry their
        # content and attachments without the message-content intent.
        intents = discord.Intents.default()
        intents.message_content = False
        options.setdefault("enable_debug_events", False)
        options.setdefault("max_messages", None)
        options.setdefault("chunk_guilds_at_startup", False)
        options.setdefault("allowed_mentions", discord.AllowedMentions.none())
        super().__init__(intents=intents, **options)
        self.service = service
        self.settings = settings
        self.limiter = RateLimiter(limit=settings.rate_limit_per_minute, window=60.0)
        self.tree = app_commands.CommandTree(self)
        self.tree.on_error = self._on_tree_error  # type: ignore[method-assign]
        self._register_commands()

    # ---- start-up ---------------------------------------------------------------------
    async def setup_hook(self) -> None:
        self.add_dynamic_items(FeedbackButton, ForgetButton)
        synced = await self.tree.sync()
        log.info("Discord: %d slash commands synced", len(synced))

    async def close(self) -> None:
        # discord.py leaves the task that waits for guilds before `on_ready` running
        # after close(); it then fails on the closed client. Stop it first.
        ready = getattr(self._connection, "_ready_task", None)
        if ready is not None and not ready.done():
            ready.cancel()
        await super().close()

    async def on_ready(self) -> None:
        log.info("Discord: connected as %s (%s)", self.user, getattr(self.user, "id", "?"))

    # ---- slash commands -------------------------------------------------------------
    def _register_commands(self) -> None:
        tree = self.tree

        @tree.command(name="recommend", description="The 10 catalogue items most similar to a photo")
        @app_commands.describe(photo="A photo of an outfit or a piece of clothing")
        async def recommend(interaction: discord.Interaction, photo: discord.Attachment) -> None:
            await self.deferred(
                interaction, lambda: self.photo_reply(interaction.user, photo), ephemeral=False, what="/recommend"
            )

        @tree.command(name="style", description="Your personal style, built from the photos you've sent")
        async def style(interaction: discord.Interaction) -> None:
            await self.deferred(interaction, lambda: self.style_reply(interaction.user), ephemeral=True, what="/style")

        @tree.command(name="trend", description="Search shops for a trend and add new items")
        @app_commands.describe(tag="What to look for, e.g. dress")
        async def trend(interaction: discord.Interaction, tag: app_commands.Range[str, 1, 50]) -> None:
            await self.trend_command(interaction, tag)

        @tree.command(name="forget", description="Delete everything I keep about you")
        async def forget(interaction: discord.Interaction) -> None:
            async def work() -> Reply:
                return {"content": render.FORGET_CONFIRM, "view": forget_view()}

            await self.deferred(interaction, work, ephemeral=True, what="/forget")

        @tree.command(name="about", description="Which model and catalogue I'm using")
        async def about(interaction: discord.Interaction) -> None:
            async def work() -> Reply:
                return {"content": _clip(render.about_text(await self.service.about()), MAX_CONTENT)}

            await self.deferred(interaction, work, ephemeral=True, what="/about")

        @tree.command(name="help", description="What I can do")
        async def help_(interaction: discord.Interaction) -> None:
            try:
                await interaction.response.send_message(_clip(HELP, MAX_CONTENT), ephemeral=True)
            except Exception:
                log.exception("could not answer /help")

    async def deferred(
        self,
        interaction: discord.Interaction,
        work: Callable[[], Awaitable[Reply]],
        *,
        ephemeral: bool,
        what: str,
    ) -> None:
        """Defer at once, do the work, answer with a follow-up. Errors become a message."""
        try:
            await interaction.response.defer(thinking=True, ephemeral=ephemeral)
        except discord.HTTPException:
            log.warning("%s: could not defer the interaction in time", what)
            return
        reply = await self._safely(work, what)
        try:
            await interaction.followup.send(**reply, ephemeral=ephemeral)
        except Exception:
            log.exception("%s: could not send the answer", what)

    async def _safely(self, work: Callable[[], Awaitable[Reply]], what: str) -> Reply:
        try:
            return await work()
        except (BadImage, ServiceError) as err:
            return {"content": _clip(str(err), MAX_CONTENT)}
        except Exception:
            log.exception("%s failed", what)
            return {"content": render.INTERNAL_ERROR}

    async def _on_tree_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        log.error("slash command failed: %s", error, exc_info=error)
        try:
            if interaction.response.is_done():
                await interaction.followup.send(render.INTERNAL_ERROR, ephemeral=True)
            else:
                await interaction.response.send_message(render.INTERNAL_ERROR, ephemeral=True)
        except Exception:
            log.exception("could not report a slash command error")

    # ---- messages: DMs and mentions ------------------------------------------------
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.user is None or message.author.id == self.user.id:
            return
        is_dm = message.guild is None
        if not is_dm and not any(u.id == self.user.id for u in message.mentions):
            return  # server chatter that isn't for us
        try:
            attachment = first_image(message.attachments)
            if attachment is None:
                reply: Reply = {"content": render.HINT}
            else:
                async with message.channel.typing():
                    reply = await self._safely(lambda: self.photo_reply(message.author, attachment), "photo message")
            await message.reply(**reply, mention_author=False)
        except Exception:
            log.exception("could not answer a message")
            try:
                await message.channel.send(render.INTERNAL_ERROR)
            except Exception:
                log.exception("could not report an error")

    # ---- the work ---------------------------------------------------------------------
    async def photo_reply(self, user: discord.abc.User, attachment: discord.Attachment) -> Reply:
        """Check (declared type and size), rate-limit, download, recommend, render."""
        problem = attachment_problem(attachment, self.settings.max_image_bytes)
        if problem:
            return {"content": problem}
        wait = self.limiter.check(f"{PLATFORM}:{user.id}")
        if wait:
            return {"content": self.limiter.message(wait)}
        data = await attachment.read()
        rec = await self.service.recommend(data, user=user_ref(user), k=MAX_EMBEDS)
        return await self.recommendation_reply(rec)

    async def recommendation_reply(self, rec: Recommendation) -> Reply:
        items = rec.items[:MAX_EMBEDS]
        if not items:
            return {"content": render.recommendation_text(rec)}
        thumbs = await asyncio.gather(*(self._thumbnail(s.item.id) for s in items))
        embeds: list[discord.Embed] = []
        files: list[discord.File] = []
        for s, thumb in zip(items, thumbs):
            lines = [f"{s.item.price_text} · {s.score * 100:.0f}% similar"]
            where = " · ".join(x for x in (s.item.brand, s.item.shop) if x)
            if where:
                lines.append(where)
            embed = discord.Embed(
                title=_clip(f"{s.rank}. {s.item.title}", EMBED_TITLE_MAX),
                url=public_http_url(s.item.url),
                description=_clip("\n".join(lines), EMBED_DESCRIPTION_MAX),
            )
            if thumb is not None:
                name = f"item-{s.item.id}.jpg"
                files.append(discord.File(io.BytesIO(thumb), filename=name))
                embed.set_thumbnail(url=f"attachment://{name}")
            embeds.append(embed)
        reply: Reply = {"content": RESULTS_HEADER.format(n=len(items)), "embeds": embeds}
        if files:
            reply["files"] = files
        view = feedback_view(rec)
        if view is not None:
            reply["view"] = view
        return reply

    async def _thumbnail(self, item_id: int) -> bytes | None:
        try:
            data = await self.service.item_image(item_id)
            return await asyncio.to_thread(thumbnail_jpeg, data)
        except Exception as err:  # a missing or broken picture costs a thumbnail, not the answer
            log.warning("no thumbnail for item %s: %s", item_id, err)
            return None

    async def style_reply(self, user: discord.abc.User) -> Reply:
        summary = await self.service.style(user_ref(user))
        reply: Reply = {"content": _clip(render.style_text(summary), MAX_CONTENT)}
        if summary.collage_jpeg:
            reply["file"] = discord.File(io.BytesIO(summary.collage_jpeg), filename="style.jpg")
            reply["embed"] = discord.Embed().set_image(url="attachment://style.jpg")
        return reply

    async def trend_command(self, interaction: discord.Interaction, tag: str) -> None:
        trend = getattr(self.service, "trend", None)
        if trend is None:

            async def unavailable() -> Reply:
                known = await self.service.trends()
                text = TREND_UNAVAILABLE + ("\n\n" + render.trends_text(known) if known else "")
                return {"content": _clip(text, MAX_CONTENT)}

            await self.deferred(interaction, unavailable, ephemeral=False, what="/trend")
            return
        try:
            await interaction.response.defer(thinking=True)
        except discord.HTTPException:
            log.warning("/trend: could not defer the interaction in time")
            return
        try:
            await self._run_trend(interaction, trend, tag.strip())
        except Exception:
            log.exception("/trend failed")
            try:
                await interaction.followup.send(render.INTERNAL_ERROR)
            except Exception:
                log.exception("/trend: could not report an error")

    async def _run_trend(self, interaction: discord.Interaction, trend: Callable[..., Any], tag: str) -> None:
        """Show a trend's progress in one message, edited in place (at most every
        TREND_EDIT_INTERVAL seconds, and always the final state)."""
        try:
            result = trend(tag, user_ref(interaction.user))
            if not hasattr(result, "__aiter__"):
                final = await result
                await interaction.followup.send(_clip(render.trend_progress_text(final), MAX_CONTENT))
                return
            message: discord.WebhookMessage | None = None
            shown = pending = None
            last_edit = 0.0
            async for progress in result:
                pending = _clip(render.trend_progress_text(progress), MAX_CONTENT)
                now = time.monotonic()
                if message is None:
                    message = await interaction.followup.send(pending, wait=True)
                    shown, last_edit = pending, now
                elif pending != shown and (now - last_edit >= TREND_EDIT_INTERVAL or getattr(progress, "done", False)):
                    await message.edit(content=pending)
                    shown, last_edit = pending, now
            if message is None:
                await interaction.followup.send(f"Trend “{tag}”: nothing to report.")
            elif pending != shown:
                await message.edit(content=pending)
        except (ServiceError, BadImage) as err:
            await interaction.followup.send(_clip(str(err), MAX_CONTENT))


def build_client(service: Any, settings: Settings) -> discord.Client:
    """The Discord client with its commands and handlers (not connected)."""
    return FashionBot(service, settings)


# ---- running ------------------------------------------------------------------------------
def _rest_base(api_url: str) -> str:
    base = api_url.strip().rstrip("/")
    if not re.search(r"/v\d+$", base):
        base += "/api/v10"
    return base


async def use_discord_api(api_url: str) -> None:
    """Point discord.py at another Discord (REST base and gateway): its plain client
    never asks REST for the gateway URL, so we read ``GET {base}/gateway`` ourselves."""
    base = _rest_base(api_url)
    try:
        headers = {"User-Agent": f"DiscordBot (https://github.com/Rapptz/discord.py, {discord.__version__}) fashionbot"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15), headers=headers) as session:
            async with session.get(f"{base}/gateway") as resp:
                if resp.status != 200:
                    raise DiscordStartError(f"The Discord API at {base} answered HTTP {resp.status} for /gateway.")
                data = await resp.json(content_type=None)
        gateway = yarl.URL(str(data["url"]))
    except DiscordStartError:
        raise
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
        raise DiscordStartError(f"Can't reach the Discord API at {base}: {err or type(err).__name__}.") from None
    except (KeyError, TypeError, ValueError):
        raise DiscordStartError(f"The Discord API at {base} sent no usable gateway URL.") from None
    if gateway.scheme not in ("ws", "wss") or not gateway.host:
        raise DiscordStartError(f"The Discord API at {base} sent no usable gateway URL.")
    discord.http.Route.BASE = base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway
    log.info("Discord: REST %s, gateway %s", base, gateway)


async def run_discord(service: Any, settings: Settings) -> None:
    """Run the Discord bot until cancelled. Raises DiscordStartError (one line of text)
    when it can't start: no token, a rejected token, an unreachable API."""
    secret = settings.discord_bot_token
    token = secret.get_secret_value().strip() if secret is not None else ""
    if not token:
        raise DiscordStartError("No Discord bot token: set DISCORD_BOT_TOKEN.")
    if settings.discord_api_url:
        await use_discord_api(settings.discord_api_url)
    client = build_client(service, settings)
    async with client:
        try:
            await client.login(token)
        except discord.LoginFailure:
            raise DiscordStartError("Discord rejected the bot token (DISCORD_BOT_TOKEN): check it.") from None
        except (aiohttp.ClientError, OSError) as err:
            raise DiscordStartError(f"Can't reach Discord: {err or type(err).__name__}.") from None
        except discord.HTTPException as err:
            raise DiscordStartError(f"Discord refused to start the bot: HTTP {err.status} {err.text}.") from None
        try:
            await client.connect(reconnect=True)
        except discord.PrivilegedIntentsRequired:
            raise DiscordStartError("Discord refused a privileged intent this bot asked for.") from None
        except discord.ConnectionClosed as err:
            if err.code == 4004:
                raise DiscordStartError("Discord rejected the bot token (DISCORD_BOT_TOKEN): check it.") from None
            raise DiscordStartError(f"Discord closed the connection (code {err.code}).") from None
