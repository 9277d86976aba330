"""SiT's and ComboStoc's DiT (``willisma/SiT`` and ``Xrvitd/ComboStoc``, ``models.py``) as
sdekit's [`DiT`][sdekit.nets.DiT]: arch ``"sit_dit"``.

The original module (names as in its ``state_dict()``):

- ``pos_embed`` ``(1, T, D)``: the fixed 2-D sine-cosine positions (a frozen parameter);
  sdekit computes them for the actual grid, so the stored copy is checked, not kept;
- ``x_embedder.proj``: the patch embedding, a ``p x p`` stride-``p`` convolution, which is
  sdekit's linear map of flattened ``(row, column, channel)`` patches;
- ``t_embedder.mlp.{0,2}``: SiT's per-example time MLP; ComboStoc's per-element embedder
  instead has ``t_embedder.mlp.{0,2}`` (``256 -> 4 -> 4``) and ``t_embedder.patchEmb.proj``
  (sdekit's [`ElementTimeEmbedding`][sdekit.nets.ElementTimeEmbedding]);
- ``y_embedder.embedding_table`` ``(num_classes + 1, D)``: class embeddings, the last row
  the null class of classifier-free guidance;
- ``blocks.{i}``: ``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``,
  ``adaLN_modulation.1``;
- ``final_layer.linear`` and ``final_layer.adaLN_modulation.1``.

**Conventions** (``convention="sdekit"``, the default): the network is built with
``time_scale=-1, time_shift=1, output_scale=-1``, so it takes sdekit's time (``t = 0`` data)
and returns sdekit's velocity ``dx/dt`` of [`Interpolant`][sdekit.processes.Interpolant]
(SiT's time is ``1 - t`` and its velocity points the other way). ``convention="original"``
keeps the original's function exactly (SiT's time in, SiT's velocity out). The learned-sigma
channels (``learn_sigma=True``, the released 256 x 256 models) stay in the final layer and are
dropped from the output, as SiT does.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import numpy as np

from ..._validate import arg_error
from .._dit import DiT, sincos_pos_embed_2d
from ._arch import AbstractRuleArch, TorchRule

_SIZES = {"XL": (28, 1152, 16), "L": (24, 1024, 16), "B": (12, 768, 12), "S": (12, 384, 6)}

CONVENTIONS: dict[str, tuple[float, float, float]] = {
    "sdekit": (-1.0, 1.0, -1.0),
    "original": (1.0, 0.0, 1.0),
}
"""``convention -> (time_scale, time_shift, output_scale)`` of the built
[`DiT`][sdekit.nets.DiT]."""

POS_EMBED_ATOL = 1e-5
"""How far a checkpoint's ``pos_embed`` may be from the sine-cosine table sdekit computes."""


def _presets() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for family, combo in (("SiT", False), ("ComboStoc", True)):
        for size, (depth, width, heads) in _SIZES.items():
            for p in (2, 4, 8):
                out[f"{family}-{size}/{p}"] = dict(
                    depth=depth, hidden_size=width, num_heads=heads, patch_size=p,
                    combostoc=combo)
    # the 512 x 512 SiT-XL/2 of SiT's sample.py: learn_sigma = (image_size == 256)
    out["SiT-XL/2-512"] = dict(out["SiT-XL/2"], input_size=64, learn_sigma=False)
    # fixture-sized (tests and --smoke runs; not released): 8 x 8 x 4 latents, 10 classes
    smoke = dict(input_size=8, patch_size=2, hidden_size=32, depth=2, num_heads=2,
                 num_classes=10)
    out["SiT-smoke"] = dict(smoke, combostoc=False)
    out["ComboStoc-smoke"] = dict(smoke, combostoc=True)
    return out


def patch_to_linear(w: np.ndarray) -> np.ndarray:
    """A patch-embedding convolution ``(D, C, p, p)`` as the linear map ``(p * p * C, D)`` of
    patches flattened in ``(row, column, channel)`` order."""
    w = np.asarray(w)
    d, c, p, q = w.shape
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(p * q * c, d))


def linear_to_patch(w: np.ndarray, p: int) -> np.ndarray:
    """Inverse of `patch_to_linear` for patch size ``p``."""
    w = np.asarray(w)
    c = w.shape[0] // (p * p)
    return np.ascontiguousarray(w.reshape(p, p, c, w.shape[1]).transpose(3, 2, 0, 1))


def _lin(name: str, fin: int, fout: int, leaf) -> list[TorchRule]:
    return [TorchRule.one(f"{name}.weight", (fout, fin), lambda n: leaf(n).weight, "linear"),
            TorchRule.one(f"{name}.bias", (fout,), lambda n: leaf(n).bias)]


def _patch(name: str, cin: int, width: int, p: int, leaf) -> list[TorchRule]:
    return [
        TorchRule((f"{name}.weight",), ((width, cin, p, p),), lambda n: (leaf(n).weight,),
                  lambda w: (patch_to_linear(w),), lambda w: (linear_to_patch(w, p),)),
        TorchRule.one(f"{name}.bias", (width,), lambda n: leaf(n).bias),
    ]


class SiTArch(AbstractRuleArch):
    """Arch ``"sit_dit"``: SiT's and ComboStoc's DiT (see the module docstring).

    Configuration keys (the original constructor's, plus two): ``input_size`` (latent size,
    32 for 256 x 256 images), ``patch_size``, ``in_channels``, ``hidden_size``, ``depth``,
    ``num_heads``, ``mlp_ratio``, ``class_dropout_prob`` (> 0: the null class exists),
    ``num_classes``, ``learn_sigma``, ``combostoc`` (ComboStoc's per-element time embedder)
    and ``convention`` (``"sdekit"`` or ``"original"``). Presets ``SiT-{S,B,L,XL}/{2,4,8}``,
    ``ComboStoc-{S,B,L,XL}/{2,4,8}`` (256 x 256, ``learn_sigma=True`` as in their ``train.py``)
    and ``SiT-XL/2-512``; ``SiT-smoke`` and ``ComboStoc-smoke`` are fixture-sized (not
    released).
    """

    name = "sit_dit"
    description = "SiT / ComboStoc DiT (willisma/SiT, Xrvitd/ComboStoc models.py)"
    defaults = dict(input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28,
                    num_heads=16, mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000,
                    learn_sigma=True, combostoc=False, convention="sdekit")
    presets = _presets()

    def check_config(self, config: dict[str, Any]) -> None:
        for k in ("input_size", "patch_size", "in_channels", "hidden_size", "depth",
                  "num_heads", "num_classes"):
            v = config[k]
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise arg_error(k, v, "a positive integer")
        if config["input_size"] % config["patch_size"]:
            raise arg_error("input_size", config["input_size"],
                            f"a multiple of patch_size={config['patch_size']}")
        if not float(config["class_dropout_prob"]) > 0:
            raise arg_error("class_dropout_prob", config["class_dropout_prob"],
                            "a value > 0 (the original then keeps a null-class row, which "
                            "sdekit's DiT always has)")
        for k in ("learn_sigma", "combostoc"):
            if not isinstance(config[k], bool):
                raise arg_error(k, config[k], "True or False")
        if config["convention"] not in CONVENTIONS:
            raise arg_error("convention", config["convention"], "'sdekit' or 'original'")

    def dit_kwargs(self, config: dict[str, Any]) -> dict[str, Any]:
        """The [`DiT`][sdekit.nets.DiT] keyword arguments of ``config``."""
        ts, sh, os_ = CONVENTIONS[config["convention"]]
        return dict(in_channels=int(config["in_channels"]),
                    out_channels=int(config["in_channels"]),
                    patch_size=int(config["patch_size"]), width=int(config["hidden_size"]),
                    depth=int(config["depth"]), num_heads=int(config["num_heads"]),
                    mlp_ratio=float(config["mlp_ratio"]), num_classes=int(config["num_classes"]),
                    learn_sigma=bool(config["learn_sigma"]),
                    element_time=bool(config["combostoc"]), time_scale=ts, time_shift=sh,
                    output_scale=os_, freq_dim=256)

    def build(self, config: dict[str, Any], key: Any) -> eqx.Module:
        return DiT(key=key, **self.dit_kwargs(config))

    def net_spec(self, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "dit_tiny", self.dit_kwargs(config)

    def config_of(self, net: eqx.Module) -> dict[str, Any]:
        if not isinstance(net, DiT):
            raise arg_error("net", type(net).__name__, "a DiT (arch 'sit_dit')")
        if net.num_classes is None:
            raise arg_error("net", "an unconditional DiT", "a class-conditional DiT "
                            "(num_classes set), as SiT's")
        if net.freq_dim != 256 or net.out_channels != net.in_channels:
            raise arg_error("net", f"a DiT with freq_dim={net.freq_dim}, out_channels="
                            f"{net.out_channels}", "freq_dim=256 and out_channels=in_channels "
                            "(SiT's)")
        got = (net.time_scale, net.time_shift, net.output_scale)
        conv = [k for k, v in CONVENTIONS.items() if v == got]
        if not conv:
            raise arg_error("net", f"a DiT with (time_scale, time_shift, output_scale) = {got}",
                            "(-1, 1, -1) (convention 'sdekit') or (1, 0, 1) ('original')")
        hidden = int(net.blocks[0].fc1.weight.shape[-1])
        return dict(self.defaults, patch_size=net.patch_size, in_channels=net.in_channels,
                    hidden_size=net.width, depth=net.depth, num_heads=net.num_heads,
                    mlp_ratio=hidden / net.width, num_classes=net.num_classes,
                    learn_sigma=net.learn_sigma, combostoc=net.element_time is not None,
                    convention=conv[0])

    def rules(self, config: dict[str, Any]) -> list[TorchRule]:
        c, p, d = config["in_channels"], config["patch_size"], config["hidden_size"]
        g = config["input_size"] // p
        hidden = int(d * float(config["mlp_ratio"]))
        fc = 2 * c if config["learn_sigma"] else c
        pos = sincos_pos_embed_2d(d, g, g)[None]

        def check_pos(w):
            w = np.asarray(w, np.float32)
            dev = float(np.max(np.abs(w - pos)))
            if not dev <= POS_EMBED_ATOL:
                raise ValueError(
                    f"argument `source`: tensor 'pos_embed' is not SiT's fixed sine-cosine "
                    f"position table (largest deviation {dev:.3g}, allowed "
                    f"{POS_EMBED_ATOL}): the checkpoint is of another model")
            return ()

        rules = [TorchRule(("pos_embed",), (pos.shape,), lambda n: (), check_pos,
                           lambda: (pos.copy(),), ("frozen",))]
        rules += _patch("x_embedder.proj", c, d, p, lambda n: n.patch)
        if config["combostoc"]:
            et = lambda n: n.element_time  # noqa: E731
            rules += _lin("t_embedder.mlp.0", 256, 4, lambda n: et(n).mlp0)
            rules += _lin("t_embedder.mlp.2", 4, 4, lambda n: et(n).mlp1)
            rules += _patch("t_embedder.patchEmb.proj", 4 * c, d, p, lambda n: et(n).patch)
        else:
            rules += _lin("t_embedder.mlp.0", 256, d, lambda n: n.t_mlp0)
            rules += _lin("t_embedder.mlp.2", d, d, lambda n: n.t_mlp1)
        rules.append(TorchRule.one("y_embedder.embedding_table.weight",
                                   (config["num_classes"] + 1, d), lambda n: n.label_emb))
        for i in range(config["depth"]):
            b = lambda n, i=i: n.blocks[i]  # noqa: E731
            pre = f"blocks.{i}"
            rules += _lin(f"{pre}.attn.qkv", d, 3 * d, lambda n, b=b: b(n).qkv)
            rules += _lin(f"{pre}.attn.proj", d, d, lambda n, b=b: b(n).proj)
            rules += _lin(f"{pre}.mlp.fc1", d, hidden, lambda n, b=b: b(n).fc1)
            rules += _lin(f"{pre}.mlp.fc2", hidden, d, lambda n, b=b: b(n).fc2)
            rules += _lin(f"{pre}.adaLN_modulation.1", d, 6 * d, lambda n, b=b: b(n).ada)
        rules += _lin("final_layer.linear", d, p * p * fc, lambda n: n.final)
        rules += _lin("final_layer.adaLN_modulation.1", d, 2 * d, lambda n: n.final_ada)
        return rules


__all__ = ["CONVENTIONS", "POS_EMBED_ATOL", "SiTArch", "linear_to_patch",
           "patch_to_linear"]
