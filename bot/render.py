"""Text shared by every front-end, so Telegram, Discord, the web chat and the CLI
say the same thing in the same words."""
from __future__ import annotations

from engine.types import About, Recommendation, ScoredItem, StyleSummary, TrendInfo, TrendProgress

HELP = (
    "Send me a photo of an outfit or a piece of clothing and I'll find the 10 most similar "
    "items in the catalogue, with prices and shop links.\n\n"
    "Commands:\n"
    "/style – your personal style, built from the photos you've sent\n"
    "/trend <tag> – search shops for a trend (e.g. /trend dress) and add new items\n"
    "/forget – delete everything I keep about you\n"
    "/about – which model and catalogue I'm using\n"
    "/help – this message\n\n"
    "Rate results with 👍 / 👎 and I'll learn what you like. "
    "I never keep your photos, only a numeric fingerprint of them."
)
HINT = "Send me a photo of an outfit and I'll find similar items. /help lists what else I can do."
RATE_LIMITED = "You're sending photos faster than I can look at them. Please wait {seconds} s and try again."
INTERNAL_ERROR = "Something went wrong on my side while handling that. Please try again in a moment."
FORGET_CONFIRM = "This deletes your photos' fingerprints, your style profile, your ratings and your history. Are you sure?"
def forgotten(counts: dict[str, int]) -> str:
    """The /forget confirmation, with counts in words people use ("1 photo", "2 photos")."""
    def n(key: str, word: str) -> str:
        value = counts.get(key, 0)
        return f"{value} {word}{'' if value == 1 else 's'}"

    return (
        "Done: I've deleted everything I kept about you "
        f"({n('photos', 'photo')}, {n('feedback', 'rating')}, {n('recommendations', 'result')})."
    )
FEEDBACK_THANKS = {1: "Thanks! I'll show you more like this.", -1: "Got it, I won't show you that one again."}


def megabytes(n: int) -> str:
    """Sizes as people read them (binary megabytes, like the platforms' own limits)."""
    return f"{n / 2**20:.1f}".removesuffix(".0") + " MB"


def too_large(size_bytes: int, limit_bytes: int) -> str:
    return f"That file is {megabytes(size_bytes)}; I can take photos up to {megabytes(limit_bytes)}."


def caption(s: ScoredItem) -> str:
    """One result in one line: rank, title, price, similarity."""
    return f"{s.rank}. {s.item.title} · {s.item.price_text} · {s.score * 100:.0f}% similar"


def recommendation_text(rec: Recommendation) -> str:
    lines = [caption(s) + (f"\n   {s.item.url}" if s.item.url else "") for s in rec.items]
    return "\n".join(lines) if lines else "No matching items found."


def about_text(a: About) -> str:
    lines = [
        f"Backbone: {a.backbone} ({a.dimension}-d features, {a.precision}"
        + (f", batches of {a.batch_size})" if a.batch_size else ")"),
        f"Weights: {a.weights_source} [{a.weights_fingerprint}]",
        f"Head: {a.head}" if a.head else "Head: none (frozen backbone features; see `fashionbot train-head`)",
        f"Catalogue: {a.catalogue_size} items; index: {a.index_size} items, {a.index_state}",
    ]
    if a.backbone_note:
        lines.append(f"Note: {a.backbone_note}")
    return "\n".join(lines)


def style_text(s: StyleSummary) -> str:
    if s.cold_start:
        head = (
            f"I need {s.needed} more photo{'s' if s.needed != 1 else ''} to work out your style "
            f"(I have {s.photo_count}). Meanwhile, here is what's popular:"
        )
        return head + "\n" + "\n".join(caption(i) for i in s.popular)
    parts = ["Your style:"]
    for n, c in enumerate(s.clusters):
        marker = "★ " if n == 0 else "• "
        parts.append(f"{marker}{c.name} · {c.share * 100:.0f}% of your photos")
    if s.clusters and s.clusters[0].items:
        parts.append("\nTop picks for your style:")
        parts.extend(caption(i) for i in s.clusters[0].items)
    return "\n".join(parts)


def trend_progress_text(p: TrendProgress) -> str:
    state = "done" if p.done else "searching…"
    text = (
        f"Trend “{p.tag}”: {state}\n"
        f"Shops searched: {p.shops_searched}/{p.shops_total} · found: {p.found} · "
        f"indexed: {p.indexed} · skipped: {p.skipped}"
    )
    if p.error:
        text += f"\n{p.error}"
    if p.done and p.best:
        text += "\nBest new items:\n" + "\n".join(caption(i) for i in p.best)
    return text


def trends_text(trends: list[TrendInfo]) -> str:
    if not trends:
        return "No trends yet. Try /trend dress."
    return "Recent trends:\n" + "\n".join(f"• {t.tag}: {t.item_count} items" for t in trends)
