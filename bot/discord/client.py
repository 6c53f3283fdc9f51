"""The Discord client: slash commands, DMs and mentions in, shared flows, replies out."""
from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import app_commands

from bot import render
from bot.discord.embeds import MAX_CONTENT, MAX_EMBEDS, THUMBNAIL_PX, attachment_refusal, clip, first_image, item_embed
from bot.discord.views import (
    FeedbackButton,
    ForgetButton,
    SwitchButton,
    forget_view,
    results_view,
    user_ref,
    whole_photo_view,
)
from bot.flows import PhotoFlow, PhotoRequest, Refusal, TrendUnavailable, error_text, trend_updates
from bot.pictures import chat_jpeg_async
from engine.api import FashionAPI
from engine.config import Settings
from engine.types import Recommendation

log = logging.getLogger(__name__)

# Discord-only texts (the shared ones live in bot/render.py).
HELP = (
    render.HELP
    + "\n\nOn Discord: use /recommend with a photo, send me a photo in a direct message, "
    "or mention me in a channel with a photo attached."
)
RESULTS_HEADER = "The {n} most similar items I found:"

Reply = dict[str, Any]  # keyword arguments for Messageable.send / Webhook.send


class FashionTree(app_commands.CommandTree[discord.Client]):
    """The slash-command tree; a command's unexpected error becomes one friendly answer."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        log.error("slash command failed: %s", error, exc_info=error)
        try:
            if interaction.response.is_done():
                await interaction.followup.send(render.INTERNAL_ERROR, ephemeral=True)
            else:
                await interaction.response.send_message(render.INTERNAL_ERROR, ephemeral=True)
        except Exception:
            log.exception("could not report a slash command error")


class FashionBot(discord.Client):
    def __init__(self, service: FashionAPI, settings: Settings, **options: Any) -> None:
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
        self.flow = PhotoFlow(service, settings)
        self.tree = FashionTree(self)
        self._register_commands()

    # ---- start-up ---------------------------------------------------------------------
    async def setup_hook(self) -> None:
        self.add_dynamic_items(FeedbackButton, ForgetButton, SwitchButton)
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
        log.info("Discord: connected as %s", self.user)

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
                return {"content": clip(render.about_text(await self.service.about()), MAX_CONTENT)}

            await self.deferred(interaction, work, ephemeral=True, what="/about")

        @tree.command(name="help", description="What I can do")
        async def help_(interaction: discord.Interaction) -> None:
            try:
                await interaction.response.send_message(clip(HELP, MAX_CONTENT), ephemeral=True)
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
        reply = await self._safely(work, what, interaction.user)
        try:
            await interaction.followup.send(**reply, ephemeral=ephemeral)
        except Exception:
            log.exception("%s: could not send the answer", what)

    async def _safely(self, work: Callable[[], Awaitable[Reply]], what: str, user: discord.abc.User) -> Reply:
        try:
            return await work()
        except Exception as err:
            return {"content": clip(error_text(err, what=what, user=user_ref(user)), MAX_CONTENT)}

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
                    reply = await self._safely(
                        lambda: self.photo_reply(message.author, attachment), "photo message", message.author
                    )
            await message.reply(**reply, mention_author=False)
        except Exception:
            log.exception("could not answer a message")
            try:
                await message.channel.send(render.INTERNAL_ERROR)
            except Exception:
                log.exception("could not report an error")

    # ---- the work ---------------------------------------------------------------------
    async def photo_reply(self, user: discord.abc.User, attachment: discord.Attachment) -> Reply:
        """The shared photo flow (rate limit → declared type and size → download → recommend)."""

        async def download() -> bytes | Refusal:
            return await attachment.read()

        request = PhotoRequest(
            user=user_ref(user),
            declared_size=attachment.size,
            download=download,
            refusal=attachment_refusal(attachment),
        )
        result = await self.flow.photo(request)
        if isinstance(result, Refusal):
            return {"content": clip(result.text, MAX_CONTENT)}
        return await self.recommendation_reply(result)

    async def recommendation_reply(self, rec: Recommendation) -> Reply:
        """Up to 10 embeds for the shown garment (or the whole photo), the garments named
        in the content, 👍/👎 and switch-garment buttons; the refusal for no clothing."""
        if rec.no_garment:
            reply: Reply = {"content": render.no_garment_text()}
            if rec.request_id is not None:
                reply["view"] = whole_photo_view(rec.request_id)
            return reply
        items = rec.items[:MAX_EMBEDS]
        intro = render.recommendation_intro(rec)
        if not items:
            reply = {"content": clip(f"{intro}\n{render.NO_RESULTS}" if intro else render.NO_RESULTS, MAX_CONTENT)}
            view = results_view(rec)
            if view is not None:
                reply["view"] = view
            return reply
        thumbs = await asyncio.gather(*(self._thumbnail(s.item.id) for s in items))
        embeds: list[discord.Embed] = []
        files: list[discord.File] = []
        for s, thumb in zip(items, thumbs):
            name = f"item-{s.item.id}.jpg" if thumb is not None else None
            if thumb is not None and name is not None:
                files.append(discord.File(io.BytesIO(thumb), filename=name))
            embeds.append(item_embed(s, name))
        header = RESULTS_HEADER.format(n=len(items))
        reply = {"content": clip(f"{intro}\n{header}" if intro else header, MAX_CONTENT), "embeds": embeds}
        if files:
            reply["files"] = files
        view = results_view(rec)
        if view is not None:
            reply["view"] = view
        return reply

    async def _thumbnail(self, item_id: int) -> bytes | None:
        try:
            data = await self.service.item_image(item_id)
            return await chat_jpeg_async(data, min_side=THUMBNAIL_PX, max_side=THUMBNAIL_PX, quality=85)
        except Exception as err:  # a missing or broken picture costs a thumbnail, not the answer
            log.warning("no thumbnail for item %s: %s", item_id, err)
            return None

    async def style_reply(self, user: discord.abc.User) -> Reply:
        refusal = self.flow.command_refusal(user_ref(user))
        if refusal:
            return {"content": refusal}
        summary = await self.service.style(user_ref(user))
        reply: Reply = {"content": clip(render.style_text(summary), MAX_CONTENT)}
        if summary.collage_jpeg:
            reply["file"] = discord.File(io.BytesIO(summary.collage_jpeg), filename="style.jpg")
            reply["embed"] = discord.Embed().set_image(url="attachment://style.jpg")
        return reply

    async def trend_command(self, interaction: discord.Interaction, tag: str) -> None:
        """A trend's progress in one message, edited in place (throttled by the shared flow)."""
        try:
            await interaction.response.defer(thinking=True)
        except discord.HTTPException:
            log.warning("/trend: could not defer the interaction in time")
            return
        user = user_ref(interaction.user)
        try:
            refusal = self.flow.command_refusal(user)
            if refusal:
                await interaction.followup.send(refusal)
                return
            message: discord.WebhookMessage | None = None
            shown = None
            try:
                async for progress in trend_updates(self.service, tag.strip(), user):
                    text = clip(render.trend_progress_text(progress), MAX_CONTENT)
                    if message is None:
                        message = await interaction.followup.send(text, wait=True)
                    elif text != shown:
                        await message.edit(content=text)
                    shown = text
            except TrendUnavailable:
                known = await self.service.trends()
                text = render.TREND_UNAVAILABLE + ("\n\n" + render.trends_text(known) if known else "")
                await interaction.followup.send(clip(text, MAX_CONTENT))
        except Exception as err:
            try:
                await interaction.followup.send(error_text(err, what="/trend", user=user))
            except Exception:
                log.exception("/trend: could not report an error")


def build_client(service: FashionAPI, settings: Settings) -> FashionBot:
    """The Discord client with its commands and handlers (not connected)."""
    return FashionBot(service, settings)
