"""Connecting the Discord client: the REST base and gateway (Discord's, or another
one for tests), the token, and start-up errors as one line."""

from __future__ import annotations

import logging
import re

import aiohttp
import discord
import yarl

from bot.discord.client import build_client
from engine.api import FashionAPI
from engine.config import Settings

log = logging.getLogger(__name__)


class DiscordStartError(RuntimeError):
    """The bot can't start; ``str(err)`` is one line of text for the person running it."""


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
    except (TimeoutError, aiohttp.ClientError, OSError) as err:
        raise DiscordStartError(f"Can't reach the Discord API at {base}: {err or type(err).__name__}.") from None
    except (KeyError, TypeError, ValueError):
        raise DiscordStartError(f"The Discord API at {base} sent no usable gateway URL.") from None
    if gateway.scheme not in ("ws", "wss") or not gateway.host:
        raise DiscordStartError(f"The Discord API at {base} sent no usable gateway URL.")
    discord.http.Route.BASE = base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway
    log.info("Discord: REST %s, gateway %s", base, gateway)


async def run_discord(service: FashionAPI, settings: Settings) -> None:
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
