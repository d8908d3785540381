#!/usr/bin/env python3
"""Writes the small synthetic images the decoder tests read (Tests/PetriDataTests/Fixtures/).

Every image is W=5 × H=4 with a known pattern, so tests compute the expected pixels themselves:
  RGB pixel (x, y) = (40·x, 50·y, 20·(x+y));  grey pixel (x, y) = 10·x + 60·y;
  16-bit grey (x, y) = 1000 + 3000·x + 5000·y  (Petri stretches min…max to 0…255).
Run with Debian's python3-pil and python3-numpy: /usr/bin/python3 scripts/reference/make_image_fixtures.py
"""
import io
import os

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "PetriDataTests", "Fixtures")
W, H = 5, 4
ys, xs = np.mgrid[0:H, 0:W]
rgb = np.stack([40 * xs, 50 * ys, 20 * (xs + ys)], axis=-1).astype(np.uint8)
grey = (10 * xs + 60 * ys).astype(np.uint8)
grey16 = (1000 + 3000 * xs + 5000 * ys).astype(np.uint16)


def save(img, name, **kw):
    img.save(os.path.join(OUT, name), **kw)


save(Image.fromarray(rgb), "rgb.png")
save(Image.fromarray(grey), "grey.png")
save(Image.fromarray(grey16.astype(np.int32), mode="I").convert("I;16"), "grey16.png")
rgba = np.concatenate([rgb, np.full((H, W, 1), 128, np.uint8)], axis=-1)
save(Image.fromarray(rgba, "RGBA"), "rgba.png")
save(Image.fromarray(rgb).quantize(colors=256, method=Image.Quantize.FASTOCTREE), "palette.png")
save(Image.fromarray(rgb), "rgb.tif")
save(Image.fromarray(grey16), "grey16.tif")
second = Image.fromarray(255 - rgb)
Image.fromarray(rgb).save(os.path.join(OUT, "two-pages.tif"), save_all=True, append_images=[second])
save(Image.fromarray(rgb), "rgb.bmp")
save(Image.fromarray(grey).convert("P"), "palette.bmp")
save(Image.fromarray(rgb), "rgb-q100.jpg", quality=100, subsampling=0)
save(Image.fromarray(rgb).convert("CMYK"), "cmyk.jpg", quality=100)

# A real photo-sized JPEG cut short: the decoder must refuse it, not return a half-grey image.
buf = io.BytesIO()
Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
data = buf.getvalue()
with open(os.path.join(OUT, "truncated.jpg"), "wb") as f:
    f.write(data[: len(data) // 2])
with open(os.path.join(OUT, "rgb.png"), "rb") as f:
    png = f.read()
with open(os.path.join(OUT, "truncated.png"), "wb") as f:
    f.write(png[: len(png) - 30])
with open(os.path.join(OUT, "not-an-image.png"), "wb") as f:
    f.write(b"this is a text file, not a PNG\n")
open(os.path.join(OUT, "empty.jpg"), "wb").close()
