"""The README's pictures of the web chat, made by the real thing: a small Fashion-MNIST
catalogue, the real FashionService (with its real garment finder), the real web chat and
Debian's headless Chromium (as in tests/integration/test_web_browser.py).

    .venv/bin/python scripts/screenshots.py              # writes docs/img/web-chat-garments.png
    .venv/bin/python scripts/screenshots.py --photo my.jpg --items 3000

Without ``--photo`` it tries, in order, an outfit composite (a Fashion-MNIST top above
shoes on a wall) and scikit-image's astronaut photo, and keeps the first in which the
finder sees at least two garments (else the last one tried, with a warning). Nothing is
downloaded; the catalogue lives in a temporary directory that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import browser as chromium  # noqa: E402
from tests.support.settings import make_settings  # noqa: E402

OUT = ROOT / "docs" / "img"


def candidate_photos(work: Path) -> list[Path]:
    import numpy as np

    from engine.catalogue.ingest import FASHION_MNIST_CLASSES, load_fashion_mnist

    images, labels = load_fashion_mnist("test")

    def pick(category: str, nth: int = 0):
        return images[np.flatnonzero(labels == FASHION_MNIST_CLASSES.index(category))[nth]]

    jpeg, _ = chromium.outfit_photo(pick("Pullover"), pick("Sneaker"))
    outfit = work / "outfit.jpg"
    outfit.write_bytes(jpeg)
    found = [outfit]
    try:
        import skimage

        astronaut = Path(skimage.__file__).parent / "data" / "astronaut.png"
        if astronaut.exists():
            found.append(astronaut)
    except ImportError:
        pass
    return found


async def garments_in(service, path: Path) -> int:
    rec = await service.recommend(path.read_bytes())
    return len(rec.garments)


async def main(args: argparse.Namespace) -> int:
    from bot.web import start_web
    from engine.catalogue import ingest as catalogue
    from engine.service import FashionService

    problem = chromium.missing()
    if problem:
        print(f"screenshots need {problem}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="fashionbot-shots-") as tmp:
        work = Path(tmp)
        settings = make_settings(work / "data", database_url=None)
        service = await FashionService.create(settings)
        try:
            print(f"building a catalogue of {args.items} Fashion-MNIST items…", flush=True)
            rows = catalogue.fashion_mnist_rows("train", args.items, service.encoder.embedder.input_size)
            await catalogue.ingest_rows(service.catalogue, service.encoder, rows, batch_size=128)

            photos = [Path(args.photo)] if args.photo else candidate_photos(work)
            chosen = photos[-1]
            for path in photos:
                n = await garments_in(service, path)
                print(f"{path.name}: the finder sees {n} garment(s)", flush=True)
                if n >= 2:
                    chosen = path
                    break
            else:
                if not args.photo:
                    print("warning: no candidate photo has two garments; using", chosen.name, file=sys.stderr)

            server = await start_web(service, settings, port=0)
            b = await chromium.Browser.launch(args.width, args.height)
            try:
                origin = server.url.rstrip("/")
                await b.reset(origin)
                await b.get(origin + "/")
                await b.wait_js("document.body.classList.contains('ready')")
                await b.upload(chosen)
                await b.wait_js("document.querySelector('.msg.bot.wide .panel')", 120)
                await b.wait_js("document.querySelector('.stage-photo')?.naturalWidth > 0")
                await b.wait_js(
                    "[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)"
                )
                if args.garment:
                    await b.click(f".gbox[data-key='g{args.garment}']")
                    await b.wait_js(
                        f"document.querySelector(\".gbox[data-key='g{args.garment}']\").classList.contains('current')"
                    )
                    await b.wait_js(
                        "[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)"
                    )
                await b.js(
                    "document.activeElement && document.activeElement.blur();"
                    # the sticky bars would sit across a shot taken beyond the viewport
                    " for (const e of document.querySelectorAll('.composer, .topbar')) e.style.visibility = 'hidden';"
                )
                OUT.mkdir(parents=True, exist_ok=True)
                target = OUT / "web-chat-garments.png"
                await shoot_element(b, ".msg.bot.wide", target, margin=16)
                print(f"wrote {target.relative_to(ROOT)}", flush=True)
            finally:
                await b.close()
                await server.close()
        finally:
            await service.close()
    return 0


async def shoot_element(b: chromium.Browser, css: str, path: Path, margin: int = 0) -> None:
    """A PNG of one element (and ``margin`` px around it), wherever it is on the page."""

    def shoot() -> bytes:
        r = b.driver.execute_script(
            "const e = [...document.querySelectorAll(arguments[0])].pop(); e.scrollIntoView({block: 'start'});"
            " const r = e.getBoundingClientRect();"
            " return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]",
            css,
        )
        clip = {
            "x": max(0, r[0] - margin),
            "y": max(0, r[1] - margin),
            "width": r[2] + 2 * margin,
            "height": r[3] + 2 * margin,
            "scale": 1,
        }
        data = b.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}
        )
        return base64.b64decode(data["data"])

    path.write_bytes(await b.call(shoot))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Make the README's screenshots of the web chat.")
    parser.add_argument("--photo", help="the photo to send (default: an outfit composite, else the astronaut)")
    parser.add_argument("--items", type=int, default=2000, help="Fashion-MNIST items in the catalogue (default 2000)")
    parser.add_argument("--garment", type=int, default=0, help="tap this garment's box before the shot (default: none)")
    parser.add_argument("--width", type=int, default=1440, help="browser window width (default 1440)")
    parser.add_argument("--height", type=int, default=900, help="browser window height (default 900)")
    os.environ.setdefault("TQDM_DISABLE", "1")
    sys.exit(asyncio.run(main(parser.parse_args())))
