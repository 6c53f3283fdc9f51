"""The shelf map's running counts agree with its items through puts, moves and drops."""

from __future__ import annotations

import random

from engine.catalogue.shelves import Shelves


def test_counts_follow_puts_moves_and_drops():
    shelves = Shelves()
    shelves.put(1, "top")
    shelves.put(2, "top")
    shelves.put(3, "shoes")
    assert shelves.holds("top") and shelves.holds("shoes") and not shelves.holds("dress")
    assert shelves.stocked(["top", "shoes", "dress"]) == 3
    shelves.put(2, "dress")  # an item re-categorised moves shelf, it is not counted twice
    assert shelves.stocked(["top"]) == 1 and shelves.stocked(["dress"]) == 1 and len(shelves) == 3
    shelves.drop(3)
    shelves.drop(3)  # twice is harmless
    assert not shelves.holds("shoes") and shelves.stocked(["shoes"]) == 0
    keep = shelves.keeper(["top", "dress"])
    assert keep(1) and keep(2) and not keep(3) and not keep(99)
    shelves.clear()
    assert not shelves.holds("top") and len(shelves) == 0


def test_counts_match_a_recount_after_random_changes():
    rng = random.Random(7)
    shelves, truth = Shelves(), {}
    for _ in range(5000):
        item = rng.randrange(300)
        if rng.random() < 0.3:
            shelves.drop(item)
            truth.pop(item, None)
        else:
            group = rng.choice(["top", "dress", "shoes", "bag"])
            shelves.put(item, group)
            truth[item] = group
    for group in ["top", "dress", "shoes", "bag", "coat"]:
        count = sum(1 for g in truth.values() if g == group)
        assert shelves.stocked([group]) == count and shelves.holds(group) == (count > 0)
    assert shelves.stocked(["top", "top", "bag"]) == sum(1 for g in truth.values() if g in {"top", "bag"})
