"""Named configurations of the equivariant UNet (part of ``sdekit.nets.NET_CONFIGS``)."""

from __future__ import annotations

from typing import Any

ARCH = "equivariant_unet"

_MNIST = dict(arch=ARCH, in_channels=1, ch_mult=(1, 2, 4), num_res_blocks=1,
              attn_resolutions=(28,), image_size=28, dropout=0.1, num_classes=10, num_heads=2,
              num_groups=32, time_scale=1000.0)
_LYSTO = dict(arch=ARCH, in_channels=3, ch_mult=(1, 2, 2, 2), num_res_blocks=1,
              attn_resolutions=(32, 16, 8), image_size=64, dropout=0.1, num_classes=3,
              num_heads=2, num_groups=32, time_scale=1000.0)

EQUIVARIANT_CONFIGS: dict[str, dict[str, Any]] = {
    # The paper's C4-MNIST "weight-tied" model (Lu, Szabados & Yu 2024, sections 4 and 7):
    # invariant-kernel scalar fields, 64 base channels, mult 1,2,4, one res block, attention at
    # 28x28, 32 channels per head at the first level, 10 classes. (The paper feeds RGB copies of
    # the digit; here one channel.)
    "sp_mnist_invariant": dict(_MNIST, group="C4", kind="invariant", nf=64),
    # Regular-field group CNNs of the same channel width (64 = 16 C4 fields = 8 D4 fields).
    "sp_mnist_c4": dict(_MNIST, group="C4", kind="regular", nf=16),
    "sp_mnist_d4": dict(_MNIST, group="D4", kind="regular", nf=8),
    # The paper's LYSTO 64x64 model (D4, 3 organ classes): invariant kernels, 64 base channels,
    # mult 1,2,2,2, one res block, attention at 32, 16 and 8.
    "sp_lysto64_invariant": dict(_LYSTO, group="D4", kind="invariant", nf=64),
    "sp_lysto64_d4": dict(_LYSTO, group="D4", kind="regular", nf=8),
    # Tiny, for tests and CPU smoke runs.
    "equivariant_tiny": dict(arch=ARCH, group="C4", kind="regular", in_channels=1, nf=4,
                             ch_mult=(1, 2), num_res_blocks=1, attn_at_lowest=True,
                             image_size=16, dropout=0.0, num_groups=4, time_scale=1000.0),
}
"""Named equivariant UNets (part of [`NET_CONFIGS`][sdekit.nets.NET_CONFIGS] under
``arch="equivariant_unet"``, so [`named_net`][sdekit.nets.named_net] builds them)."""


__all__ = ["ARCH", "EQUIVARIANT_CONFIGS"]
