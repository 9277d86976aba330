"""Float32 error of the reflected heat-kernel score: the reference's formula vs sdekit's.

Dense scan (as in reflected.md section 12): sigma log-spaced in [1e-4, 5], x_0 on [0, 1],
z in [-10, 10], x_t = fold(x_0 + sigma z) (all rounded to float32). The error is
``|sigma (score_float32 - exact)|`` where ``exact`` is sdekit's float64 score at the same float32
inputs (it matches the mpmath values of reflected_reference.json to 2.4e-13 in these units), so
only the arithmetic of each formula is measured, not the rounding of its inputs.

Prints a table per regime and, with ``--plot PATH``, writes a small PNG of the max error per
sigma (log-log) for the docs.

    python benchmarks/reflected_score_error.py --plot docs/recipes/reflected_score_error.png
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from sdekit.processes import fold, heat_kernel_score  # noqa: E402


def scan(n_sigma: int = 60, n_x0: int = 41, n_z: int = 81):
    sig = np.exp(np.linspace(np.log(1e-4), np.log(5.0), n_sigma))
    s, y, z = np.meshgrid(sig, np.linspace(0, 1, n_x0), np.linspace(-10, 10, n_z), indexing="ij")
    x = np.asarray(fold(y + s * z))
    s32, y32, x32 = (a.astype(np.float32) for a in (s, y, x))
    exact = np.asarray(heat_kernel_score(x32.astype(np.float64), y32.astype(np.float64),
                                         s32.astype(np.float64)))
    ours = np.asarray(heat_kernel_score(x32, y32, s32), np.float64)
    ref = np.asarray(heat_kernel_score(x32, y32, s32, reference_compatible=True), np.float64)
    w = s32.astype(np.float64)
    return sig, np.abs(z), s, np.abs(w * (ref - exact)), np.abs(w * (ours - exact))


REGIMES = [
    ("typical, sigma <= 0.1414 (images)", lambda s, z: (s <= 0.1414) & (z <= 4)),
    ("tail 6-8 sigma, sigma <= 0.1414", lambda s, z: (s <= 0.1414) & (z > 6) & (z <= 8)),
    ("far tail > 8 sigma, sigma <= 0.1414", lambda s, z: (s <= 0.1414) & (z > 8)),
    ("0.1414 < sigma <= 0.5, |z| <= 4", lambda s, z: (s > 0.1414) & (s <= 0.5) & (z <= 4)),
    ("0.1414 < sigma <= 0.5, |z| > 4 (cancellation)",
     lambda s, z: (s > 0.1414) & (s <= 0.5) & (z > 4)),
    ("sigma > 0.5", lambda s, z: s > 0.5),
]


def _plot(path, sig, ref_max, our_max):
    from PIL import Image, ImageDraw

    w, h, left, right, top, bottom = 640, 360, 70, 20, 20, 50
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    ylo, yhi = -9, 8
    xlo, xhi = np.log10(sig[0]), np.log10(sig[-1])

    def px(s, e):
        e = np.clip(np.log10(np.maximum(e, 10.0**ylo)), ylo, yhi)
        return (left + (np.log10(s) - xlo) / (xhi - xlo) * (w - left - right),
                top + (yhi - e) / (yhi - ylo) * (h - top - bottom))

    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for e in range(ylo, yhi + 1, 2):
        _, y = px(sig[0], 10.0**e)
        d.line([left - 4, y, left, y], fill="black")
        d.text((8, y - 6), f"1e{e}", fill="black")
    for e in (-4, -3, -2, -1, 0):
        x, _ = px(10.0**e, 1.0)
        d.line([x, h - bottom, x, h - bottom + 4], fill="black")
        d.text((x - 12, h - bottom + 6), f"1e{e}", fill="black")
    d.text((w // 2 - 40, h - 22), "sigma", fill="black")
    _, y3 = px(sig[0], 1e-3)
    d.line([left, y3, w - right, y3], fill=(170, 170, 170))
    for series, colour in ((ref_max, (200, 40, 40)), (our_max, (30, 90, 200))):
        pts = [px(s, e) for s, e in zip(sig, series, strict=True)]
        d.line(pts, fill=colour, width=2)
    d.text((left + 10, top + 6), "max |sigma (score_f32 - exact)|", fill="black")
    d.text((left + 10, top + 22), "reference formula (float32)", fill=(200, 40, 40))
    d.text((left + 10, top + 38), "sdekit (float32)", fill=(30, 90, 200))
    d.text((w - right - 120, y3 - 14), "1e-3 tolerance", fill=(120, 120, 120))
    img.save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plot", default=None, help="write the PNG plot to this path")
    args = ap.parse_args()
    sig, az, s, e_ref, e_our = scan()
    print("| regime | points | reference max | reference median | sdekit max | sdekit median |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, sel in REGIMES:
        m = sel(s, az)
        print(f"| {name} | {int(m.sum())} | {e_ref[m].max():.2e} | {np.median(e_ref[m]):.2e} | "
              f"{e_our[m].max():.2e} | {np.median(e_our[m]):.2e} |")
    print(f"| all | {s.size} | {e_ref.max():.2e} | {np.median(e_ref):.2e} | {e_our.max():.2e} | "
          f"{np.median(e_our):.2e} |")
    if args.plot:
        ref_max = e_ref.reshape(len(sig), -1).max(axis=1)
        our_max = e_our.reshape(len(sig), -1).max(axis=1)
        _plot(args.plot, sig, ref_max, our_max)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
