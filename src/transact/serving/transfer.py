"""One host-to-device copy per request: pack every input into one buffer, split on device.

Paper 3.4.2 ("combine memory copies"): copying hundreds of small tensors one by one makes
the copy scheduling the bottleneck on a GPU. :func:`pack` lays every tensor's bytes into
one contiguous ``uint8`` buffer (pinned when the target is CUDA, so the copy is async),
:func:`to_device_packed` copies it once and returns views of the device buffer with the
original dtypes and shapes. :func:`to_device_plain` is the reference: one copy per tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

_ALIGN = 16  # every slice starts on a 16-byte boundary so dtype views are legal and aligned


@dataclass(frozen=True)
class PackedLayout:
    """Where each tensor lives in a packed buffer: ``(dtype, shape, byte offset)`` each."""

    entries: tuple[tuple[torch.dtype, tuple[int, ...], int], ...]
    nbytes: int


def layout_of(specs: Sequence[tuple[torch.dtype, tuple[int, ...]]]) -> PackedLayout:
    """Where tensors of these ``(dtype, shape)`` go in one packed buffer."""
    entries: list[tuple[torch.dtype, tuple[int, ...], int]] = []
    offset = 0
    for dtype, shape in specs:
        entries.append((dtype, tuple(shape), offset))
        nbytes = math.prod(shape) * dtype.itemsize
        offset += -(-nbytes // _ALIGN) * _ALIGN
    return PackedLayout(tuple(entries), offset)


def pack(tensors: Sequence[torch.Tensor], pin: bool = False) -> tuple[torch.Tensor, PackedLayout]:
    """Copy CPU ``tensors`` into one ``[nbytes]`` uint8 buffer; returns it and its layout.

    Args:
        tensors: CPU tensors of any dtype and shape (non-contiguous ones are compacted).
        pin: allocate the buffer in page-locked memory (for async copies to CUDA).
    """
    for i, t in enumerate(tensors):
        if t.device.type != "cpu":
            raise ValueError(f"pack: tensor {i} is on {t.device}, expected cpu")
    layout = layout_of([(t.dtype, tuple(t.shape)) for t in tensors])
    buffer = torch.empty(layout.nbytes, dtype=torch.uint8, pin_memory=pin)
    for t, (_, _, off) in zip(tensors, layout.entries, strict=True):
        n = t.numel() * t.element_size()
        if n:
            buffer[off : off + n].copy_(t.contiguous().reshape(-1).view(torch.uint8))
    return buffer, layout


def unpack(buffer: torch.Tensor, layout: PackedLayout) -> list[torch.Tensor]:
    """Views of ``buffer`` (on any device) with the dtypes and shapes of ``layout``."""
    out = []
    for dtype, shape, off in layout.entries:
        size = math.prod(shape) * dtype.itemsize
        out.append(buffer[off : off + size].view(dtype).view(shape))
    return out


def to_device_packed(
    tensors: Sequence[torch.Tensor], device: torch.device | str
) -> list[torch.Tensor]:
    """Move ``tensors`` to ``device`` with ONE copy (views of one device buffer on return).

    On CPU the buffer is not copied again, so this is :func:`pack` + :func:`unpack`.
    """
    device = torch.device(device)
    buffer, layout = pack(tensors, pin=device.type == "cuda")
    if device.type != "cpu":
        buffer = buffer.to(device, non_blocking=True)
    return unpack(buffer, layout)


def to_device_plain(
    tensors: Sequence[torch.Tensor], device: torch.device | str
) -> list[torch.Tensor]:
    """Reference path: one ``.to(device)`` per tensor."""
    return [t.to(device) for t in tensors]
