"""What the web chat's parts share: the app and request keys, its state and names."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from aiohttp import web

from bot.flows import PhotoFlow
from bot.lru import Lru
from engine.api import FashionAPI
from engine.config import Settings
from engine.types import UserRef

STATIC_DIR = Path(__file__).with_name("static")
PLATFORM = "web"
COLLAGE_CACHE = 256  # visitors whose latest collage is kept in memory
UPLOAD_CONCURRENCY = 16  # photo uploads read and recommended at once; more get a 503


@dataclasses.dataclass
class WebState:
    service: FashionAPI
    settings: Settings
    flow: PhotoFlow
    allowed_hosts: frozenset[str]
    static: dict[str, bytes]
    index_html: bytes
    uploads: asyncio.Semaphore
    collages: Lru[str, bytes] = dataclasses.field(default_factory=lambda: Lru(COLLAGE_CACHE))
    trends_running: set[str] = dataclasses.field(default_factory=set)


STATE_KEY: web.AppKey[WebState] = web.AppKey("web_state", WebState)
# Per-request values: the visitor's id, whether they came with it, a new id to hand out.
UID = web.RequestKey("uid", str)
SET_UID = web.RequestKey("set_uid", str)
ADDRESS = web.RequestKey("address", str)


def state_of(request: web.Request) -> WebState:
    return request.app[STATE_KEY]


def user_of(request: web.Request) -> UserRef:
    return UserRef(PLATFORM, request[UID])


def is_new_visitor(request: web.Request) -> bool:
    """True when the visitor came without a (valid) cookie: nothing is kept about them."""
    return SET_UID in request
