"""Draw ComboStoc's time maps for the docs (``docs/concepts/img/combostoc_time_maps.png``).

One row per mode (``none``, ``channel``, ``position``, ``all``), one tile per channel of an
8x8x3 time tensor from `sdekit.objectives.ComboStoc` (without half-mixing and blending, so the
mode's own draw is shown; black is t = 0 data, white t = 1 noise), and a last row with
``mode="all"`` blended towards the per-example time (ComboStoc's default for the first
half-batch).

    python tools/sit_time_maps.py docs/concepts/img/combostoc_time_maps.png
"""

from __future__ import annotations

import sys

import jax.random as jr
import numpy as np
from PIL import Image, ImageDraw

from sdekit.objectives import ComboStoc, combostoc_times, mode_shape

SCALE, PAD, LABEL = 12, 6, 150


def main(path: str) -> None:
    shape = (1, 8, 8, 3)
    rows = []
    for mode in ("none", "channel", "position", "all"):
        t = ComboStoc(mode, halfmix=False, blend=False)(jr.key(7), shape)
        rows.append((f"{mode}", np.asarray(t[0])))
    k1, k2 = jr.split(jr.key(7))
    t_ori = jr.uniform(k1, (1,))
    t_all = jr.uniform(k2, mode_shape("all", shape))
    rows.append(("all, blended p=0.3", np.asarray(
        combostoc_times(t_ori, t_all, 0.3, shape, halfmix=False)[0])))
    tile = 8 * SCALE
    w = LABEL + 3 * (tile + PAD)
    h = len(rows) * (tile + PAD) + 20
    img = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(img)
    for c in range(3):
        draw.text((LABEL + c * (tile + PAD) + tile // 3, 4), f"channel {c}", fill=0)
    for r, (name, t) in enumerate(rows):
        y = 20 + r * (tile + PAD)
        draw.text((4, y + tile // 2 - 6), name, fill=0)
        for c in range(3):
            a = np.kron(np.clip(t[..., c], 0, 1) * 255, np.ones((SCALE, SCALE))).astype(np.uint8)
            img.paste(Image.fromarray(a, "L"), (LABEL + c * (tile + PAD), y))
    img.save(path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/concepts/img/combostoc_time_maps.png")
