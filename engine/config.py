"""Settings, all from the environment (prefix ``FASHIONBOT_``), never from code.

Part of the base layer (imports nothing of ours). Split by concern so each room
declares what it reads: :class:`EngineSettings` (model, index, images, styles),
:class:`ScraperSettings` (shops and politeness), :class:`FrontendSettings` (bots,
web chat, limits). :class:`Settings` is all three read from one environment, which
is what the composition root (``bot.app``, the CLI) builds and hands down.

Bot tokens are read from their conventional names (``TELEGRAM_BOT_TOKEN``,
``DISCORD_BOT_TOKEN``) and kept as ``SecretStr`` so they never show up in a log
or a repr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

BackboneName = Literal["auto", "resnet50", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]


class _FromEnvironment(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FASHIONBOT_", extra="ignore")


class EngineSettings(_FromEnvironment):
    """What the engine reads: where data lives, the model, the index, image caps, styles."""

    data_dir: Path = Field(default=Path("data"), description="Holds the SQLite file and the index.")
    database_url: str | None = Field(
        default=None, description="Any SQLAlchemy async URL; SQLite in data_dir by default."
    )
    backbone: BackboneName = "auto"
    weights: Path | None = Field(default=None, description="A ResNet-50 weights file (state dict).")
    allow_weight_download: bool = Field(
        default=True, description="Let torchvision fetch ResNet-50 weights when online (auto falls back when it can't)."
    )
    head: Path | None = Field(
        default=None,
        description="A head file from `fashionbot train-head`; run `fashionbot reindex` after changing it.",
    )
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = Field(
        default=False,
        description="torch.compile the model at start-up: about 35 s more start-up for faster embedding "
        "(docs/benchmarks.md); worth it for a long-running bot.",
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=512,
        description="Images per model batch; unset: measured at start-up (the fastest of 1, 2, 4 … 32 on this machine).",
    )
    micro_batch_wait_ms: float = Field(default=4.0, ge=0, description="How long a lone request waits for company.")
    torch_threads: int | None = None
    runtime: Literal["auto", "torch", "openvino"] = Field(
        default="auto",
        description="What runs the model: auto times OpenVINO against torch at start-up and keeps the faster "
        "that agrees with fp32; torch is the fallback (engine/vision/runtimes.py).",
    )

    index_m: int = 32
    index_ef_construction: int = 200
    index_ef: int = 96

    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    top_k: int = 10
    garments: bool = Field(
        default=True,
        description="Find the garments in a photo and search per garment; false: search the whole photo as it is.",
    )
    garment_close_look: bool = Field(
        default=True,
        description="Look at each found garment again, closer, for a tighter box and a surer category "
        "(outfits with both garments found 37 -> 52 %; costs about a third more per photo); false: one look.",
    )
    style_weight: float = Field(
        default=0.15, ge=0.0, le=1.0, description="How far results lean towards a user's style; 0 = off."
    )
    style_min_photos: int = 3
    style_distance_threshold: float = Field(
        default=0.475,
        ge=0.0,
        le=2.0,
        description="Cosine distance at which photos stop being one style (tuned for Lite0).",
    )

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'fashionbot.sqlite3').resolve()}"

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index.hnsw"


class FrontendSettings(_FromEnvironment):
    """What the front-ends read: limits, platform endpoints, tokens, the web chat's address."""

    rate_limit_per_minute: int = 10

    telegram_base_url: str | None = None
    telegram_base_file_url: str | None = None
    discord_api_url: str | None = None
    discord_sync: bool = Field(
        default=False,
        description="Sync Discord's slash commands at start-up even when they look unchanged "
        "(they are synced anyway when the command tree changed).",
    )
    telegram_bot_username: str | None = Field(
        default=None,
        pattern=r"^@?[A-Za-z][A-Za-z0-9_]{3,31}$",
        description="The Telegram bot's @name: item pages and the web chat then link to "
        "t.me/<name>?start=item_<id>, which opens the item in the bot (the web chat can't ask Telegram for it).",
    )
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    web_trusted_proxy: bool = Field(
        default=False,
        description="The web chat runs behind a reverse proxy you control: take the client address from the last "
        "X-Forwarded-For entry (otherwise that header is ignored: any client can write it).",
    )

    telegram_bot_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TELEGRAM_BOT_TOKEN", "FASHIONBOT_TELEGRAM_BOT_TOKEN")
    )
    discord_bot_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DISCORD_BOT_TOKEN", "FASHIONBOT_DISCORD_BOT_TOKEN")
    )


class ScraperSettings(_FromEnvironment):
    """What `/trend` reads: the shops, the crawler's politeness and budgets."""

    shops_file: Path | None = None
    scraper_contact_url: str = "https://github.com/fashionbot/fashionbot"
    scraper_allow_hosts: list[str] = Field(default_factory=list)
    scraper_max_pages: int = Field(
        default=60, ge=1, description="HTML pages (search + product pages) one trend may fetch."
    )
    scraper_max_products: int = Field(default=30, ge=1, description="A trend stops after this many products.")
    scraper_min_delay: float = Field(default=1.0, ge=0, description="Seconds between request starts to one shop host.")
    scraper_timeout: float = Field(default=20.0, gt=0, description="Seconds per request attempt, connect to last byte.")
    trend_max_running: int = Field(
        default=2, ge=1, description="Trends running at once (besides one per tag and per user)."
    )


class Settings(FrontendSettings, ScraperSettings, EngineSettings):
    """Every setting, from one environment: what the composition root builds."""
