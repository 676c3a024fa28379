"""Rasterising shapes given in mm onto the (z, y, x) grid, and the 1-D shape helpers (ease,
radius profile, Bezier curve) the builders draw their centrelines and radii with."""

from __future__ import annotations

import numpy as np

from nnunet_tavr.geometry import Box, as_spacing, box_coordinates, box_mm


class Canvas:
    """A (z, y, x) grid of ``shape`` voxels of ``spacing`` mm; points are physical mm
    (index * spacing). It holds no array: builders paint into arrays of :attr:`shape`."""

    def __init__(self, shape, spacing):
        self.shape = tuple(int(s) for s in shape)
        self.spacing = as_spacing(spacing)

    def blank(self, dtype=bool) -> np.ndarray:
        """A zero array of the grid's shape."""
        return np.zeros(self.shape, dtype)

    def box(self, lo_mm, hi_mm) -> tuple[Box | None, list[np.ndarray] | None]:
        """The voxels covering the mm box ``[lo_mm, hi_mm]`` (clipped to the grid) and the mm
        coordinates of their centres along each axis; ``(None, None)`` when it misses the grid."""
        box = box_mm(lo_mm, hi_mm, self.spacing, self.shape)
        if box is None:
            return None, None
        return box, self.coordinates(box)

    def coordinates(self, box: Box) -> list[np.ndarray]:
        """mm coordinates of the voxel centres of ``box`` along z, y and x."""
        return box_coordinates(box, self.spacing)

    @staticmethod
    def offsets(coords: list[np.ndarray], point_mm) -> list[np.ndarray]:
        """``coords - point`` per axis, shaped to broadcast to the box: (n, 1, 1), (1, n, 1) and
        (1, 1, n) arrays of mm."""
        zz, yy, xx = coords
        return [zz[:, None, None] - point_mm[0], yy[None, :, None] - point_mm[1], xx[None, None, :] - point_mm[2]]

    def balls(self, target: np.ndarray, centers: np.ndarray, radii: np.ndarray, value=True, only_empty=False) -> None:
        """Paint the union of balls into ``target`` (centres ``(n, 3)`` and radii ``(n,)`` in mm);
        ``only_empty`` leaves voxels that already hold a value alone."""
        for c, r in zip(centers, radii):
            sl, coords = self.box(c - r, c + r)
            if sl is None:  # the ball lies outside the grid
                continue
            dz, dy, dx = self.offsets(coords, c)
            inside = dz**2 + dy**2 + dx**2 <= r * r
            view = target[sl]
            if only_empty:
                inside &= view == 0
            view[inside] = value


def ease(t: np.ndarray) -> np.ndarray:
    """Cosine ease from 0 to 1 on t in [0, 1] with zero slope at both ends."""
    t = np.clip(t, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * t)


def profile(s: np.ndarray, knots: list[tuple[float, float]]) -> np.ndarray:
    """Piecewise cosine-eased interpolation through ``knots`` [(s, value), ...]; constant outside.

    Every knot is a stationary point, so an interior knot that is lower than both neighbours is an
    exact local minimum of the profile (used for the STJ).
    """
    s = np.asarray(s, dtype=float)
    out = np.full(s.shape, knots[0][1], dtype=float)
    for (s0, v0), (s1, v1) in zip(knots[:-1], knots[1:]):
        inside = s >= s0
        out = np.where(inside, v0 + (v1 - v0) * ease((s - s0) / (s1 - s0)), out)
    return out


def bezier(p0, p1, p2, p3, n: int) -> np.ndarray:
    """``n`` points ``(n, 3)`` of the cubic Bezier curve with control points ``p0 .. p3`` (mm),
    evenly spaced in the curve parameter (not in arc length)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
