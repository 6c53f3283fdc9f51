"""The garment groups and the words for them: Fashion-MNIST's classes, the clothing classes
of Lite0's ImageNet classifier, and catalogue categories ("Apparel > Jackets"), each
mapped to one group. The finder, the catalogue's group filter and training share them."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

GROUPS = ("top", "outerwear", "dress", "bottoms", "shoes", "bag", "other")

# Fashion-MNIST's classes, in its order, with their groups and plain words.
FM_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FM_GROUPS = ("top", "bottoms", "top", "dress", "outerwear", "shoes", "top", "shoes", "bag", "shoes")
FM_WORDS = ("T-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")

# Lite0's ImageNet clothing classes (index: word, group), checked against the ImageNet
# class list torchvision ships (ResNet50_Weights.IMAGENET1K_V2.meta["categories"]).
CAM_CLASSES: dict[int, tuple[str, str]] = {
    610: ("jersey", "top"),
    841: ("sweatshirt", "top"),
    474: ("cardigan", "top"),
    697: ("pajama", "top"),
    459: ("bra", "top"),
    445: ("bikini", "top"),
    638: ("swimsuit", "top"),
    639: ("swimsuit", "top"),
    834: ("suit", "outerwear"),
    869: ("trench coat", "outerwear"),
    568: ("fur coat", "outerwear"),
    617: ("lab coat", "outerwear"),
    652: ("uniform", "outerwear"),
    735: ("poncho", "outerwear"),
    501: ("cloak", "outerwear"),
    465: ("vest", "outerwear"),
    824: ("stole", "outerwear"),
    400: ("academic gown", "outerwear"),
    887: ("vestment", "outerwear"),
    578: ("gown", "dress"),
    614: ("kimono", "dress"),
    399: ("abaya", "dress"),
    601: ("hoopskirt", "dress"),
    689: ("overskirt", "dress"),
    775: ("sarong", "dress"),
    411: ("apron", "dress"),
    608: ("jeans", "bottoms"),
    655: ("miniskirt", "bottoms"),
    842: ("swimming trunks", "bottoms"),
    774: ("sandal", "shoes"),
    770: ("running shoe", "shoes"),
    514: ("cowboy boot", "shoes"),
    630: ("loafer", "shoes"),
    502: ("clog", "shoes"),
    806: ("sock", "shoes"),
    748: ("purse", "bag"),
    414: ("backpack", "bag"),
    636: ("mailbag", "bag"),
    893: ("wallet", "bag"),
    457: ("bow tie", "other"),
    906: ("tie", "other"),
    451: ("bolo tie", "other"),
    515: ("cowboy hat", "other"),
    808: ("sombrero", "other"),
    452: ("bonnet", "other"),
    658: ("mitten", "other"),
}

# Catalogue category words → group (Fashion-MNIST's ten, Merchant/Kaggle feed words).
CATEGORY_GROUPS: dict[str, str] = {
    **{c.lower(): g for c, g in zip(FM_CLASSES, FM_GROUPS)},
    **{w.lower(): g for w, g in zip(FM_WORDS, FM_GROUPS)},
    "t-shirt": "top",
    "tshirt": "top",
    "tee": "top",
    "top": "top",
    "tops": "top",
    "shirt": "top",
    "shirts": "top",
    "blouse": "top",
    "polo": "top",
    "tank top": "top",
    "camisole": "top",
    "sweater": "top",
    "jumper": "top",
    "pullover": "top",
    "sweatshirt": "top",
    "hoodie": "top",
    "cardigan": "top",
    "jersey": "top",
    "tunic": "top",
    "knitwear": "top",
    "vest top": "top",
    "crop top": "top",
    "bodysuit": "top",
    "tshirts": "top",
    "coat": "outerwear",
    "coats": "outerwear",
    "jacket": "outerwear",
    "jackets": "outerwear",
    "blazer": "outerwear",
    "parka": "outerwear",
    "anorak": "outerwear",
    "trench coat": "outerwear",
    "raincoat": "outerwear",
    "gilet": "outerwear",
    "waistcoat": "outerwear",
    "suit": "outerwear",
    "suits": "outerwear",
    "outerwear": "outerwear",
    "poncho": "outerwear",
    "windbreaker": "outerwear",
    "puffer": "outerwear",
    "dress": "dress",
    "dresses": "dress",
    "gown": "dress",
    "jumpsuit": "dress",
    "playsuit": "dress",
    "romper": "dress",
    "kimono": "dress",
    "sundress": "dress",
    "saree": "dress",
    "sari": "dress",
    "kurta": "dress",
    "kurtas": "dress",
    "abaya": "dress",
    "trouser": "bottoms",
    "trousers": "bottoms",
    "pants": "bottoms",
    "jeans": "bottoms",
    "jean": "bottoms",
    "chinos": "bottoms",
    "leggings": "bottoms",
    "shorts": "bottoms",
    "skirt": "bottoms",
    "skirts": "bottoms",
    "joggers": "bottoms",
    "track pants": "bottoms",
    "capris": "bottoms",
    "bottoms": "bottoms",
    "miniskirt": "bottoms",
    "culottes": "bottoms",
    "shoe": "shoes",
    "shoes": "shoes",
    "sandal": "shoes",
    "sandals": "shoes",
    "sneaker": "shoes",
    "sneakers": "shoes",
    "trainers": "shoes",
    "trainer": "shoes",
    "boot": "shoes",
    "boots": "shoes",
    "ankle boot": "shoes",
    "ankle boots": "shoes",
    "heels": "shoes",
    "pumps": "shoes",
    "loafers": "shoes",
    "loafer": "shoes",
    "flats": "shoes",
    "flip flops": "shoes",
    "slippers": "shoes",
    "casual shoes": "shoes",
    "sports shoes": "shoes",
    "formal shoes": "shoes",
    "footwear": "shoes",
    "clogs": "shoes",
    "mules": "shoes",
    "bag": "bag",
    "bags": "bag",
    "handbag": "bag",
    "handbags": "bag",
    "backpack": "bag",
    "backpacks": "bag",
    "purse": "bag",
    "clutch": "bag",
    "tote": "bag",
    "tote bag": "bag",
    "satchel": "bag",
    "wallet": "bag",
    "wallets": "bag",
    "shoulder bag": "bag",
    "crossbody": "bag",
    "duffel": "bag",
    "messenger bag": "bag",
    "hat": "other",
    "cap": "other",
    "scarf": "other",
    "belt": "other",
    "tie": "other",
    "socks": "other",
    "gloves": "other",
    "sunglasses": "other",
    "watch": "other",
    "watches": "other",
    "jewellery": "other",
    "jewelry": "other",
    "accessories": "other",
}


def group_of_category(text: str | None) -> str | None:
    """The garment group of a catalogue category (``"Ankle boot"``, ``"Apparel > Jackets"``,
    ``"women's skinny jeans"``), or None when no word of it is known."""
    if not text:
        return None
    low = text.strip().lower()
    if low in CATEGORY_GROUPS:
        return CATEGORY_GROUPS[low]
    # Taxonomy paths ("Clothing > Outerwear > Coats"): the most specific known part wins.
    for part in reversed(re.split(r"\s*[>/|,]\s*", low)):
        if part in CATEGORY_GROUPS:
            return CATEGORY_GROUPS[part]
        words = re.findall(r"[a-z][a-z-]*", part)
        for n in (2, 1):  # "ankle boots" before "boots"; the last words name the thing
            for i in range(len(words) - n, -1, -1):
                phrase = " ".join(words[i : i + n])
                if phrase in CATEGORY_GROUPS:
                    return CATEGORY_GROUPS[phrase]
    return None


# Groups a per-garment search also accepts: a pullover the finder takes for a coat (the commonest
# confusion, Fashion-MNIST's own) still finds pullovers. Measured in bench/bench_garments.py.
RELATED_GROUPS: dict[str, tuple[str, ...]] = {"top": ("top", "outerwear"), "outerwear": ("outerwear", "top")}


def search_groups(group: str) -> tuple[str, ...]:
    """The catalogue groups a search for a garment of ``group`` should be restricted to."""
    return RELATED_GROUPS.get(group, (group,))


# How many of a crop's nearest items (all groups) vote on the shelf its search may also use.
GROUP_VOTERS = 20


def voted_search_groups(group: str, neighbour_groups: Sequence[str | None]) -> tuple[str, ...]:
    """:func:`search_groups` of ``group``, widened by the groups of the shelf most of the
    crop's own nearest items (``neighbour_groups``, best first, unknown as None) come from.

    Why: the finder names the wrong group for about a quarter of the garments it boxes in a
    scene (bench/bench_garments.py), and a search restricted to the wrong shelf finds nothing
    of the kind; the crop's neighbours usually know its shelf better then. The finder's own
    shelf is kept, so a right guess loses nothing. Measured on the seeded scene sets
    (bench/bench_garments.py, 3 December): precision@10 0.555 → 0.587 for a garment in a
    scene, 0.531 → 0.569 in outfits (both garments found 34 → 37 %), product shots 0.753 →
    0.751. The service asks the neighbours only when the finder is unsure
    (engine/vision/crop_shelf.py ``TRUST_FINDER_GROUP``): on a real photo they can be wrong. With
    the crop shelf (the shipped Lite0), the shelf names an unsure garment's group instead."""
    known = [g for g in neighbour_groups[:GROUP_VOTERS] if g is not None]
    allowed = search_groups(group)
    if not known:
        return allowed
    voted = Counter(known).most_common(1)[0][0]  # ties: the best-ranked group first seen
    return allowed + tuple(g for g in search_groups(voted) if g not in allowed)
