"""engine/vision/images.py: hostile input gets a clear BadImage; odd-but-valid input decodes right."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.vision.images import BadImage, open_image
from tests.support.pictures import BAD, encode, sample_rgb


@pytest.mark.parametrize("name", list(BAD))
def test_bad_images_get_a_clear_message(name: str) -> None:
    with pytest.raises(BadImage) as err:
        open_image(BAD[name])
    message = str(err.value)
    assert message.endswith(".") and len(message) < 200
    assert "Traceback" not in message and "PIL" not in message


def test_file_over_the_byte_cap_is_refused_before_decoding() -> None:
    data = encode(sample_rgb(), "PNG")
    with pytest.raises(BadImage, match="too large"):
        open_image(data, max_bytes=len(data) - 1)
    assert open_image(data, max_bytes=len(data)).size == (64, 48)


def test_unlisted_format_is_refused() -> None:
    with pytest.raises(BadImage, match="can't read"):
        open_image(encode(sample_rgb(), "TIFF"))


def test_cmyk_jpeg_decodes_to_rgb() -> None:
    img = open_image(encode(sample_rgb().convert("CMYK"), "JPEG", quality=95))
    assert img.mode == "RGB"
    r, g, b = img.getpixel((5, 5))
    assert r > 150 and b < 100  # still red on the left


def test_16_bit_png_keeps_its_tones() -> None:
    arr = np.full((32, 32), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    img = open_image(encode(Image.fromarray(arr), "PNG"))
    value = img.getpixel((3, 3))
    assert img.mode == "RGB" and 110 <= value[0] <= 145, value


def test_rgba_png_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 10, 20))
    img = open_image(encode(rgba, "PNG"))
    assert img.getpixel((15, 10)) == (255, 255, 255)  # transparent → white
    assert img.getpixel((2, 10)) == (255, 0, 0)


def test_exif_rotated_jpeg_comes_out_upright() -> None:
    tall = Image.new("RGB", (40, 80), (255, 255, 255))
    tall.paste((0, 0, 0), (0, 0, 40, 20))  # black band at the top when upright
    stored = tall.transpose(Image.Transpose.ROTATE_90)  # stored sideways: 80 wide, 40 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img = open_image(encode(stored, "JPEG", exif=exif.tobytes(), quality=95))
    assert img.size == (40, 80)
    assert sum(img.getpixel((20, 5))) < 100 and sum(img.getpixel((20, 70))) > 600


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    r, g, b = open_image(out.getvalue()).getpixel((8, 8))
    assert r > 200 and g < 50 and b < 50


def test_webp_decodes() -> None:
    img = open_image(encode(sample_rgb(), "WEBP", quality=90))
    assert img.size == (64, 48) and img.mode == "RGB"


def test_large_jpeg_is_drafted_down_when_asked() -> None:
    big = encode(sample_rgb(2400, 1800), "JPEG")
    img = open_image(big, target_size=224)
    assert 224 <= min(img.size) < 1800 and img.size[0] < 2400


# ---- issue 16 #11: a tRNS colour key becomes white, like alpha -------------------------------
def _keyed_png(mode: str, value: int) -> bytes:
    """A PNG whose transparent colour (tRNS) fills the right half; the left half is dark."""
    if mode == "I;16":
        arr = np.full((16, 16), value, dtype=np.uint16)
        arr[:, :8] = 1000
        img = Image.fromarray(arr)
    else:
        img = Image.new(mode, (16, 16), value)
        img.paste(10 if mode == "L" else 1, (0, 0, 8, 16))
        if mode == "P":
            img.putpalette([0, 0, 0, 20, 20, 20] + [128] * 762)
    out = io.BytesIO()
    img.save(out, format="PNG", transparency=value)
    return out.getvalue()


@pytest.mark.parametrize(("mode", "value"), [("L", 0), ("L", 77), ("I;16", 0), ("I;16", 40000), ("P", 0)])
@pytest.mark.parametrize("target", [None, 4])
def test_greyscale_png_with_a_transparent_colour_is_composited_on_white(mode: str, value: int, target) -> None:
    img = open_image(_keyed_png(mode, value), target_size=target)
    assert img.mode == "RGB"
    right = img.getpixel((img.size[0] - 1, img.size[1] // 2))
    left = img.getpixel((0, img.size[1] // 2))
    assert right == (255, 255, 255), right  # the keyed colour: white, not black (or its grey)
    assert max(left) < 60, left


# ---- issue 16 #4: decoding memory is bounded ----------------------------------------------------
_PEAK_PROBE = """
import sys
from engine.vision.images import open_image, to_jpeg
from PIL import Image
data = open(sys.argv[1], "rb").read()
target = None if sys.argv[2] == "none" else int(sys.argv[2])
open_image(to_jpeg(Image.new("RGB", (8, 8))), target_size=8)  # codecs loaded before the baseline

def status(field):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(field))

before = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
img = open_image(data, target_size=target)
print(status("VmHWM") - before, img.size[0], img.size[1])
"""


def _peak_decode(tmp_path, data: bytes, target: int | None) -> tuple[int, tuple[int, int]]:
    """Peak resident memory added by one open_image call, measured in a fresh process (Pillow's
    buffers come from malloc, which tracemalloc does not see)."""
    import subprocess
    import sys

    picture = tmp_path / "picture"
    picture.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_PROBE, str(picture), str(target or "none")],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    peak, width, height = map(int, done.stdout.split())
    return peak, (width, height)


def _big_rgba_png() -> bytes:
    from PIL import ImageDraw

    img = Image.new("RGBA", (6000, 6000), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    for i in range(0, 6000, 150):
        draw.ellipse([i, i, i + 900, i + 600], fill=(200, 30, 40, 255))
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS reset")
@pytest.mark.parametrize("target", [224, None])
def test_a_small_png_of_huge_rgba_frame_decodes_within_64_mib(tmp_path, target) -> None:
    """~190 KiB, 6000x6000 RGBA (36 M pixels, under the 40 M cap): 549 MiB peak before, now in bands."""
    data = _big_rgba_png()
    assert len(data) < 256 * 1024
    peak, size = _peak_decode(tmp_path, data, target)
    print(f"\n6000x6000 RGBA PNG, target {target}: peak +{peak / 2**20:.0f} MiB, out {size}")
    assert peak <= 64 * 2**20
    assert size == ((462, 462) if target else (2000, 2000))  # about twice the target; else ≤ 2048


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS reset")
def test_a_large_jpeg_without_a_target_is_capped_at_the_working_size(tmp_path) -> None:
    data = encode(sample_rgb(7600, 5200), "JPEG", quality=80)
    peak, size = _peak_decode(tmp_path, data, None)
    assert peak <= 64 * 2**20 and max(size) <= 2048


def test_banded_png_decode_equals_a_full_decode() -> None:
    """The band decoder (each band a small PNG after the previous band's last row) is exact."""
    from engine.vision.images import _reducible, _to_rgb, reduce_factor

    rng = np.random.default_rng(4)
    arr = np.repeat(np.repeat((rng.random((300, 220, 4)) * 255).astype(np.uint8), 10, 0), 10, 1)
    for mode in ("RGBA", "RGB", "L", "LA", "P"):
        src = Image.fromarray(arr, "RGBA")
        src = src.convert("RGB").quantize(64) if mode == "P" else src.convert(mode)
        data = encode(src, "PNG")
        factor = reduce_factor(src.size, 224)
        expected = _to_rgb(_reducible(Image.open(io.BytesIO(data))).reduce(factor))
        got = open_image(data, target_size=224)
        assert got.size == expected.size and np.array_equal(np.asarray(got), np.asarray(expected)), mode


def test_a_frame_too_big_to_decode_in_budget_is_refused() -> None:
    """Formats without reduced decoding (here WebP) must fit one full decode in the budget."""
    img = Image.new("RGB", (4200, 4200), (10, 120, 40))
    with pytest.raises(BadImage, match="too big to open safely"):
        open_image(encode(img, "WEBP", quality=10))
