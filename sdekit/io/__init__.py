"""Weight files without torch: PyTorch's ``torch.save`` formats and ``.safetensors``.

Readers never execute anything from a file and check every size, offset and stride against
the bytes the file holds before they read; writers produce files the original tools read.
"""

from ._errors import WeightFileError
from ._safetensors import load_safetensors, save_safetensors
from ._torch import TorchObject, load_torch, save_torch

__all__ = [
    "TorchObject",
    "WeightFileError",
    "load_safetensors",
    "load_torch",
    "save_safetensors",
    "save_torch",
]
