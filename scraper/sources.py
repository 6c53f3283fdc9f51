"""Which shops the scraper visits: a small config record per shop, loaded from TOML or JSON.

A shop is a search-URL template and, when its markup needs help, CSS selectors
(``next`` names the link to the next results page when ``rel="next"`` is missing).
``allow_hosts`` lists ``host:port`` entries exempt from the SSRF guard for this
shop's fetches only (a shop on the operator's own network, the offline demo shop).
Platforms whose content sits behind a login or whose terms forbid automated
collection are refused outright, whatever the config says (see docs/scraping.md).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import soupsieve
from yarl import URL

from scraper.extract import SELECTOR_KEYS
from scraper.ssrf import parse_allow_entry

# Login-walled social platforms whose terms forbid scraping. Matched on any label of the
# host name (so pinterest.co.uk and m.facebook.com are refused too) or on the exact domain.
FORBIDDEN_PLATFORM_LABELS = frozenset(
    {"instagram", "facebook", "tiktok", "pinterest", "snapchat", "linkedin", "twitter", "weibo", "xiaohongshu"}
)
FORBIDDEN_PLATFORM_DOMAINS = frozenset({"fb.com", "x.com", "pin.it", "threads.net", "messenger.com", "douyin.com"})
_SHOP_KEYS = frozenset({"name", "search_url", "selectors", "enabled", "allow_hosts"})


class ShopConfigError(ValueError):
    """A shop entry that cannot be used; the message names the file and entry."""


class ForbiddenSource(ShopConfigError):
    """A platform we refuse to scrape (login wall / terms of service)."""


@dataclass(frozen=True)
class Shop:
    """One shop: ``search_url`` contains ``{query}``, replaced by the URL-encoded tag."""

    name: str
    search_url: str
    selectors: Mapping[str, str] = field(default_factory=dict, hash=False)
    enabled: bool = True
    allow_hosts: tuple[str, ...] = ()  # "host:port" exempt from the SSRF guard for this shop only

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ShopConfigError("a shop needs a name")
        if not isinstance(self.search_url, str) or "{query}" not in self.search_url:
            raise ShopConfigError(f"shop {self.name!r}: search_url must contain {{query}}")
        try:
            url = URL(self.search_url.replace("{query}", "q"))
        except ValueError:
            raise ShopConfigError(f"shop {self.name!r}: search_url is not a URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ShopConfigError(f"shop {self.name!r}: search_url must be an http(s) URL with a host")
        check_platform(url.host, shop=self.name)
        selectors = dict(self.selectors or {})
        for key, selector in selectors.items():
            if key not in SELECTOR_KEYS:
                raise ShopConfigError(
                    f"shop {self.name!r}: unknown selector {key!r} (known: {', '.join(sorted(SELECTOR_KEYS))})"
                )
            if not isinstance(selector, str):
                raise ShopConfigError(f"shop {self.name!r}: selector {key!r} must be a string")
            try:
                soupsieve.compile(selector)
            except Exception as err:
                raise ShopConfigError(f"shop {self.name!r}: bad CSS selector {key!r}: {err}") from None
        object.__setattr__(self, "selectors", MappingProxyType(selectors))
        if isinstance(self.allow_hosts, str) or not all(isinstance(e, str) for e in self.allow_hosts):
            raise ShopConfigError(f'shop {self.name!r}: allow_hosts must be a list of "host:port" strings')
        try:
            entries = tuple(parse_allow_entry(e) for e in self.allow_hosts)
        except ValueError as err:
            raise ShopConfigError(f"shop {self.name!r}: {err}") from None
        object.__setattr__(self, "allow_hosts", tuple(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in entries))

    def search_url_for(self, query: str) -> str:
        """The search page for ``query``; the query is percent-encoded (safe in path and query)."""
        return self.search_url.replace("{query}", quote(query.strip(), safe=""))

    @property
    def host(self) -> str:
        return URL(self.search_url.replace("{query}", "q")).host or ""


def check_platform(host: str, *, shop: str = "") -> None:
    """Raise :class:`ForbiddenSource` for login-walled / scraping-forbidding platforms."""
    host = host.lower().rstrip(".")
    labels = host.split(".")
    domain = ".".join(labels[-2:])
    platform = next((label for label in labels if label in FORBIDDEN_PLATFORM_LABELS), None)
    if platform is None and (domain in FORBIDDEN_PLATFORM_DOMAINS or host in FORBIDDEN_PLATFORM_DOMAINS):
        platform = domain
    if platform is not None:
        who = f"shop {shop!r}: " if shop else ""
        raise ForbiddenSource(
            f"{who}{host} is not supported: {platform} requires a login and its terms forbid "
            "automated collection. Use shops that publish product pages openly (see docs/scraping.md)."
        )


def load_shops(path: str | Path) -> list[Shop]:
    """Shops from a ``.toml`` (``[[shops]]`` tables) or ``.json`` file (``{"shops": [...]}`` or a list).

    Raises :class:`ShopConfigError` (or :class:`ForbiddenSource`) naming the entry; unknown
    keys are errors so a typo does not silently disable selectors.
    """
    path = Path(path)
    try:
        raw_text = path.read_bytes()
    except OSError as err:
        raise ShopConfigError(f"{path}: cannot read ({err.strerror})") from None
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(raw_text.decode("utf-8"))
        elif path.suffix.lower() == ".json":
            data = json.loads(raw_text)
        else:
            raise ShopConfigError(f"{path}: use a .toml or .json file")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ShopConfigError(f"{path}: {err}") from None
    return shops_from_data(data, origin=str(path))


def shops_from_data(data: Any, *, origin: str = "shops") -> list[Shop]:
    entries = data.get("shops") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ShopConfigError(f"{origin}: expected a list of shops (TOML: [[shops]] tables)")
    shops: list[Shop] = []
    names: set[str] = set()
    for index, entry in enumerate(entries, start=1):
        where = f"{origin}: shop #{index}"
        if not isinstance(entry, dict):
            raise ShopConfigError(f"{where}: expected a table/object")
        unknown = set(entry) - _SHOP_KEYS
        if unknown:
            raise ShopConfigError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(_SHOP_KEYS)})")
        selectors = entry.get("selectors") or {}
        if not isinstance(selectors, dict):
            raise ShopConfigError(f"{where}: selectors must be a table/object")
        allow_hosts = entry.get("allow_hosts") or []
        if not isinstance(allow_hosts, list):
            raise ShopConfigError(f'{where}: allow_hosts must be a list of "host:port" strings')
        try:
            shop = Shop(
                name=str(entry.get("name", "")).strip(),
                search_url=entry.get("search_url", ""),
                selectors=selectors,
                enabled=bool(entry.get("enabled", True)),
                allow_hosts=tuple(allow_hosts),
            )
        except ForbiddenSource as err:
            raise ForbiddenSource(f"{where}: {err}") from None
        except ShopConfigError as err:
            raise ShopConfigError(f"{where}: {err}") from None
        if shop.name.lower() in names:
            raise ShopConfigError(f"{where}: duplicate shop name {shop.name!r}")
        names.add(shop.name.lower())
        shops.append(shop)
    return shops
