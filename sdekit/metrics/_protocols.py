"""Metric protocols: each reproduces one tool's full path from images to numbers.

A protocol fixes everything that moves an FID by more than the gaps between papers: how images
become the tool's pixel values (uint8 quantisation or not), the resize to 299 x 299, grey to
RGB, the scaling into the network, which weight file (and module layout) the Inception network
is read from, and the statistics (means, covariances, the matrix square root, KID's subsets and
kernel arithmetic, IS's splits). Each is written from the tool's documented behaviour and source
and tested against the tool's own output (``tests/test_metrics_protocols.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ._resize import RESIZE_KINDS, resize_images


@dataclasses.dataclass(frozen=True)
class KIDRule:
    """How a tool computes KID (Bińkowski et al. 2018): the unbiased MMD^2 with the cubic
    polynomial kernel ``(x . y / d + 1)^3``, averaged over random subsets.

    Attributes:
        subsets: number of subsets.
        subset_size: rows drawn from each set per subset.
        seed: the seed of ``numpy.random.RandomState`` the subsets are drawn from.
        style: ``"torch-fidelity"`` (per subset set 1's rows, then set 2's; the subset size must
            not exceed either set; kernel and sums in float32; returns mean and population
            std) or ``"clean-fid"`` (set 2's rows, then set 1's; the subset size is cut to the
            smaller set; float32; returns the mean only).
    """

    subsets: int
    subset_size: int
    seed: int
    style: str


@dataclasses.dataclass(frozen=True)
class ISRule:
    """How a tool computes the Inception Score (Salimans et al. 2016).

    Attributes:
        splits: the set is cut into this many consecutive chunks (``i * n // splits``).
        shuffle_seed: rows are permuted by ``RandomState(shuffle_seed).permutation(n)`` first
            (``None``: no shuffle).
    """

    splits: int
    shuffle_seed: int | None


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One tool's path from images to FID / KID / IS, reproduced.

    Use a protocol through its name (``protocol="torch-fidelity"`` wherever sdekit.metrics takes
    one) or get the object with `get_protocol`. The registered ones are in `PROTOCOLS`:

    - ``"pytorch-fid"`` (pytorch-fid 0.3.0): images as ``uint8 / 255`` (float images as given,
      mapped to [0, 1]), ``F.interpolate`` bilinear to 299 without antialiasing, ``2 x - 1``,
      pytorch-fid's Inception file; FID with ``scipy.linalg.sqrtm`` (``eps = 1e-6`` added to
      the diagonals when the product's root is not finite). No IS or KID in this tool.
    - ``"torch-fidelity"`` (torch-fidelity 0.4.0): uint8 images only (float images are
      quantised), TensorFlow-1 bilinear resize, ``(x - 128) / 128``, the same Inception file;
      FID with eigenvalues of ``S1 S2``; KID 100 subsets of 1000 from ``RandomState(2020)``;
      IS on the bias-free logits, 10 splits after a ``RandomState(2020)`` shuffle.
    - ``"clean-fid"`` (clean-fid 0.1.35, ``mode="clean"``): Pillow bicubic resize of each channel
      as a float image, clipped to [0, 255], ``(x - 128) / 128``, NVIDIA's TorchScript
      Inception; FID with ``sqrtm``; KID 100 subsets of up to 1000 (clean-fid draws from
      numpy's global state: sdekit draws from ``RandomState(0)``, i.e. what clean-fid gives
      after ``numpy.random.seed(0)``). No IS.
    - ``"clean-fid-legacy-tf"`` (clean-fid, ``mode="legacy_tensorflow"``): as ``"clean-fid"``
      but the resize is the TensorFlow-1 bilinear one inside the TorchScript network (no clip).

    Attributes:
        name: the protocol's name.
        tool: the tool and version it reproduces.
        weight_format: the Inception weight file read (see `load_inception`).
        resize: the resize to 299 (a kind of `sdekit.metrics.resize_matrix`).
        pixel_scale: ``"unit"`` (values / 255, resize, ``2 x - 1``) or ``"tf"`` (resize on
            [0, 255], then ``(x - 128) / 128``).
        clip_after_resize: clip the resized image to [0, 255] (clean-fid's Pillow path).
        uint8_only: the tool only takes uint8 images; float images are quantised first.
        fid_method: ``"sqrtm"`` or ``"eigvals"`` (see `frechet_distance`).
        mean_dtype: dtype the tool averages features in (``"float64"`` or ``"float32"``).
        kid: the tool's KID, or ``None`` if it has none.
        inception_score: the tool's IS, or ``None`` if it has none.
        papers: the papers whose numbers were measured with this tool.
    """

    name: str
    tool: str
    weight_format: str
    resize: str
    pixel_scale: str
    clip_after_resize: bool
    uint8_only: bool
    fid_method: str
    mean_dtype: str
    kid: KIDRule | None
    inception_score: ISRule | None
    papers: tuple[str, ...] = ()

    def __post_init__(self):
        if self.resize not in RESIZE_KINDS:
            raise ValueError(f"argument `resize`: got {self.resize!r}, expected one of "
                             f"{RESIZE_KINDS}.")
        if self.pixel_scale not in ("unit", "tf"):
            raise ValueError(f"argument `pixel_scale`: got {self.pixel_scale!r}, expected "
                             "'unit' or 'tf'.")
        if self.fid_method not in ("sqrtm", "eigvals"):
            raise ValueError(f"argument `fid_method`: got {self.fid_method!r}, expected "
                             "'sqrtm' or 'eigvals'.")
        if self.weight_format not in ("pytorch-fid", "nvidia-torchscript"):
            raise ValueError(f"argument `weight_format`: got {self.weight_format!r}, expected "
                             "'pytorch-fid' or 'nvidia-torchscript'.")

    # ------------------------------------------------------------------ images -> network input

    def pixels(self, images: Any, *, quantize: str | None = None,
               name: str = "images") -> np.ndarray:
        """NHWC images as the float32 pixel values (in [0, 255]) the tool starts from.

        uint8 images are taken as they are. Float images must be in [-1, 1] (checked, with a
        1e-3 tolerance, then clipped); they become ``(x + 1) * 127.5`` unquantised, or are
        first quantised to uint8 when ``quantize`` asks for it or the tool only takes uint8.

        Args:
            images: ``(n, h, w, c)`` uint8, or float in [-1, 1]; ``c`` is 1 (grey, repeated
                to RGB as the tools' ``convert("RGB")`` does) or 3.
            quantize: for float images: ``"round"`` (``round((x + 1) * 127.5)``), ``"truncate"``
                (``floor``, as ``astype(uint8)`` after ``clip(255 (x / 2 + 1/2))``), ``"none"``
                (keep the float values; refused by uint8-only tools), or ``None`` (the tool's
                own behaviour: ``"round"`` for uint8-only tools, else ``"none"``).
            name: the argument's name in error messages.

        Returns:
            float32 ``(n, h, w, 3)`` in [0, 255].
        """
        a = np.asarray(images)
        if a.ndim != 4 or a.shape[-1] not in (1, 3):
            raise ValueError(f"argument `{name}`: got shape {a.shape}, expected NHWC images "
                             "with 1 or 3 channels.")
        if quantize not in (None, "round", "truncate", "none"):
            raise ValueError(f"argument `quantize`: got {quantize!r}, expected None, 'round', "
                             "'truncate' or 'none'.")
        if a.dtype == np.uint8:
            px = a.astype(np.float32)
        elif np.issubdtype(a.dtype, np.floating):
            check_unit_range(a, name)
            q = quantize or ("round" if self.uint8_only else "none")
            if q == "none" and self.uint8_only:
                raise ValueError(
                    f"argument `quantize`: got 'none', but {self.tool} only takes uint8 images "
                    "(protocol {!r}); use 'round' or 'truncate'.".format(self.name))
            x = np.clip(a.astype(np.float32), -1.0, 1.0)
            if q == "none":
                px = (x + np.float32(1.0)) * np.float32(127.5)
            else:
                v = (x.astype(np.float64) + 1.0) * 127.5
                v = np.rint(v) if q == "round" else np.floor(v)
                px = np.clip(v, 0, 255).astype(np.float32)
        else:
            raise ValueError(f"argument `{name}`: got dtype {a.dtype}, expected uint8 or float.")
        if px.shape[-1] == 1:
            px = np.repeat(px, 3, axis=-1)
        return px

    def network_input(self, pixels: Any, size: int = 299):
        """The tool's resize and scaling of pixel values (float32, [0, 255]) into the network
        input ``(n, size, size, 3)`` (a JAX array; runs under ``jit``)."""
        import jax.numpy as jnp

        x = jnp.asarray(pixels, jnp.float32)
        if x.shape[-1] == 1:
            x = jnp.repeat(x, 3, axis=-1)
        if self.pixel_scale == "unit":
            x = x / jnp.float32(255.0)
        x = resize_images(x, self.resize, size)
        if self.clip_after_resize:
            x = jnp.clip(x, 0.0, 255.0)
        if self.pixel_scale == "unit":
            return jnp.float32(2.0) * x - jnp.float32(1.0)
        return (x - jnp.float32(128.0)) / jnp.float32(128.0)

    # ------------------------------------------------------------------ statistics

    def statistics(self, features: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, covariance)`` of ``(n, d)`` features as the tool computes them: the mean in
        the tool's dtype, the unbiased covariance (``numpy.cov``) in float64.

        Args:
            features: ``(n, d)``, n >= 2.
        """
        from ._stats import _as_2d, warn_rank_deficient

        f = _as_2d("features", features)
        warn_rank_deficient(f.shape[0], f.shape[1], "features")
        mu = np.mean(np.asarray(features, self.mean_dtype), axis=0)
        return mu, np.cov(f, rowvar=False)

    def frechet_distance(self, mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, *,
                         method: str = "tool") -> float:
        """The tool's Fréchet distance between two Gaussians.

        Args:
            mu1: mean of set 1.
            sigma1: covariance of set 1.
            mu2: mean of set 2.
            sigma2: covariance of set 2.
            method: ``"tool"`` (the tool's own computation: ``sqrtm`` or ``eigvals``) or
                ``"eigh"`` (same value, several times faster; see `frechet_distance`).
        """
        from ._stats import covariance_term

        if method not in ("tool", "eigh"):
            raise ValueError(f"argument `method`: got {method!r}, expected 'tool' or 'eigh'.")
        m = self.fid_method if method == "tool" else "eigh"
        return self._mean_term(mu1, mu2) + covariance_term(sigma1, sigma2, method=m)

    def _mean_term(self, mu1: Any, mu2: Any) -> float:
        dt = np.dtype(self.mean_dtype)
        a, b = np.atleast_1d(np.asarray(mu1)), np.atleast_1d(np.asarray(mu2))
        if a.shape != b.shape or a.ndim != 1:
            raise ValueError(f"arguments `mu1` and `mu2`: got shapes {a.shape} and {b.shape}, "
                             "expected two (d,) means.")
        diff = a.astype(dt) - b.astype(dt)
        return float(diff.dot(diff))

    def fid(self, features1: Any, features2: Any, *, method: str = "tool") -> float:
        """FID between two feature sets, computed the tool's way.

        Args:
            features1: ``(n1, 2048)`` features of set 1.
            features2: ``(n2, 2048)`` features of set 2.
            method: ``"tool"`` (the tool's computation, e.g. ``scipy.linalg.sqrtm`` on the
                2048 x 2048 product: minutes on a small CPU), or ``"fast"``: the same trace of
                ``(S1 S2)^(1/2)``, as the nuclear norm of ``A B^T`` (``S1 = A^T A``,
                ``S2 = B^T B``) when a set has fewer rows than the dimension, else with
                ``"eigh"``. They agree to round-off, unless the tool's ``sqrtm`` fails and falls
                back to adding ``eps * I``.
        """
        from ._stats import _as_2d, trace_sqrt_product_lowrank

        if method not in ("tool", "fast"):
            raise ValueError(f"argument `method`: got {method!r}, expected 'tool' or 'fast'.")
        mu1, s1 = self.statistics(features1)
        mu2, s2 = self.statistics(features2)
        if method == "tool":
            return self.frechet_distance(mu1, s1, mu2, s2)
        f1, f2 = _as_2d("features1", features1), _as_2d("features2", features2)
        if f1.shape[1] != f2.shape[1]:
            raise ValueError(f"arguments `features1` and `features2`: {f1.shape[1]} and "
                             f"{f2.shape[1]} features, expected the same.")
        if min(f1.shape[0], f2.shape[0]) <= f1.shape[1]:
            return (self._mean_term(mu1, mu2) + float(np.trace(s1) + np.trace(s2))
                    - 2.0 * trace_sqrt_product_lowrank(f1, f2))
        return self.frechet_distance(mu1, s1, mu2, s2, method="eigh")

    def kernel_inception_distance(self, features1: Any, features2: Any, *,
                                  subsets: int | None = None, subset_size: int | None = None,
                                  seed: int | None = None) -> tuple[float, float | None]:
        """KID computed the tool's way (see `KIDRule`).

        Args:
            features1: ``(n1, d)`` features of set 1 (the generated set in both tools).
            features2: ``(n2, d)`` features of set 2.
            subsets: overrides the tool's number of subsets.
            subset_size: overrides the tool's subset size.
            seed: overrides the tool's seed.

        Returns:
            ``(mean, std)``; ``std`` is ``None`` for clean-fid, which reports none.
        """
        from ._stats import kid_clean_fid, kid_torch_fidelity

        rule = self.kid
        if rule is None:
            have = [p.name for p in PROTOCOLS.values() if p.kid is not None]
            raise ValueError(f"protocol {self.name!r}: {self.tool} computes no KID; protocols "
                             f"with one: {have}.")
        kw = dict(subsets=rule.subsets if subsets is None else subsets,
                  subset_size=rule.subset_size if subset_size is None else subset_size,
                  seed=rule.seed if seed is None else seed)
        if rule.style == "torch-fidelity":
            return kid_torch_fidelity(features1, features2, **kw)
        return kid_clean_fid(features1, features2, **kw), None

    def inception_score_of(self, logits: Any, *, splits: int | None = None) -> tuple[float, float]:
        """The tool's Inception Score of bias-free logits (see `ISRule`).

        Args:
            logits: ``(n, 1008)`` ``pool3 @ fc.weight.T`` (`InceptionFeatures` returns them).
            splits: overrides the tool's number of splits.

        Returns:
            ``(mean, std)`` over the splits.
        """
        from ._stats import inception_score

        rule = self.inception_score
        if rule is None:
            have = [p.name for p in PROTOCOLS.values() if p.inception_score is not None]
            raise ValueError(f"protocol {self.name!r}: {self.tool} computes no Inception Score; "
                             f"protocols with one: {have}.")
        return inception_score(logits, splits=rule.splits if splits is None else splits,
                               shuffle_seed=rule.shuffle_seed)


def check_unit_range(a: np.ndarray, name: str) -> None:
    """Raise unless float images ``a`` are finite and within [-1, 1] (1e-3 tolerance)."""
    if a.size == 0:
        return
    lo, hi = float(np.min(a)), float(np.max(a))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"argument `{name}`: float images contain NaN or inf; expected values "
                         "in [-1, 1].")
    if lo < -1.001 or hi > 1.001:
        hint = (" (they look like [0, 255] pixel values: pass uint8, or x / 127.5 - 1)"
                if hi > 2.0 else
                " (they look like [0, 1] images: pass 2 x - 1)" if lo >= -1e-3 and hi <= 1.001
                else "")
        raise ValueError(f"argument `{name}`: float images must be in [-1, 1], found values in "
                         f"[{lo:.4g}, {hi:.4g}]{hint}.")


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="pytorch-fid", tool="pytorch-fid 0.3.0", weight_format="pytorch-fid",
            resize="torch-bilinear", pixel_scale="unit", clip_after_resize=False,
            uint8_only=False, fid_method="sqrtm", mean_dtype="float64", kid=None,
            inception_score=None,
            papers=("VDPM (v-diffusion-torch's copy of pytorch-fid)",
                    "structure-preserving diffusion (Group-Diffusion's copy of pytorch-fid)",
                    "ComboStoc (README: PyTorch-FID)")),
        Protocol(
            name="torch-fidelity", tool="torch-fidelity 0.4.0", weight_format="pytorch-fid",
            resize="tf1-bilinear", pixel_scale="tf", clip_after_resize=False, uint8_only=True,
            fid_method="eigvals", mean_dtype="float32",
            kid=KIDRule(subsets=100, subset_size=1000, seed=2020, style="torch-fidelity"),
            inception_score=ISRule(splits=10, shuffle_seed=2020),
            papers=("PSLD (README and paper: torch-fidelity)",)),
        Protocol(
            name="clean-fid", tool="clean-fid 0.1.35 (mode='clean')",
            weight_format="nvidia-torchscript", resize="pil-bicubic", pixel_scale="tf",
            clip_after_resize=True, uint8_only=False, fid_method="sqrtm", mean_dtype="float32",
            kid=KIDRule(subsets=100, subset_size=1000, seed=0, style="clean-fid"),
            inception_score=None),
        Protocol(
            name="clean-fid-legacy-tf", tool="clean-fid 0.1.35 (mode='legacy_tensorflow')",
            weight_format="nvidia-torchscript", resize="tf1-bilinear", pixel_scale="tf",
            clip_after_resize=False, uint8_only=False, fid_method="sqrtm",
            mean_dtype="float32",
            kid=KIDRule(subsets=100, subset_size=1000, seed=0, style="clean-fid"),
            inception_score=None),
    )
}
_ALIASES = {"pytorch_fid": "pytorch-fid", "torch_fidelity": "torch-fidelity",
            "clean": "clean-fid", "cleanfid": "clean-fid", "clean_fid": "clean-fid",
            "legacy_tensorflow": "clean-fid-legacy-tf", "clean-fid-legacy-tensorflow":
            "clean-fid-legacy-tf", "clean_fid_legacy_tf": "clean-fid-legacy-tf"}


def get_protocol(protocol: Protocol | str) -> Protocol:
    """The `Protocol` of a name (``"pytorch-fid"``, ``"torch-fidelity"``, ``"clean-fid"``,
    ``"clean-fid-legacy-tf"``; case and ``_``/``-`` do not matter), or the protocol itself.

    Args:
        protocol: a name or a `Protocol`.
    """
    if isinstance(protocol, Protocol):
        return protocol
    if isinstance(protocol, str):
        key = protocol.strip().lower()
        key = _ALIASES.get(key, key)
        if key in PROTOCOLS:
            return PROTOCOLS[key]
    raise ValueError(f"argument `protocol`: got {protocol!r}, expected one of "
                     f"{list(PROTOCOLS)} or a sdekit.metrics.Protocol.")
