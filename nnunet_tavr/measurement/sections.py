"""Cross-sections of a mask in a plane, and the shape of a 2-D outline (area, perimeter, callipers).

The planes, their frames and their sampling are :mod:`nnunet_tavr.geometry`'s (mm in the arrays'
physical frame, (z, y, x) = index * spacing; anisotropic grids are handled there by converting mm
to fractional indices per axis). What is measurement-specific lives here: which connected part of
a plane's mask is the lumen, and its area and Feret (calliper) diameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nnunet_tavr.geometry import PlaneGrid


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
    """The connected cross-section of ``mask`` in the square ``grid`` nearest the grid centre.

    The binary mask is interpolated trilinearly and thresholded at 0.5, which puts the boundary
    half-way between inside and outside voxel centres (no half-voxel bias on the area).  Returns
    ``None`` when the plane misses the mask within ``seed_radius_mm`` of the centre.

    Parameters
    ----------
    mask : (z, y, x) float array
        Binary mask (1 inside), possibly a crop whose first voxel has index ``origin_index``.
    spacing : 3 floats
        Voxel size per axis (mm).
    grid : PlaneGrid
        A square grid of odd size (:meth:`PlaneGrid.around`); its middle pixel is the seed.
    """
    values = grid.sample(mask, spacing, origin_index=origin_index, order=1)
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


def polygon_area_perimeter(contour: np.ndarray) -> tuple[float, float]:
    """Area (shoelace, mm²) and perimeter (mm) of a closed polygon given as (n, 2) mm points."""
    x, y = contour[:, 0], contour[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    perimeter = np.linalg.norm(np.diff(np.vstack([contour, contour[:1]]), axis=0), axis=1).sum()
    return float(area), float(perimeter)
