"""The Discord client: slash commands, DMs and mentions in, shared flows, replies out."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
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
    render.HELP + "\n\nOn Discord: use /recommend with a photo, send me a photo in a direct message, "
    "or mention me in a channel with a photo attached."
)
RESULTS_HEADER = "The {n} most similar items I found:"
NO_PICTURE = "That message has no picture I can look at. Use “Find similar” on a message with a photo."
FIND_SIMILAR = "Find similar"
COMMANDS_HASH_FILE = "discord-commands.sha256"
MAX_CHOICES = 25  # Discord: autocomplete suggestions per answer
GUILD_READY_TIMEOUT = 1.0  # s to wait for GUILD_CREATEs after READY (discord.py's default: 2)

Reply = dict[str, Any]  # keyword arguments for Messageable.send / Webhook.send


class FashionTree(app_commands.CommandTree[discord.Client]):
    """The slash-command tree (installable in servers and by users, usable in servers,
    DMs and group DMs); a command's unexpected error becomes one friendly answer."""

    def __init__(self, client: discord.Client) -> None:
        super().__init__(
            client,
            allowed_installs=app_commands.AppInstallationType(guild=True, user=True),
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=True),
        )

    def commands_hash(self, application_id: int | None) -> str:
        """A hash of what a sync would send (every command's JSON, and the application
        it belongs to): equal hashes, nothing to sync."""
        payload = sorted(
            (c.to_dict(self) for c in self.get_commands()), key=lambda d: (int(d.get("type", 1)), str(d["name"]))
        )
        text = json.dumps({"application_id": application_id, "commands": payload}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

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
        options.setdefault("guild_ready_timeout", GUILD_READY_TIMEOUT)
        super().__init__(intents=intents, **options)
        self.service = service
        self.settings = settings
        self.flow = PhotoFlow(service, settings)
        self.tree = FashionTree(self)
        self.synced: bool | None = None  # whether this start synced the commands
        self._announced = False
        self._register_commands()

    # ---- start-up ---------------------------------------------------------------------
    @property
    def commands_hash_path(self) -> Path:
        return Path(self.settings.data_dir) / COMMANDS_HASH_FILE

    async def setup_hook(self) -> None:
        self.add_dynamic_items(FeedbackButton, ForgetButton, SwitchButton)
        # FASHIONBOT_DISCORD_SYNC=true (the CLI's --sync) forces a sync
        await self.sync_commands(force=self.settings.discord_sync)

    async def sync_commands(self, *, force: bool = False) -> bool:
        """Sync the command tree with Discord only when it changed since the last sync
        (its hash is kept in the data dir) or when ``force``d: syncing on every start is
        what gets bots rate-limited. Returns whether it synced."""
        digest = self.tree.commands_hash(self.application_id)
        path = self.commands_hash_path
        try:
            known = path.read_text().strip()
        except OSError:
            known = ""
        if not force and known == digest:
            log.info("Discord: slash commands unchanged, not synced (FASHIONBOT_DISCORD_SYNC=true forces it)")
            self.synced = False
            return False
        synced = await self.tree.sync()
        log.info("Discord: %d commands synced", len(synced))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(digest + "\n")
            tmp.replace(path)
        except OSError as err:  # the next start syncs again: harmless
            log.warning("Discord: couldn't record the synced commands in %s: %s", path, err)
        self.synced = True
        return True

    async def close(self) -> None:
        # After READY, discord.py waits up to guild_ready_timeout for the guilds before it
        # dispatches `ready`; closing inside that window leaves the waiting task to run
        # against the closed client. Let it finish first (bounded, public API only).
        if self.user is not None and not self.is_ready() and not self.is_closed():
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: a cancel is never lost (3.11's wait_for can)
                async with asyncio.timeout(GUILD_READY_TIMEOUT + 2):
                    await self.wait_until_ready()
        await super().close()

    async def on_ready(self) -> None:
        if not self._announced:  # on_ready comes again after a reconnect
            self._announced = True
            print(f"Discord: connected as {self.user}", file=sys.stderr, flush=True)
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

        @trend.autocomplete("tag")
        async def trend_tags(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            return await self.trend_choices(current)

        async def find_similar(interaction: discord.Interaction, message: discord.Message) -> None:
            await self.deferred(
                interaction,
                lambda: self.message_photo_reply(interaction.user, message),
                ephemeral=True,
                what="Find similar",
            )

        tree.add_command(app_commands.ContextMenu(name=FIND_SIMILAR, callback=find_similar))

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
    async def trend_choices(self, current: str) -> list[app_commands.Choice[str]]:
        """Known trends for /trend's autocomplete: those containing what was typed, the
        ones starting with it first; never an error (an empty list instead)."""
        try:
            known = await self.service.trends()
        except Exception:
            log.warning("/trend autocomplete: no trends", exc_info=True)
            return []
        typed = current.strip().lower()
        tags = [t.tag for t in known if t.tag and len(t.tag) <= 100 and typed in t.tag.lower()]
        tags.sort(key=lambda tag: not tag.lower().startswith(typed))
        unique = list(dict.fromkeys(tags))[:MAX_CHOICES]
        return [app_commands.Choice(name=tag, value=tag[:50]) for tag in unique]

    async def message_photo_reply(self, user: discord.abc.User, message: discord.Message) -> Reply:
        """ "Find similar" on a message: its first picture (an attachment that declares an
        image), through the same photo flow as /recommend."""
        attachment = next(
            (a for a in message.attachments if (a.content_type or "").lower().startswith("image/")), None
        ) or first_image([a for a in message.attachments if attachment_refusal(a) is None])
        if attachment is None:
            return {"content": NO_PICTURE}
        return await self.photo_reply(user, attachment)

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
