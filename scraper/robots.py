"""robots.txt (RFC 9309): a parser, the matching rules, and a per-origin cache.

Why our own parser: ``urllib.robotparser`` uses first-match, not the RFC's
longest match, ignores ``*``/``$`` wildcards and mishandles Allow/Disallow
ties, so it would both over- and under-crawl real shops.

Semantics implemented (section numbers of RFC 9309):
- 2.2.1 groups are selected by the crawler's product token, case-insensitively;
  all groups naming it are merged; otherwise the ``*`` groups; otherwise allow all.
- 2.2.2 the most specific (longest, in octets) matching rule wins; on a tie
  Allow wins. Percent-encoding is normalised on both sides before comparing.
- 2.2.3 ``*`` matches any sequence, a trailing ``$`` anchors at the end.
  Matching is linear in the path (no regex, no backtracking): runs of ``*`` collapse,
  the literal pieces between them are found left to right (greedy leftmost is exact
  for ``*``-only globs), ``$`` pins the last piece to the end. Rules are compiled once
  per file: plain prefixes go into a set probed with each prefix of the path (longest
  first), wildcard rules are tried longest first and the search stops at the first hit.
- 2.3.1 fetch outcomes: 2xx parse; 4xx "unavailable" = allow all; 5xx or
  unreachable = disallow all. We treat 429 like 5xx (it means "slow down", not
  "there is no robots.txt"), as major crawlers do.
- 2.4 cache for at most a day (our TTL is shorter and configurable).
- 2.5 at least 500 KiB are parsed; the fetcher truncates beyond its robots cap and
  drops the partial last line.

Lenient like the widely used parsers (Google's robotstxt): a line without a colon
(``Disallow /x``) is read as key and value when it has exactly two words. Parsing and
matching are CPU work on untrusted input: :class:`RobotsCache` and the fetcher run
them in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_TOKEN_RE = re.compile(r"[A-Za-z_-]+")
_PCT_RE = re.compile(r"%([0-9A-Fa-f]{2})")


def normalise_path(path: str) -> str:
    """Canonical form for comparisons: unreserved %XX decoded, other escapes upper-cased,
    non-ASCII and controls percent-encoded as UTF-8. ``/%7Efoo`` == ``/~foo``,
    ``/%e3%83%84`` == ``/ツ``; ``%2F`` stays encoded (it is not ``/``)."""

    def _decode(m: re.Match[str]) -> str:
        ch = chr(int(m.group(1), 16))
        return ch if ch in _UNRESERVED else "%" + m.group(1).upper()

    path = _PCT_RE.sub(_decode, path)
    out: list[str] = []
    for ch in path:
        if ord(ch) > 0x7E or ord(ch) <= 0x20:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
        else:
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True)
class Rule:
    allow: bool
    pattern: str  # normalised

    @property
    def wildcard(self) -> bool:
        return "*" in self.pattern or self.pattern.endswith("$")

    def matches(self, path: str) -> bool:
        return _Glob.of(self.pattern).matches(path)


@dataclass(frozen=True)
class _Glob:
    """A compiled robots pattern: literal pieces between ``*`` runs, maybe anchored by ``$``."""

    pieces: tuple[str, ...]
    anchored: bool

    @classmethod
    def of(cls, pattern: str) -> _Glob:
        anchored = pattern.endswith("$")
        body = pattern[:-1] if anchored else pattern
        return cls(tuple(body.split("*")), anchored)  # "a**b" -> ("a", "", "b"): empty pieces match anywhere

    def matches(self, path: str) -> bool:
        """Linear time: each piece is found once, left to right, never revisited."""
        pieces = self.pieces
        first = pieces[0]
        if not path.startswith(first):
            return False
        if len(pieces) == 1:
            return not self.anchored or len(path) == len(first)
        pos = len(first)
        last = len(pieces) - 1
        for piece in pieces[1:last]:
            if piece:
                found = path.find(piece, pos)
                if found < 0:
                    return False
                pos = found + len(piece)
        tail = pieces[last]
        if self.anchored:
            return len(path) - len(tail) >= pos and path.endswith(tail)
        return not tail or path.find(tail, pos) >= 0


class _Matcher:
    """One agent's rules, compiled: the longest matching rule wins, Allow on ties."""

    def __init__(self, rules: list[Rule]) -> None:
        self._plain: dict[str, bool] = {}  # prefix -> allow (True wins a tie)
        wild: dict[str, bool] = {}
        for rule in rules:
            target = wild if rule.wildcard else self._plain
            target[rule.pattern] = target.get(rule.pattern, False) or rule.allow
        # longest first; on equal length Allow first, so the first hit is the winner among wildcards
        self._wild = [
            (len(p), allow, _Glob.of(p)) for p, allow in sorted(wild.items(), key=lambda kv: (-len(kv[0]), not kv[1]))
        ]
        self._lengths = sorted({len(p) for p in self._plain}, reverse=True)

    def verdict(self, path: str) -> bool:
        best_len, best_allow = -1, True
        for length in self._lengths:  # distinct prefix lengths, longest first: O(len(path)) probes
            if length <= len(path):
                allow = self._plain.get(path[:length])
                if allow is not None:
                    best_len, best_allow = length, allow
                    break
        for length, allow, glob in self._wild:
            if length < best_len or (length == best_len and (best_allow or not allow)):
                break  # cannot beat the plain match (sorted longest first)
            if glob.matches(path):
                best_len, best_allow = length, allow
                break
        return True if best_len < 0 else best_allow


@dataclass
class _Group:
    agents: list[str] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)


class RobotsTxt:
    """A parsed robots.txt. ``allow_all()``/``disallow_all()`` stand in for the
    fetch outcomes that have no file to parse."""

    def __init__(self, groups: list[_Group] | None = None, *, default_allow: bool = True, note: str = "") -> None:
        self._groups = groups or []
        self._default_allow = default_allow
        self._matchers: dict[str, _Matcher | None] = {}
        self.note = note  # why there are no rules, e.g. "robots.txt answered HTTP 503"
        self.sitemaps: list[str] = []

    @classmethod
    def allow_all(cls, note: str = "") -> RobotsTxt:
        return cls(default_allow=True, note=note)

    @classmethod
    def disallow_all(cls, note: str = "") -> RobotsTxt:
        return cls(default_allow=False, note=note)

    def why_disallowed(self) -> str:
        """A short reason for reports."""
        if not self._groups and not self._default_allow:
            return f"{self.note}: crawling nothing there" if self.note else "robots.txt forbids everything"
        return "disallowed by robots.txt"

    @classmethod
    def parse(cls, text: str | bytes) -> RobotsTxt:
        """Parse leniently: unknown lines are ignored, rules before any user-agent are dropped."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        text = text.lstrip("\ufeff")
        groups: list[_Group] = []
        current: _Group | None = None
        in_rules = False
        sitemaps: list[str] = []
        lines = text.splitlines()
        for raw in lines:
            line = raw.split("#", 1)[0].strip()
            if ":" in line:
                key, _, value = line.partition(":")
            else:  # "Disallow /x": accepted when it is exactly key and value, as Google's parser does
                words = line.split()
                if len(words) != 2:
                    continue
                key, value = words
            key, value = key.strip().lower(), value.strip()
            if key in ("user-agent", "useragent", "user agent"):
                if current is None or in_rules:
                    current = _Group()
                    groups.append(current)
                    in_rules = False
                current.agents.append(value)
            elif key in ("allow", "disallow"):
                if current is None:
                    continue
                in_rules = True
                if value:  # an empty Disallow means "nothing disallowed": no rule
                    current.rules.append(Rule(key == "allow", normalise_path(value)))
            elif key == "sitemap":
                sitemaps.append(value)
        robots = cls(groups)
        robots.sitemaps = sitemaps
        robots.matcher(_DEFAULT_TOKEN)  # compile once, here (in the parsing thread), not at the first check
        return robots

    def matcher(self, product_token: str) -> _Matcher | None:
        """The compiled rules for ``product_token`` (None: no rules apply); built once per token."""
        token = product_token.lower()
        if token not in self._matchers:
            rules = self.rules_for(token)
            self._matchers[token] = _Matcher(rules) if rules else None
        return self._matchers[token]

    def rules_for(self, product_token: str) -> list[Rule] | None:
        """Merged rules of every group naming ``product_token`` (else ``*``); None = no group."""
        token = product_token.lower()
        specific: list[Rule] = []
        star: list[Rule] = []
        found_specific = found_star = False
        for group in self._groups:
            names = {_agent_name(agent) for agent in group.agents}
            if token in names:
                specific.extend(group.rules)
                found_specific = True
            elif "*" in names:
                star.extend(group.rules)
                found_star = True
        if found_specific:
            return specific
        if found_star:
            return star
        return None

    def is_allowed(self, product_token: str, url_or_path: str) -> bool:
        """May a crawler called ``product_token`` fetch this URL (or path + query)?"""
        path = _path_of(url_or_path)
        if path == "/robots.txt":
            return True
        if not self._groups:
            return self._default_allow
        matcher = self.matcher(product_token)
        if matcher is None:
            return True
        return matcher.verdict(normalise_path(path))


def _agent_name(agent: str) -> str:
    """The product token a User-agent line names: ``FashionBot/1.0`` -> ``fashionbot``."""
    agent = agent.strip()
    if agent == "*":
        return "*"
    m = _TOKEN_RE.match(agent)
    return m.group(0).lower() if m else ""


def _path_of(url_or_path: str) -> str:
    if url_or_path.startswith("/"):
        return url_or_path
    parts = urlsplit(url_or_path)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def origin_of(url: str) -> str:
    """``scheme://host:port`` — robots.txt applies per origin (RFC 9309 2.3)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


_DEFAULT_TOKEN = "fashionbot"

# fetch(robots_url) -> (status, body); status None = unreachable (network error, timeout).
RobotsFetch = Callable[[str], Awaitable[tuple[int | None, bytes]]]


def robots_from_response(status: int | None, body: bytes) -> RobotsTxt:
    """RFC 9309 2.3.1: what a fetch outcome means for crawling."""
    if status is None:
        return RobotsTxt.disallow_all("robots.txt unreachable")
    if status == 429 or status >= 500:
        return RobotsTxt.disallow_all(f"robots.txt answered HTTP {status}")
    if 200 <= status < 300:
        return RobotsTxt.parse(body)
    # 4xx: "unavailable", crawl freely. (3xx can't arrive: the fetcher follows them.)
    return RobotsTxt.allow_all(f"robots.txt answered HTTP {status}")


class RobotsCache:
    """robots.txt per origin, fetched once per TTL even under concurrent requests."""

    def __init__(
        self,
        fetch: RobotsFetch,
        *,
        product_token: str = "fashionbot",
        ttl: float = 3600.0,
        error_ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.product_token = product_token
        self._ttl = ttl
        self._error_ttl = error_ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, RobotsTxt]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, url: str, *, fetch: RobotsFetch | None = None) -> RobotsTxt:
        """robots.txt for the URL's origin; ``fetch`` replaces the cache's own fetch for a
        miss (the fetcher passes one carrying the shop's allow-list scope)."""
        origin = origin_of(url)
        entry = self._entries.get(origin)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        lock = self._locks.setdefault(origin, asyncio.Lock())
        async with lock:
            entry = self._entries.get(origin)
            if entry is not None and entry[0] > self._clock():
                return entry[1]
            scheme_host = urlsplit(url)
            robots_url = f"{scheme_host.scheme}://{scheme_host.netloc.rsplit('@', 1)[-1]}/robots.txt"
            status, body = await (fetch or self._fetch)(robots_url)
            robots = await asyncio.to_thread(robots_from_response, status, body)  # parse + compile off the loop
            ok = status is not None and status < 500 and status != 429
            self._entries[origin] = (self._clock() + (self._ttl if ok else self._error_ttl), robots)
            return robots

    async def is_allowed(self, url: str) -> bool:
        robots = await self.get(url)
        return await asyncio.to_thread(robots.is_allowed, self.product_token, url)
