"""The one public-URL policy of every front-end (issue 16, #9).

A shop link becomes a button, an embed link or an ``href`` only when it is an
absolute http(s) URL on a public host: no credentials, no port out of range, no
localhost / private / loopback / link-local / reserved / special-purpose address
(whatever the Python version thinks of it), no odd IPv4 spelling (``127.1``,
``0x7f.0.0.1``, ``2130706433``), no single-label or local-only name
(``intranet``, ``printer.lan``, ``*.local``, ``*.internal`` …). This is the
strictest of the four copies that existed before (Telegram's, which Telegram
itself enforces for URL buttons).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

MAX_URL = 2048
LOCAL_SUFFIXES = (
    ".local",
    ".localhost",
    ".internal",
    ".lan",
    ".home",
    ".arpa",
    ".test",
    ".invalid",
    ".example",
    ".localdomain",
    ".corp",
    ".home.arpa",
    ".intranet",
    ".private",
)
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")

# Special-purpose ranges (IANA registries) that are never a shop, listed explicitly so the
# answer does not depend on the Python version's idea of ``is_global``.
_DENIED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "255.255.255.255/32",
        "::/128",
        "::1/128",
        "::ffff:0:0/96",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "2002::/16",
        "3fff::/20",
        "5f00::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)


def _public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _public_address(ip.ipv4_mapped)
    if any(ip in net for net in _DENIED_NETWORKS if net.version == ip.version):
        return False
    return ip.is_global and not ip.is_multicast


def is_public_url(url: str | None) -> bool:
    """True when ``url`` may be shown as a clickable link (see the module's rules)."""
    if not url or not isinstance(url, str) or len(url) > MAX_URL or any(c.isspace() or ord(c) < 32 for c in url):
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        return False
    if parts.scheme.lower() not in ("http", "https") or not host or parts.username is not None or "@" in parts.netloc:
        return False
    host = host.rstrip(".").lower()
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or "." not in host or host.endswith(LOCAL_SUFFIXES):
            return False
        # odd IPv4 spellings (127.1, 0x7f.0.0.1, 2130706433) are addresses too
        return not all(_NUMERIC_LABEL.fullmatch(label) for label in host.split("."))
    return _public_address(ip)


def public_url(url: str | None) -> str | None:
    """``url`` when :func:`is_public_url` accepts it, else None."""
    return url if url is not None and is_public_url(url) else None


def telegram_item_link(bot_username: str | None, item_id: int) -> str | None:
    """The t.me deep link that opens ``item_id`` in a chat with the bot (``/start item_<id>``),
    or None without a bot name. One spelling for the Telegram bot and the web chat, which
    must not import the Telegram front-end to link to it."""
    name = (bot_username or "").strip().lstrip("@")
    return f"https://t.me/{name}?start=item_{int(item_id)}" if name else None
