"""Solids given in mm whose volume is known: painted at voxel centres, integrated below the voxel.

A builder that records volumes in ``truth.json`` (the heart chambers) describes each structure as
a :class:`Shape`: a membership test ``contains(z, y, x)`` on mm coordinates of the arrays'
physical frame (index * spacing, (z, y, x) order) and a bounding box. From one shape it gets

- its **mask**: :func:`paint` marks the voxels whose centre lies inside (as every builder does);
- its **volume**: :func:`measure` integrates the same membership test on a finer grid: voxels whose
  3 x 3 x 3 neighbourhood is all inside (or all outside) the painted mask count 1 (or 0), every
  other voxel (the boundary band) counts the fraction of its ``subsamples`` ** 3 sub-voxel points
  that lie inside. The result is the volume of the continuous shape, independent of where the
  voxel centres happen to fall, which is what a mask's voxel count is checked against.

Precedence between structures is part of the shape: :class:`Difference` removes the structures
painted earlier exactly (sub-voxel), and voxels claimed by masks that have no shape (the aorta,
voxels outside the field of view) are removed whole, for the mask and the volume alike.

Primitives: :class:`Ellipsoid`, :class:`HalfSpace` (only inside an :class:`Intersection`),
:class:`Tube` (tapered capsules along a polyline) and :class:`Implicit` (any membership function,
e.g. another builder's); combinations: :class:`Union`, :class:`Intersection`, :class:`Difference`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nnunet_tavr.phantom.canvas import Canvas

_INF = np.full(3, np.inf)


class Shape:
    """A solid in the arrays' physical frame (mm). Subclasses set :attr:`lo` / :attr:`hi` (the
    bounding box, mm; infinite for half-spaces) and implement :meth:`contains`."""

    lo: np.ndarray = -_INF
    hi: np.ndarray = _INF

    def contains(self, z, y, x) -> np.ndarray:
        """Whether the points lie inside (bool, the broadcast shape of ``z``, ``y``, ``x``; mm)."""
        raise NotImplementedError

    def contains_points(self, points: np.ndarray) -> np.ndarray:
        """:meth:`contains` of ``(n, 3)`` points, testing only those inside the bounding box."""
        points = np.asarray(points, float)
        out = np.zeros(len(points), bool)
        near = np.all((points >= self.lo) & (points <= self.hi), axis=1)
        if near.any():
            sub = points[near]
            out[near] = self.contains(sub[:, 0], sub[:, 1], sub[:, 2])
        return out

    def __or__(self, other: "Shape") -> "Shape":
        return Union(self, other)

    def __and__(self, other: "Shape") -> "Shape":
        return Intersection(self, other)

    def __sub__(self, other: "Shape") -> "Shape":
        return Difference(self, other)


class Ellipsoid(Shape):
    """Points with ``sum_i ((p - centre) . axes[i] / semi[i]) ** 2 <= 1``.

    ``axes`` are three orthonormal rows (mm frame), ``semi`` the semi-axes in mm.
    """

    def __init__(self, centre, axes, semi):
        self.centre = np.asarray(centre, float)
        self.axes = np.asarray(axes, float)
        self.semi = np.asarray(semi, float)
        half = np.sqrt(((self.axes * self.semi[:, None]) ** 2).sum(axis=0))  # per array axis
        self.lo, self.hi = self.centre - half, self.centre + half

    @property
    def volume_mm3(self) -> float:
        return float(4.0 / 3.0 * np.pi * np.prod(self.semi))

    def contains(self, z, y, x):
        rel = (z - self.centre[0], y - self.centre[1], x - self.centre[2])
        q = [sum(rel[k] * d[k] for k in range(3)) / s for d, s in zip(self.axes, self.semi)]
        return q[0] ** 2 + q[1] ** 2 + q[2] ** 2 <= 1


class HalfSpace(Shape):
    """Points on the side of the plane through ``point`` that ``normal`` points to (plane included)."""

    def __init__(self, point, normal):
        self.point = np.asarray(point, float)
        self.normal = np.asarray(normal, float) / np.linalg.norm(normal)

    def contains(self, z, y, x):
        rel = (z - self.point[0], y - self.point[1], x - self.point[2])
        return sum(rel[k] * self.normal[k] for k in range(3)) >= 0


class Tube(Shape):
    """A vessel: the union of tapered capsules along a polyline.

    For each segment ``a -> b`` with radii ``ra -> rb``, a point belongs to it when its distance
    to the segment is at most the radius interpolated at its projection (clamped to the ends, so
    the ends are round). Consecutive segments share their end points, so the tube is seamless.

    Parameters
    ----------
    points : (n, 3) array
        Centreline in mm (n >= 2).
    radii : (n,) array or float
        Radius at each point (mm).
    """

    def __init__(self, points, radii):
        self.points = np.asarray(points, float)
        self.radii = np.broadcast_to(np.asarray(radii, float), (len(self.points),)).copy()
        if len(self.points) < 2:
            raise ValueError("a tube needs at least two centreline points")
        self.lo = (self.points - self.radii[:, None]).min(axis=0)
        self.hi = (self.points + self.radii[:, None]).max(axis=0)

    @property
    def length_mm(self) -> float:
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum())

    def contains(self, z, y, x):
        p = (z, y, x)
        inside = np.zeros(np.broadcast_shapes(np.shape(z), np.shape(y), np.shape(x)), bool)
        for a, b, ra, rb in zip(self.points[:-1], self.points[1:], self.radii[:-1], self.radii[1:]):
            d = b - a
            dd = float(d @ d)
            rel = [p[k] - a[k] for k in range(3)]
            t = np.clip(sum(rel[k] * d[k] for k in range(3)) / dd, 0.0, 1.0)
            dist2 = sum((rel[k] - t * d[k]) ** 2 for k in range(3))
            r = ra + t * (rb - ra)
            inside |= dist2 <= r * r
        return inside


class Implicit(Shape):
    """Any membership function ``f(z, y, x) -> bool`` (mm) within the box ``[lo, hi]``."""

    def __init__(self, function, lo, hi):
        self.function = function
        self.lo, self.hi = np.asarray(lo, float), np.asarray(hi, float)

    def contains(self, z, y, x):
        return np.asarray(self.function(z, y, x), bool)


class Union(Shape):
    def __init__(self, *parts: Shape):
        self.parts = parts
        self.lo = np.min([s.lo for s in parts], axis=0)
        self.hi = np.max([s.hi for s in parts], axis=0)

    def contains(self, z, y, x):
        out = self.parts[0].contains(z, y, x)
        for s in self.parts[1:]:
            out = out | s.contains(z, y, x)
        return out

    def contains_points(self, points):
        points = np.asarray(points, float)
        out = np.zeros(len(points), bool)
        near = np.flatnonzero(np.all((points >= self.lo) & (points <= self.hi), axis=1))
        for s in self.parts:
            if near.size == 0:
                break
            hit = s.contains_points(points[near])
            out[near[hit]] = True
            near = near[~hit]  # a point inside one part need not be tested against the others
        return out


class Intersection(Shape):
    def __init__(self, *parts: Shape):
        self.parts = parts
        self.lo = np.max([s.lo for s in parts], axis=0)
        self.hi = np.min([s.hi for s in parts], axis=0)

    def contains(self, z, y, x):
        out = self.parts[0].contains(z, y, x)
        for s in self.parts[1:]:
            out = out & s.contains(z, y, x)
        return out

    def contains_points(self, points):
        points = np.asarray(points, float)
        out = np.all((points >= self.lo) & (points <= self.hi), axis=1)
        for s in self.parts:
            if not out.any():
                break
            out[out] = s.contains_points(points[out])
        return out


class Difference(Shape):
    """``keep`` without ``remove`` (e.g. a chamber without the structures that win over it)."""

    def __init__(self, keep: Shape, remove: Shape | None):
        self.keep, self.remove = keep, remove
        self.lo, self.hi = keep.lo, keep.hi

    def contains(self, z, y, x):
        out = self.keep.contains(z, y, x)
        return out if self.remove is None else out & ~self.remove.contains(z, y, x)

    def contains_points(self, points):
        points = np.asarray(points, float)
        out = self.keep.contains_points(points)
        if self.remove is not None and out.any():
            out[out] = ~self.remove.contains_points(points[out])
        return out


# ----------------------------------------------------------------------------------------------
# voxels


def paint(shape: Shape, canvas: Canvas, blocked: np.ndarray | None = None) -> np.ndarray:
    """The voxels whose centre lies inside ``shape`` (bool, the canvas grid), minus ``blocked``."""
    mask = canvas.blank()
    box, coords = canvas.box(np.maximum(shape.lo, -1e6), np.minimum(shape.hi, 1e6))
    if box is None:
        return mask
    zz, yy, xx = coords
    mask[box] = shape.contains(zz[:, None, None], yy[None, :, None], xx[None, None, :])
    if blocked is not None:
        mask &= ~blocked
    return mask


def subsample_offsets(spacing, subsamples: int) -> np.ndarray:
    """``(subsamples ** 3, 3)`` offsets (mm) from a voxel centre to its sub-voxel sample points:
    the centres of a regular ``subsamples ** 3`` split of the voxel."""
    steps = (np.arange(subsamples) + 0.5) / subsamples - 0.5
    grid = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 3)
    return grid * np.asarray(spacing, float)


def measure(shape: Shape, canvas: Canvas, mask: np.ndarray, blocked: np.ndarray | None = None,
            subsamples: int = 4, chunk: int = 4096) -> float:
    """The volume (mm^3) of ``shape`` on the canvas, integrated below the voxel.

    Parameters
    ----------
    shape : Shape
        The structure's final shape (precedence over other shapes included, see the module
        docstring).
    mask : np.ndarray
        Its painted mask, :func:`paint` of ``shape`` minus ``blocked``: it tells the interior and
        exterior voxels (counted whole) from the boundary band (sub-sampled).
    blocked : np.ndarray, optional
        Voxels that never belong to the structure (claimed by another mask, outside the field of
        view); they count 0 whatever the shape says.
    subsamples : int
        Sample points per axis in each boundary voxel (``subsamples ** 3`` per voxel).

    Returns
    -------
    float
        Volume in mm^3.
    """
    voxel = float(np.prod(canvas.spacing))
    box, _ = canvas.box(np.maximum(shape.lo, -1e6), np.minimum(shape.hi, 1e6))
    if box is None:
        return 0.0
    from nnunet_tavr.geometry import grow_box

    box = grow_box(box, 1, canvas.shape)
    sub = mask[box]
    cube = np.ones((3, 3, 3), bool)
    band = ndimage.binary_dilation(sub, cube) & ~ndimage.binary_erosion(sub, cube, border_value=1)
    if blocked is not None:
        band &= ~blocked[box]
    interior = int((sub & ~band).sum())
    idx = np.argwhere(band) + np.array([s.start for s in box])
    offsets = subsample_offsets(canvas.spacing, subsamples)
    inside = 0
    for start in range(0, len(idx), chunk):
        centres = idx[start:start + chunk] * canvas.spacing
        points = (centres[:, None, :] + offsets[None, :, :]).reshape(-1, 3)
        inside += int(shape.contains_points(points).sum())
    return (interior + inside / len(offsets)) * voxel
