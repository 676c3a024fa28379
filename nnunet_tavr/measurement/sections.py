"""Oblique planes through a voxel grid: sampling, cross-sections and calliper diameters.

Coordinates are mm in the arrays' physical frame, (z, y, x) = index * spacing; ``spacing`` is the
voxel size per array axis (mm), so anisotropic grids are handled by converting mm to fractional
indices before interpolation (``scipy.ndimage.map_coordinates``).  In-plane images are indexed
``[i, j]`` with ``u = (i - c) * pixel`` along ``e1`` and ``v = (j - c) * pixel`` along ``e2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def plane_frame(normal) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors ``e1, e2`` with ``(e1, e2, normal)`` orthonormal and right-handed."""
    n = unit(normal)
    hint = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = unit(hint - np.dot(hint, n) * n)
    return e1, np.cross(n, e1)


@dataclass(frozen=True)
class PlaneGrid:
    """A square grid of ``size x size`` pixels of ``pixel`` mm centred on ``centre`` in a plane."""

    centre: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    pixel: float
    size: int

    @classmethod
    def around(cls, centre, normal, half_width_mm: float, pixel_mm: float) -> "PlaneGrid":
        e1, e2 = plane_frame(normal)
        size = 2 * int(np.ceil(half_width_mm / pixel_mm)) + 1
        return cls(np.asarray(centre, float), e1, e2, float(pixel_mm), size)

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.e1, self.e2)

    def uv(self) -> tuple[np.ndarray, np.ndarray]:
        """In-plane coordinates (mm) of the pixel centres along each image axis."""
        r = (np.arange(self.size) - (self.size - 1) / 2) * self.pixel
        return r, r

    def points(self, offset_mm: float = 0.0) -> np.ndarray:
        """(3, size, size) mm coordinates of the pixel centres, shifted ``offset_mm`` along the normal."""
        u, v = self.uv()
        c = self.centre + offset_mm * self.normal
        return c[:, None, None] + self.e1[:, None, None] * u[None, :, None] + self.e2[:, None, None] * v[None, None, :]

    def to_mm(self, ij) -> np.ndarray:
        """Pixel coordinates (..., 2) -> 3d mm points (..., 3)."""
        ij = np.asarray(ij, float)
        c = (self.size - 1) / 2
        return self.centre + ((ij[..., :1] - c) * self.e1 + (ij[..., 1:2] - c) * self.e2) * self.pixel

    def to_uv(self, ij) -> np.ndarray:
        """Pixel coordinates (..., 2) -> in-plane mm (..., 2)."""
        return (np.asarray(ij, float) - (self.size - 1) / 2) * self.pixel


def sample(volume: np.ndarray, spacing, points_mm: np.ndarray, origin_index=(0, 0, 0), order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Interpolate ``volume`` at mm points (3, ...); ``origin_index`` is the index of ``volume[0,0,0]``
    in the full grid (for crops).  Outside the volume is ``cval``."""
    spacing = np.asarray(spacing, float).reshape(3, *([1] * (points_mm.ndim - 1)))
    offset = np.asarray(origin_index, float).reshape(spacing.shape)
    idx = points_mm / spacing - offset
    return ndimage.map_coordinates(volume, idx, order=order, mode="constant", cval=cval, prefilter=False)


@dataclass(frozen=True)
class CrossSection:
    """One cross-section of a mask in a plane (all lengths mm, areas mm²)."""

    grid: PlaneGrid
    region: np.ndarray  # bool (size, size): the connected lumen component
    area: float
    centroid: np.ndarray  # 3d mm
    diameter: float  # area-derived, 2 sqrt(A / pi)
    min_diameter: float  # minimal calliper width
    max_diameter: float  # maximal calliper length
    touches_border: bool


def cross_section(mask: np.ndarray, spacing, grid: PlaneGrid, origin_index=(0, 0, 0), seed_radius_mm: float | None = None) -> CrossSection | None:
    """The connected cross-section of ``mask`` in ``grid`` nearest the grid centre.

    The binary mask is interpolated trilinearly and thresholded at 0.5, which puts the boundary
    half-way between inside and outside voxel centres (no half-voxel bias on the area).  Returns
    ``None`` when the plane misses the mask within ``seed_radius_mm`` of the centre.
    """
    values = sample(mask, spacing, grid.points(), origin_index, order=1)
    inside = values >= 0.5
    labelled, n = ndimage.label(inside)
    if n == 0:
        return None
    c = (grid.size - 1) // 2
    pick = labelled[c, c]
    if pick == 0:
        ii, jj = np.nonzero(labelled)
        d2 = (ii - c) ** 2 + (jj - c) ** 2
        k = int(np.argmin(d2))
        if seed_radius_mm is not None and np.sqrt(d2[k]) * grid.pixel > seed_radius_mm:
            return None
        pick = labelled[ii[k], jj[k]]
    region = labelled == pick
    ii, jj = np.nonzero(region)
    area = ii.size * grid.pixel**2
    centroid = grid.to_mm(np.array([ii.mean(), jj.mean()]))
    # Only boundary pixels can be hull vertices: keeps the convex hull cheap for large sections.
    edge = region & ~ndimage.binary_erosion(region)
    bi, bj = np.nonzero(edge)
    dmin, dmax, _ = calliper_diameters(np.stack([bi, bj], 1) * grid.pixel, half_pixel=grid.pixel / 2)
    border = bool(region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any())
    return CrossSection(grid, region, float(area), centroid, float(2 * np.sqrt(area / np.pi)), dmin, dmax, border)


def calliper_diameters(points_2d: np.ndarray, half_pixel: float = 0.0) -> tuple[float, float, dict]:
    """Minimal calliper width and maximal calliper length (Feret diameters) of a 2d point set.

    ``points_2d`` are (n, 2) mm coordinates: pixel centres (then pass ``half_pixel`` = half the
    pixel size, so each pixel counts as a square) or a closed contour (``half_pixel`` = 0).  The
    minimal width of a convex polygon is attained perpendicular to one of its edges; the maximal
    length is the largest distance between two hull vertices.

    Returns ``(min_width, max_length, where)``; ``where`` holds the two end points of the maximal
    chord (``max_ends``) and the direction of the minimal width (``min_dir``, unit vector).
    """
    from scipy.spatial import ConvexHull

    pts = np.asarray(points_2d, float)
    if half_pixel > 0:
        corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]]) * half_pixel
        pts = (pts[:, None, :] + corners[None]).reshape(-1, 2)
    hull = pts[ConvexHull(pts).vertices]
    d = hull[:, None, :] - hull[None, :, :]
    dist = np.sqrt((d**2).sum(-1))
    a, b = np.unravel_index(int(np.argmax(dist)), dist.shape)
    edges = np.roll(hull, -1, axis=0) - hull
    normals = np.stack([-edges[:, 1], edges[:, 0]], 1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    proj = hull @ normals.T
    widths = proj.max(0) - proj.min(0)
    k = int(np.argmin(widths))
    return float(widths[k]), float(dist[a, b]), {"max_ends": np.stack([hull[a], hull[b]]), "min_dir": normals[k]}


def smooth_polyline(points: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smooth an (n, 3) polyline along its length (``sigma`` in samples).

    The ends are padded by point reflection (``2 p_end - p_{end-k}``), which keeps straight
    segments straight and, unlike ``mode="nearest"``, does not pull the ends inwards.
    """
    if len(points) < 3 or sigma <= 0:
        return np.asarray(points, float)
    pad = min(len(points) - 1, int(np.ceil(4 * sigma)))
    padded = np.pad(np.asarray(points, float), ((pad, pad), (0, 0)), mode="reflect", reflect_type="odd")
    return ndimage.gaussian_filter1d(padded, sigma, axis=0, mode="nearest")[pad : pad + len(points)]
