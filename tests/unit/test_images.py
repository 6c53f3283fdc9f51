"""engine/vision/images.py: hostile input gets a clear BadImage; odd-but-valid input decodes right."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.vision.images import BadImage, open_image
from tests.support.pictures import BAD, encode, png_declaring, sample_rgb


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
