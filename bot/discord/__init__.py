"""The Discord front-end: a thin adapter over the service API (discord.py 2.x).

* Slash commands ``/recommend`` (an image attachment), ``/style``, ``/trend tag``,
  ``/forget`` (with a confirmation button), ``/about`` and ``/help``, each deferred at
  once and answered with a follow-up; an image in a DM, or attached to a message that
  mentions the bot, is a recommendation request too (no privileged intent needed).
* A photo goes through the shared flow (:mod:`bot.flows`); the answer names the
  garments found and shows up to 10 embeds for the shown one, with 👍/👎 buttons and a
  row of buttons to switch garment or search the whole photo (persistent custom ids).

Rooms: ``client`` (commands, messages, replies), ``views`` (buttons), ``embeds`` (how an
item looks, attachment checks), ``run`` (REST base, gateway, token, start-up errors).
"""

from __future__ import annotations

from bot.discord.client import HELP, FashionBot, FashionTree, build_client
from bot.discord.run import DiscordStartError, run_discord, use_discord_api
from bot.discord.views import FEEDBACK_TEMPLATE, FORGET_TEMPLATE, SWITCH_TEMPLATE

__all__ = [
    "DiscordStartError",
    "FEEDBACK_TEMPLATE",
    "FORGET_TEMPLATE",
    "FashionBot",
    "FashionTree",
    "HELP",
    "SWITCH_TEMPLATE",
    "build_client",
    "run_discord",
    "use_discord_api",
]
