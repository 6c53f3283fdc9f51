"""What the front-ends say about a catalogue that is still being filled: the status
line's words (``render.catalogue_text`` over ``About``), and the photo flow's calm
"try again in a few seconds" instead of an error."""

from __future__ import annotations

import dataclasses
import logging

from bot import render
from bot.flows import FILLING_RETRY_AFTER, PhotoFlow, PhotoRequest, Refusal
from engine.catalogue.ingest import IngestSnapshot as PipelineSnapshot
from engine.config import Settings
from engine.errors import CatalogueFilling, EmptyCatalogue
from engine.types import About, IngestSnapshot, UserRef

ABOUT = About(
    backbone="efficientnet-lite0",
    backbone_note="",
    weights_source="test",
    weights_fingerprint="0",
    dimension=1280,
    catalogue_size=1240,
    index_size=1240,
    index_state="loaded",
    precision="fp32",
)


def ingest(state: str = "running", total: int | None = 5000, done: int = 1240) -> IngestSnapshot:
    return IngestSnapshot("fashion-mnist", state, total, done, done, 0, 100.0, 12.4, None)


def about(snapshot: IngestSnapshot | None, ready: int = 1240) -> About:
    return dataclasses.replace(ABOUT, index_size=ready, ingest=snapshot)


def test_the_status_line_while_filling_and_after() -> None:
    assert PipelineSnapshot is IngestSnapshot  # one snapshot, carried by About to the front-ends
    nothing = about(None)
    assert (nothing.filling, nothing.expected, render.catalogue_text(nothing)) == (
        False,
        None,
        "Catalogue: 1,240 items",
    )
    # a second start: 5,000 already in, this run's ingest has 3,760 rows to go
    filling = about(ingest(total=3760, done=0))
    assert (filling.filling, filling.expected) == (True, 5000)
    assert render.catalogue_text(filling) == "Catalogue: 1,240 of 5,000 items ready — still adding"
    unknown = about(ingest(total=None, done=0), ready=0)  # still reading the dataset
    assert unknown.filling and unknown.expected is None
    assert render.catalogue_text(unknown) == "Catalogue: 0 items ready — still adding"
    finishing = about(ingest(total=3760, done=3760), ready=5000)  # all rows handled, not yet "done"
    assert not finishing.filling and render.catalogue_text(finishing) == "Catalogue: 5,000 items"
    done = about(ingest("done", 5000, 5000), ready=5000)
    assert (done.filling, render.catalogue_text(done)) == (False, "Catalogue: 5,000 items")
    failed = about(dataclasses.replace(ingest("failed"), error="disk full"), ready=1)
    assert render.catalogue_text(failed) == "Catalogue: 1 item — adding more stopped (see the log)"
    assert render.catalogue_text(failed).startswith("Catalogue: 1 item ")
    assert "1,240 of 5,000 items ready" in render.about_text(about(ingest(total=3760, done=0)))
    assert "still adding" not in render.about_text(done)


def test_the_total_holds_while_the_index_grows_a_moment_before_the_ingest_counts() -> None:
    """The index takes a chunk on a pool thread; the ingest counts it when the loop comes
    back. A page polling in between must read "128 of 300", not "128 of 428"."""
    started_empty = dataclasses.replace(ingest(total=300, done=0), added=0, base=0)
    in_between = about(started_empty, ready=128)  # indexed, not counted yet
    counted = about(dataclasses.replace(started_empty, done=128, added=128), ready=128)
    assert in_between.expected == counted.expected == 300
    assert render.catalogue_text(in_between) == "Catalogue: 128 of 300 items ready — still adding"
    # another worker's items land in this index too: never below what it holds
    assert about(started_empty, ready=400).expected == 400


class Empty:
    """A service whose catalogue is empty, filling or not."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def recommend(self, image, user=None, k=None, **kwargs):
        raise self.error


def photo() -> PhotoRequest:
    async def download() -> bytes:
        return b"photo"

    return PhotoRequest(user=UserRef("test", "1"), declared_size=5, download=download)


async def test_a_photo_while_the_catalogue_fills_is_asked_to_wait(tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    settings = Settings(data_dir=tmp_path)
    result = await PhotoFlow(Empty(CatalogueFilling()), settings).photo(photo())
    assert result == Refusal(str(CatalogueFilling()), "not_ready", retry_after=FILLING_RETRY_AFTER)
    assert str(CatalogueFilling()) == "The catalogue is still being filled — try again in a few seconds."
    assert isinstance(CatalogueFilling(), EmptyCatalogue)  # whoever catches "empty" catches it too
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # nothing went wrong
    # Empty and nobody filling it: the operator's instructions, as before.
    result = await PhotoFlow(Empty(EmptyCatalogue()), settings).photo(photo())
    assert isinstance(result, Refusal) and result.reason == "not_accepted" and "fashionbot ingest" in result.text
