"""Text shared by every front-end, so Telegram, Discord, the web chat and the CLI
say the same thing in the same words."""

from __future__ import annotations

from engine.types import About, Garment, Recommendation, ScoredItem, StyleSummary, TrendInfo, TrendProgress

HELP = (
    "Send me a photo of an outfit or a piece of clothing and I'll find the most similar "
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
COMMANDS_RATE_LIMITED = "You're asking faster than I can keep up. Please wait {seconds} s and try again."
TREND_UNAVAILABLE = (
    "Searching shops for a trend isn't available yet, sorry. "
    "Meanwhile, send me a photo and I'll find similar items in the catalogue."
)
TREND_USAGE = "Tell me what to look for, e.g. /trend linen dress"
NO_GARMENT = "I can't see any clothing in this photo."
NO_GARMENT_HINT = "If there is something to match in it anyway, search the whole photo."
WHOLE_PHOTO = "Whole photo"
SEARCH_WHOLE_PHOTO = "Search the whole photo"
NOT_YOURS = "This button isn't for you."
SWITCH_EXPIRED = "I no longer have that photo's results. Please send it again."
INTERNAL_ERROR = "Something went wrong on my side while handling that. Please try again in a moment."
FORGET_CONFIRM = (
    "This deletes your photos' fingerprints, your style profile, your ratings and your history. Are you sure?"
)


def forgotten(counts: dict[str, int]) -> str:
    """The /forget confirmation, with counts in words people use ("1 photo", "2 photos")."""

    def n(key: str, word: str) -> str:
        value = counts.get(key, 0)
        return f"{value} {word}{'' if value == 1 else 's'}"

    return (
        "Done: I've deleted everything I kept about you "
        f"({n('photos', 'photo')}, {n('feedback', 'rating')}, {n('recommendations', 'result')})."
    )


NO_RESULTS = "No matching items found."
FEEDBACK_THANKS = {1: "Thanks! I'll show you more like this.", -1: "Got it, I won't show you that one again."}


def megabytes(n: int) -> str:
    """Sizes as people read them (binary megabytes, like the platforms' own limits)."""
    return f"{n / 2**20:.1f}".removesuffix(".0") + " MB"


def too_large(size_bytes: int, limit_bytes: int) -> str:
    return f"That file is {megabytes(size_bytes)}; I can take photos up to {megabytes(limit_bytes)}."


def caption(s: ScoredItem) -> str:
    """One result in one line: rank, title, price, similarity."""
    return f"{s.rank}. {s.item.title} · {s.item.price_text} · {s.score * 100:.0f}% similar"


def join_words(words: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


# Words spelt with a vowel but said with a consonant ("a uniform", the ImageNet class the
# finder names on a person in a naval or military uniform).
_SAID_WITH_A_CONSONANT = ("uni", "use", "usu", "eu", "one")
# Labels that come with their own determiner (a region the user drew: "your selection").
_HAS_ITS_DETERMINER = ("your ", "the ")


def _with_article(label: str) -> str:
    """ "a coat", "an anorak", "a dress", "a uniform", but "trousers", "shoes", "your
    selection" as they are."""
    if _is_plural(label) or label.startswith(_HAS_ITS_DETERMINER):
        return label
    low = label.lower()
    vowel = low[:1] in "aeiou" and not low.startswith(_SAID_WITH_A_CONSONANT)
    return ("an " if vowel else "a ") + label


def garment_name(g: Garment) -> str:
    return _with_article(g.label)


def garments_text(garments: list[Garment]) -> str:
    """ "I see a coat, trousers and shoes." (the first garment first); a word the photo has
    more than once is said once with its count: "I see two T-shirts and a shirt.", not "a
    T-shirt, a T-shirt and a shirt" (two people in one photo)."""
    counts: dict[str, tuple[str, int]] = {}
    for g in garments:
        key = g.label.lower()
        label, n = counts.get(key, (g.label, 0))
        counts[key] = (label, n + 1)
    names = [_counted(label, n) for label, n in counts.values()]
    return f"I see {join_words(names)}." if names else ""


_NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _counted(label: str, n: int) -> str:
    """ "a coat" (1), "two coats", "two dresses", "two pairs of trousers"; a region the user
    drew ("your selection") is named as it is."""
    if n == 1 or label.startswith(_HAS_ITS_DETERMINER):
        return _with_article(label)
    number = _NUMBER_WORDS[n - 1] if n <= len(_NUMBER_WORDS) else str(n)
    if _is_plural(label):
        return f"{number} pairs of {label}"
    return f"{number} {label}{'es' if label.endswith(('ss', 'sh', 'ch', 'x')) else 's'}"


def _is_plural(label: str) -> bool:
    return label.endswith("s") and not label.endswith("ss")  # "dress", "sundress" are one garment


def no_garment_text() -> str:
    return f"{NO_GARMENT} {NO_GARMENT_HINT}"


def showing_text(rec: Recommendation) -> str:
    """What the items shown belong to: "Matches for the coat (1 of 3):" or the whole photo."""
    current = rec.current
    if current is None:
        return "Matches for the whole photo:"
    return f"Matches for {_the(current.label)} ({current.number} of {len(rec.garments)}):"


def _the(label: str) -> str:
    return label if label.startswith(_HAS_ITS_DETERMINER) else "the " + label


def garment_button_label(g: Garment) -> str:
    return f"{g.number}. {g.label}"


def recommendation_intro(rec: Recommendation) -> str:
    """The first line of an answer: the garments seen and which one is shown, the
    refusal for a photo without clothing, or "" for a plain whole-photo answer."""
    if rec.no_garment:
        return no_garment_text()
    if not rec.garments:
        return ""
    return garments_text(rec.garments) + " " + showing_text(rec)


def recommendation_text(rec: Recommendation) -> str:
    if rec.no_garment:
        return no_garment_text()
    lines = [caption(s) + (f"\n   {s.item.url}" if s.item.url else "") for s in rec.items]
    intro = recommendation_intro(rec)
    body = "\n".join(lines) if lines else NO_RESULTS
    return f"{intro}\n{body}" if intro else body


def catalogue_text(a: About) -> str:
    """How much of the catalogue answers photos, in one line: the web chat's status line
    and the demo's console ("Catalogue: 1,240 of 5,000 items ready — still adding")."""
    ready = f"{a.index_size:,} item{'' if a.index_size == 1 else 's'}"
    if a.filling:
        expected = a.expected
        if expected is not None and expected > a.index_size:
            return f"Catalogue: {a.index_size:,} of {expected:,} items ready — still adding"
        return f"Catalogue: {ready} ready — still adding"
    if a.ingest is not None and a.ingest.state == "failed":
        return f"Catalogue: {ready} — adding more stopped (see the log)"
    return f"Catalogue: {ready}"


def about_text(a: About) -> str:
    lines = [
        f"Backbone: {a.backbone} ({a.dimension}-d features, {a.precision}"
        + (f", batches of {a.batch_size})" if a.batch_size else ")"),
        f"Weights: {a.weights_source} [{a.weights_fingerprint}]",
        f"Head: {a.head}" if a.head else "Head: none (frozen backbone features; see `fashionbot train-head`)",
        f"Catalogue: {a.catalogue_size} items; index: {a.index_size} items, {a.index_state}",
    ]
    if a.filling:
        lines.append(catalogue_text(a))
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
