"""The scraper: polite, defensive shop crawling for ``/trend <tag>``.

- :mod:`scraper.fetch`   one aiohttp session with timeouts, size caps, per-host
  politeness, Retry-After/backoff, manual redirects, robots.txt and the SSRF guard
- :mod:`scraper.ssrf`    which addresses may be contacted (and the vetted resolver)
- :mod:`scraper.robots`  RFC 9309 robots.txt parser and per-origin cache
- :mod:`scraper.extract` product data from JSON-LD, microdata, OpenGraph, selectors, heuristics
- :mod:`scraper.sources` shop configs (TOML/JSON) and the platforms we refuse
- :mod:`scraper.crawl`   ``crawl_trend`` yielding progress events and validated products

No engine service or database imports: the caller embeds, deduplicates and indexes.
See docs/scraping.md.
"""

from scraper.crawl import (
    CrawlEvent,
    CrawlFinished,
    ProductFound,
    ProductSkipped,
    ScrapedProduct,
    ShopFailed,
    ShopSearched,
    crawl_trend,
)
from scraper.extract import ProductInfo, SearchResult, extract_product, extract_search
from scraper.fetch import (
    BadContentType,
    BlockedAddress,
    BudgetExhausted,
    ConnectionFailed,
    CrawlBudget,
    FetchConfig,
    Fetched,
    Fetcher,
    FetchError,
    FetchTimeout,
    HttpStatusError,
    RateLimited,
    RobotsDisallowed,
    TooLarge,
    TooManyRedirects,
    UnresolvableHost,
    __version__,
)
from scraper.sources import ForbiddenSource, Shop, ShopConfigError, load_shops

__all__ = [
    "BadContentType",
    "BlockedAddress",
    "BudgetExhausted",
    "ConnectionFailed",
    "CrawlBudget",
    "CrawlEvent",
    "CrawlFinished",
    "FetchConfig",
    "FetchError",
    "FetchTimeout",
    "Fetched",
    "Fetcher",
    "ForbiddenSource",
    "HttpStatusError",
    "ProductFound",
    "ProductInfo",
    "ProductSkipped",
    "RateLimited",
    "RobotsDisallowed",
    "ScrapedProduct",
    "SearchResult",
    "Shop",
    "ShopConfigError",
    "ShopFailed",
    "ShopSearched",
    "TooLarge",
    "TooManyRedirects",
    "UnresolvableHost",
    "__version__",
    "crawl_trend",
    "extract_product",
    "extract_search",
    "load_shops",
]
