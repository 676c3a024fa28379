"""Cone-beam line integrals through a voxel volume (Joseph's method, vectorised in torch).

A ray from the source ``S`` to a detector pixel ``P`` crosses the volume's slices perpendicular to
its *principal axis* (the array axis most parallel to the central ray). On every slice the ray's
point is found exactly and the slice is interpolated bilinearly there; the samples are summed and
multiplied by the ray's length per slice (``spacing_a * |P - S| / |P_a - S_a|``). This is Joseph's
forward projector (1982), the standard of CT reconstruction: every voxel a ray passes is visited,
with one bilinear lookup per slice instead of a trilinear one per step. All slices of one chunk are
sampled with one :func:`torch.nn.functional.grid_sample` call (2-D, the slices as the batch), which
on a CPU is several times faster than 3-D trilinear sampling of the same number of points.

``reduce="max"`` returns the maximum along each ray instead (a maximum-intensity projection), which
the renderer uses for the projected label: a pixel is inside when its ray meets the label's 0.5
iso-surface.

Points and the volume are in the arrays' physical frame ((z, y, x) mm, ``index * spacing``); the
callers convert from the C-arm's world frame with :func:`nnunet_tavr.geometry.world_to_array`.
"""

from __future__ import annotations

import numpy as np

#: Slices sampled per grid_sample call (memory: chunk x rays x 8 bytes of grid).
CHUNK = 16


def principal_axis(source, pixels) -> int:
    """The array axis (0 = z, 1 = y, 2 = x) most parallel to the ray through the middle pixel."""
    pixels = np.asarray(pixels, float)
    middle = pixels[pixels.shape[0] // 2, pixels.shape[1] // 2]
    return int(np.argmax(np.abs(middle - np.asarray(source, float))))


class Volume:
    """Channels of a voxel volume (or a crop of one) ready for :func:`project`.

    ``data`` is (C, Z, Y, X) (or (Z, Y, X): one channel), ``spacing`` mm per axis, ``origin`` the
    position (mm, arrays' frame) of ``data[..., 0, 0, 0]``. The slice stacks along each axis are made
    once and kept, so rendering many frames of one case permutes the data at most three times.
    """

    def __init__(self, data, spacing, origin=(0.0, 0.0, 0.0)):
        import torch

        tensor = torch.as_tensor(np.ascontiguousarray(data, dtype=np.float32))
        self.data = tensor[None] if tensor.ndim == 3 else tensor
        self.spacing = np.asarray(spacing, float)
        self.origin = np.asarray(origin, float)
        self._slices: dict[int, object] = {}

    @property
    def channels(self) -> int:
        return int(self.data.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape[1:])

    def slices(self, axis: int):
        """(n_axis, C, n_b1, n_b2) slices perpendicular to ``axis`` (cached)."""
        if axis not in self._slices:
            b1, b2 = [k for k in range(3) if k != axis]
            self._slices[axis] = self.data.permute(1 + axis, 0, 1 + b1, 1 + b2).contiguous()
        return self._slices[axis]


def project(volume, spacing=None, source=None, pixels=None, origin=(0.0, 0.0, 0.0), reduce: str = "sum", threads: int | None = None) -> np.ndarray:
    """Line integrals (or maxima) of ``volume`` along the rays from ``source`` to ``pixels``.

    Parameters
    ----------
    volume : Volume, or array (C, Z, Y, X) or (Z, Y, X)
        Values per voxel (e.g. attenuation in 1/mm). Several channels share the rays. An array is
        wrapped in a :class:`Volume` with ``spacing`` and ``origin``.
    spacing : 3 floats
        Voxel size per array axis (mm); ignored for a :class:`Volume`.
    source : 3 floats
        The source in the arrays' frame (mm, (z, y, x)).
    pixels : array (H, W, 3)
        Detector pixel centres (mm, (z, y, x)); any grid, e.g. a coarse or a cropped one.
    origin : 3 floats
        Position (mm) of ``volume[..., 0, 0, 0]``: a crop's offset in the full image; ignored for a
        :class:`Volume`.
    reduce : {"sum", "max"}
        Line integral (value x mm) or maximum along the ray.
    threads : int, optional
        torch threads to use (default: torch's setting).

    Returns
    -------
    array (C, H, W) float32 (channels kept even when ``volume`` had none).
    """
    import torch
    import torch.nn.functional as F

    if reduce not in ("sum", "max"):
        raise ValueError(f"reduce must be 'sum' or 'max', not {reduce!r}")
    if threads is not None:
        torch.set_num_threads(int(threads))
    if not isinstance(volume, Volume):
        volume = Volume(volume, spacing, origin)
    spacing, origin = volume.spacing, volume.origin
    source = np.asarray(source, float)
    pixels = np.asarray(pixels, float)
    h, w = pixels.shape[:2]
    a = principal_axis(source, pixels)
    b1, b2 = [k for k in range(3) if k != a]
    slices = volume.slices(a)
    n_a, n1, n2 = slices.shape[0], slices.shape[2], slices.shape[3]

    ray = pixels - source  # (H, W, 3)
    da = ray[..., a]
    if np.any(np.abs(da) < 1e-9):
        raise ValueError("a ray runs parallel to the slices of its principal axis")
    # Point on slice k: q_b = S_b + (c_k - S_a) * slope_b, c_k = origin_a + k * spacing_a.
    slope1, slope2 = ray[..., b1] / da, ray[..., b2] / da
    # grid_sample's normalised coordinates (align_corners=True: -1 and 1 are the first and last voxel centres).
    scale1, scale2 = 2.0 / max(n1 - 1, 1) / spacing[b1], 2.0 / max(n2 - 1, 1) / spacing[b2]
    # grid_sample's (x, y) = (b2, b1) for every ray: base + (c_k - S_a) * step, one (H, W, 2) pair.
    base = torch.as_tensor(np.stack([np.full((h, w), (source[b2] - origin[b2]) * scale2 - 1.0),
                                     np.full((h, w), (source[b1] - origin[b1]) * scale1 - 1.0)], axis=-1), dtype=torch.float32)
    step = torch.as_tensor(np.stack([slope2 * scale2, slope1 * scale1], axis=-1), dtype=torch.float32)
    depth = torch.as_tensor(origin[a] + np.arange(n_a) * spacing[a] - source[a], dtype=torch.float32)  # c_k - S_a

    channels = volume.channels
    out = torch.zeros((channels, h * w)) if reduce == "sum" else torch.full((channels, h, w), -torch.inf)
    buffer = torch.empty((min(CHUNK, n_a), h, w, 2))
    with torch.no_grad():
        for start in range(0, n_a, CHUNK):
            t = depth[start : start + CHUNK].view(-1, 1, 1, 1)
            grid = torch.addcmul(base, t, step, out=buffer[: len(t)])
            samples = F.grid_sample(slices[start : start + CHUNK], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            if reduce == "sum":
                # A product with ones: far faster than Tensor.sum over the leading axis on CPU.
                out += (torch.ones(1, len(t)) @ samples.reshape(len(t), -1)).view(channels, h * w)
            else:
                out = torch.maximum(out, samples.amax(dim=0))
    out = out.view(channels, h, w)
    result = out.numpy()
    if reduce == "sum":
        # mm of ray per slice: the slice spacing stretched by the ray's obliquity.
        result = result * (spacing[a] * np.linalg.norm(ray, axis=-1) / np.abs(da)).astype(np.float32)
    else:
        result = np.maximum(result, 0.0)  # rays that meet no slice
    return result.astype(np.float32, copy=False)
