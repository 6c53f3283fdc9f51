"""A real headless Chromium for end-to-end tests of the web chat.

Debian's ``chromium`` driven by Selenium through Debian's ``chromedriver`` (the two
always have the same version, and nothing is downloaded). Selenium's API blocks,
while the app under test runs on the test's own event loop, so every browser call
runs in a worker thread (``asyncio.to_thread``) and the loop keeps serving the page.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TAB, ENTER = "\ue004", "\ue007"  # Selenium's key codes
CHROMIUM = os.environ.get("FASHIONBOT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FASHIONBOT_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--lang=en-US",
]


def missing() -> str | None:
    """Why a browser can't be started here, or None when it can."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


@dataclass
class Browser:
    driver: Any
    profile: Path

    # ---- lifecycle -----------------------------------------------------------------
    @classmethod
    async def launch(cls, width: int = 1280, height: int = 900) -> Browser:
        return await asyncio.to_thread(cls._launch, width, height)

    @classmethod
    def _launch(cls, width: int, height: int) -> Browser:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        profile = Path(tempfile.mkdtemp(prefix="fashionbot-chromium-"))
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        options.set_capability("unhandledPromptBehavior", "ignore")  # we look for alerts ourselves
        service = Service(executable_path=CHROMEDRIVER)
        try:
            driver = webdriver.Chrome(options=options, service=service)
        except BaseException:
            shutil.rmtree(profile, ignore_errors=True)
            raise
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(30)
        browser = cls(driver, profile)
        browser._viewport(width, height, mobile=False)
        # No smooth scrolling or transitions: a click never races an animation.
        driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-reduced-motion", "value": "reduce"}]}
        )
        return browser

    async def close(self) -> None:
        def stop() -> None:
            try:
                self.driver.quit()
            finally:
                shutil.rmtree(self.profile, ignore_errors=True)

        await asyncio.to_thread(stop)

    # ---- plumbing ------------------------------------------------------------------
    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking Selenium call in a thread."""
        return await asyncio.to_thread(fn, *args)

    async def js(self, script: str, *args: Any) -> Any:
        return await self.call(self.driver.execute_script, script, *args)

    async def get(self, url: str) -> None:
        await self.call(self.driver.get, url)

    async def reset(self, origin: str) -> None:
        """A fresh visitor: no cookies, no session storage (visit ``origin`` first)."""
        await self.get(origin + "/static/favicon.svg")
        await self.call(self.driver.delete_all_cookies)
        await self.js("try { sessionStorage.clear(); } catch (e) {}")
        await self.console()  # drop old log lines

    async def wait_js(self, expression: str, timeout: float = 20.0, *args: Any) -> Any:
        """Poll a JS expression until it is truthy; returns its value."""

        def poll() -> Any:
            from selenium.webdriver.support.ui import WebDriverWait

            return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(
                lambda d: d.execute_script("return (" + expression + ");", *args)
            )

        try:
            return await self.call(poll)
        except Exception as err:  # TimeoutException: say what we waited for
            text = await self.js("return document.body ? document.body.innerText.slice(-1500) : ''")
            raise AssertionError(
                f"timed out after {timeout}s waiting for {expression!r}; page text ends: {text!r}"
            ) from err

    async def count(self, css: str) -> int:
        return await self.js("return document.querySelectorAll(arguments[0]).length", css)

    async def text(self, css: str) -> str:
        return await self.js("const e = document.querySelector(arguments[0]); return e ? e.textContent : null", css)

    async def click(self, css: str) -> None:
        """A real mouse click on the first match, scrolled to the middle of the screen first
        (so the sticky bars can't be in the way)."""

        def do() -> None:
            from selenium.webdriver.common.by import By

            element = self.driver.find_element(By.CSS_SELECTOR, css)
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'center'})", element)
            element.click()

        await self.call(do)

    async def upload(self, path: Path | str, css: str = "input[type=file]") -> None:
        def do() -> None:
            from selenium.webdriver.common.by import By

            self.driver.find_element(By.CSS_SELECTOR, css).send_keys(str(path))

        await self.call(do)

    async def keys(self, *keys: str) -> None:
        """Type into whatever has focus, like a keyboard would."""

        def do() -> None:
            from selenium.webdriver.common.action_chains import ActionChains

            chain = ActionChains(self.driver)
            for k in keys:
                chain.send_keys(k)
            chain.perform()

        await self.call(do)

    async def cookies(self) -> dict[str, dict]:
        return {c["name"]: c for c in await self.call(self.driver.get_cookies)}

    async def alert_text(self) -> str | None:
        """The text of an open alert/confirm/prompt, or None."""

        def look() -> str | None:
            from selenium.common.exceptions import NoAlertPresentException

            try:
                return self.driver.switch_to.alert.text
            except NoAlertPresentException:
                return None

        return await self.call(look)

    async def console(self) -> list[dict]:
        """Browser console lines since the last call (CSP violations, JS errors, failed loads)."""
        return await self.call(self.driver.get_log, "browser")

    # ---- viewport and screenshots ------------------------------------------------------------
    def _viewport(self, width: int, height: int, mobile: bool) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )
        self.driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": mobile})

    async def viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        await self.call(self._viewport, width, height, mobile)

    async def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        """A PNG of the viewport, or of the whole page (the viewport is grown to the page's
        height for the shot, so sticky bars sit where a reader would see them)."""

        def shoot() -> bytes:
            if not full_page:
                return base64.b64decode(
                    self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})["data"]
                )
            width, height, mobile = self.driver.execute_script(
                "return [window.innerWidth, window.innerHeight, navigator.maxTouchPoints > 0]"
            )
            full = self.driver.execute_script("return document.documentElement.scrollHeight")
            self._viewport(width, full, mobile)
            try:
                self.driver.execute_script("window.scrollTo(0, 0)")
                self.driver.execute_script(
                    "return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
                )
                return base64.b64decode(
                    self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})["data"]
                )
            finally:
                self._viewport(width, height, mobile)

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(await self.call(shoot))
        return path


# ---- test data -------------------------------------------------------------------------------
async def add_item(
    service: Any,
    title: str,
    image: bytes,
    *,
    url: str | None = None,
    price: float | None = 19.99,
    shop: str | None = None,
    category: str = "Sneaker",
) -> int:
    """Put one item into the real catalogue (database and index) through the service."""
    import secrets

    from db.store import NewItem

    prepared = await service.encoder.prepare(image)
    item = NewItem(
        source="test",
        external_id=secrets.token_hex(6),
        title=title,
        image=image,
        url=url,
        price=price,
        category=category,
        shop=shop,
    )
    [item_id] = await service.catalogue.add_items([item], await service.encoder.embed(prepared.pixels[None]))
    return item_id


# ---- garment finders for page tests ------------------------------------------------------------
# The page tests are about the page: what the garment finder sees is pinned here (the
# finder has tests and benchmarks of its own). The service still crops, embeds, searches
# and stores every garment for real; only ``scan`` is fixed.
def _scan(garments: list[tuple[str, str, tuple[float, float, float, float], float]], product_shot: bool = False) -> Any:
    from engine.vision.garment_boxes import Box, FoundGarment, GarmentScan

    found = tuple(FoundGarment(Box(*box), group, label, conf) for group, label, box, conf in garments)
    return GarmentScan(found, 1.0 if found else 0.0, product_shot)


class _Pinned:
    """The finder's steps as the service calls them (``scan_input`` on the pool,
    ``maps_batch`` on the model's thread, ``decide`` on the pool, ``refine_inputs`` for the
    close look: none), all deferring to ``scan``."""

    def scan(self, img: Any) -> Any:
        raise NotImplementedError

    def scan_input(self, img: Any) -> tuple[Any, Any]:
        import numpy as np

        return img, np.zeros((1, 1))

    def maps_batch(self, inputs: list[Any]) -> list[Any]:
        return [None for _ in inputs]

    def decide(self, img: Any, maps: Any) -> Any:
        return self.scan(img)

    def refine_inputs(self, img: Any, scan: Any) -> list[Any]:
        return []  # the pinned garments are where the test put them: no close look


class ProductShots(_Pinned):
    """Every photo is a product shot: one garment covering what is not background, searched
    as the whole picture (the service's product-shot path), so results are the whole
    photo's and never depend on the finder's calibration."""

    def scan(self, img: Any) -> Any:
        import numpy as np

        grey = np.asarray(img.convert("L"), dtype=np.uint8)
        ys, xs = np.nonzero(grey < 235)
        h, w = grey.shape
        box = (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h) if len(xs) else (0.0, 0.0, 1.0, 1.0)
        return _scan([("other", "item", box, 0.9)], product_shot=True)


@dataclass
class FixedGarments(_Pinned):
    """A finder that sees these garments (group, label, relative box, confidence) in any photo."""

    garments: list[tuple[str, str, tuple[float, float, float, float], float]]

    def scan(self, img: Any) -> Any:
        return _scan(self.garments)


def outfit_photo(
    top28: Any,
    below28: Any,
    size: tuple[int, int] = (480, 640),
    seed: int = 0,
    background: tuple[int, int, int] = (238, 234, 228),
) -> tuple[bytes, list[tuple[float, float, float, float]]]:
    """An outfit in one photo: a Fashion-MNIST top above, shoes (or a bag) below, on a light
    wall with a soft floor shadow. Returns the JPEG and each garment's true relative box."""
    import io

    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    from engine.training.garment_scenes import garment_rgba

    w, h = size
    rng = np.random.default_rng(seed)
    canvas = Image.new("RGB", (w, h), background)
    floor = ImageDraw.Draw(canvas)
    floor.rectangle([0, int(h * 0.82), w, h], fill=tuple(max(0, c - 22) for c in background))
    canvas = canvas.filter(ImageFilter.GaussianBlur(6))
    boxes = []
    for pixels, height, cx, top in ((top28, 0.42, 0.5, 0.06), (below28, 0.24, 0.52, 0.6)):
        piece = garment_rgba(pixels, rng, int(height * h), style="dyed")
        x, y = int(cx * w - piece.width / 2), int(top * h)
        canvas.paste(piece, (x, y), piece)
        alpha = np.asarray(piece.getchannel("A")) > 40
        ys, xs = np.nonzero(alpha)
        boxes.append(((x + xs.min()) / w, (y + ys.min()) / h, (x + xs.max() + 1) / w, (y + ys.max() + 1) / h))
    out = io.BytesIO()
    canvas.save(out, format="JPEG", quality=92)
    return out.getvalue(), boxes
