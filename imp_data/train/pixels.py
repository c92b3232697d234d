"""Image bytes to tensors: the loader decodes JPEGs to uint8, the model normalises where it runs.

Shards are already rendered at the tower's resolution, so decoding is the only image work left. Keeping
pixels uint8 until the model moves a quarter of the bytes through the DataLoader's shared memory and the
host-to-GPU copy, which is most of what a worker costs beyond the JPEG decode.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


def decode_image(jpeg: bytes) -> torch.Tensor:
    """JPEG bytes -> uint8 tensor [3, H, W]; no resize (the shards are already at the tower's resolution)."""
    with Image.open(io.BytesIO(jpeg)) as img:
        arr = np.array(img if img.mode == "RGB" else img.convert("RGB"))  # a writable copy for torch
    return torch.from_numpy(arr).permute(2, 0, 1)  # a CHW view of HWC memory; collate's stack makes it NCHW


def normalize_pixels(pixels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images -> `dtype` in [-1, 1] (SigLIP: mean = std = 0.5): x / 127.5 - 1 == (x / 255 - 0.5) / 0.5."""
    return pixels.to(dtype).div_(127.5).sub_(1.0)


def decode_pixels(jpeg: bytes) -> torch.Tensor:
    """JPEG bytes -> float tensor [3, H, W] in [-1, 1], ready for the vision tower.

    Example:
        >>> buf = io.BytesIO(); Image.new("RGB", (4, 2), (255, 0, 0)).save(buf, "PNG")
        >>> decode_pixels(buf.getvalue())[:, 0, 0].tolist()
        [1.0, -1.0, -1.0]
    """
    return normalize_pixels(decode_image(jpeg))
