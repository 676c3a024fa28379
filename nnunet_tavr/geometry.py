"""Geometry on voxel grids: planes, in-plane frames, plane sampling and boxes.

Every function here is pure (numpy in, numpy out) and shares one set of conventions:

- Arrays are in SimpleITK's order, **(z, y, x)**; ``spacing`` is the voxel size in **mm per array
  axis** (``image.GetSpacing()[::-1]``).
- Points and vectors are in the *physical frame of the arrays*: ``index * spacing`` in mm, (z, y, x)
  order. It is an isometry of the scanner frame (origin and direction dropped), so distances,
  areas and angles are the same in both; :mod:`nnunet_tavr.io` converts to world coordinates.
- A **box** is a tuple of slices, one per axis, with non-negative ``start`` and ``stop`` (the
  result of ``array[box]`` is the crop). Boxes are in **voxels**; the ``*_mm`` functions take
  physical sizes and convert them per axis, so anisotropic grids need no special case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

Box = tuple  # tuple[slice, ...]

#: Distances equal to a threshold count as "within" despite float rounding (4.5 mm = 3 x 1.5 mm).
EPS_MM = 1e-4


# ----------------------------------------------------------------------------------------------
# vectors and planes


def unit(v) -> np.ndarray:
    """``v`` scaled to length 1."""
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def angle_deg(a, b, oriented: bool = True) -> float:
    """Angle between two vectors in degrees; ``oriented=False`` treats ``a`` and ``-a`` alike
    (the angle between two planes given by their normals)."""
    c = float(np.dot(unit(a), unit(b)))
    if not oriented:
        c = abs(c)
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


class DegeneratePlane(ValueError):
    """The points do not define a plane (fewer than three, or collinear)."""


@dataclass(frozen=True)
class PlaneFit:
    """Least-squares plane through a point set.

    ``normal`` is the direction of least variance (unit; its sign is arbitrary, callers orient
    it), ``singular_values`` those of the centred points (descending) and ``n`` the number of
    points.
    """

    centre: np.ndarray
    normal: np.ndarray
    singular_values: np.ndarray
    n: int

    @property
    def rms(self) -> float:
        """Root-mean-square distance of the points from the plane (mm)."""
        return float(self.singular_values[-1] / np.sqrt(self.n))


def fit_plane(points_mm) -> PlaneFit:
    """Least-squares plane through ``(n, 3)`` points (SVD of the centred points).

    Raises
    ------
    DegeneratePlane
        Fewer than three points, or collinear ones.
    """
    points_mm = np.asarray(points_mm, float)
    if len(points_mm) < 3:
        raise DegeneratePlane(f"{len(points_mm)} point(s): a plane needs at least 3")
    centre = points_mm.mean(axis=0)
    _, sv, vt = np.linalg.svd(points_mm - centre, full_matrices=False)
    if sv[1] <= 1e-6 * max(sv[0], 1e-12):
        raise DegeneratePlane("the points are collinear: no plane can be fitted")
    return PlaneFit(centre, vt[-1], sv, len(points_mm))


def plane_through(p0, p1, p2) -> tuple[np.ndarray, np.ndarray]:
    """The plane through three points: ``(centroid, unit normal)``, the normal along
    ``(p1 - p0) x (p2 - p0)`` (counter-clockwise order seen from its tip)."""
    p0, p1, p2 = (np.asarray(p, float) for p in (p0, p1, p2))
    n = np.cross(p1 - p0, p2 - p0)
    if np.linalg.norm(n) <= 1e-9 * max(np.linalg.norm(p1 - p0) * np.linalg.norm(p2 - p0), 1e-12):
        raise DegeneratePlane("the three points are collinear: no plane passes through them alone")
    return (p0 + p1 + p2) / 3.0, unit(n)


def signed_distance(points_mm, centre, normal) -> np.ndarray:
    """Signed distances (mm) of ``(..., 3)`` points from the plane, positive on the normal's side."""
    return (np.asarray(points_mm, float) - np.asarray(centre, float)) @ np.asarray(normal, float)


def plane_frame(normal, hint=(1.0, 0.0, 0.0), max_cos: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors ``e1, e2`` completing ``normal`` to a right-handed orthonormal frame.

    ``e1`` is the projection of ``hint`` onto the plane (by default the array's z axis, so ``e1``
    points as superior as the plane allows); when ``hint`` is within ``arccos(max_cos)`` of the
    normal, the array's y axis is projected instead. ``e2 = normal x e1``.
    ``normal`` must be a unit vector (it is used as given, so a caller's frame is reproducible to
    the last bit).
    """
    n = np.asarray(normal, float)
    hint = np.asarray(hint, float)
    if abs(np.dot(hint, n)) > max_cos:
        hint = np.array([0.0, 1.0, 0.0])
    e1 = unit(hint - np.dot(hint, n) * n)
    return e1, np.cross(n, e1)


def rotation_zyx(degrees_zyx) -> np.ndarray:
    """Rotation matrix acting on (z, y, x) vectors: about z, then y, then x (degrees)."""
    az, ay, ax = np.deg2rad(np.asarray(degrees_zyx, float))
    cz, sz, cy, sy, cx, sx = np.cos(az), np.sin(az), np.cos(ay), np.sin(ay), np.cos(ax), np.sin(ax)
    # Axes in (z, y, x) coordinates; a rotation about one axis mixes the other two.
    rz = np.array([[1, 0, 0], [0, cz, -sz], [0, sz, cz]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[cx, -sx, 0], [sx, cx, 0], [0, 0, 1]])
    return rx @ ry @ rz


# ----------------------------------------------------------------------------------------------
# sampling volumes at points and on planes


def sample(volume: np.ndarray, spacing, points_mm: np.ndarray, origin_index=(0, 0, 0), order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Interpolate ``volume`` at mm points given as ``(3, ...)``.

    ``origin_index`` is the index of ``volume[0, 0, 0]`` in the full grid, so crops are sampled
    in the coordinates of the full volume. Outside the volume the value is ``cval``. ``order`` 0 is
    nearest neighbour (labels), 1 trilinear (no prefilter is needed for either).
    """
    from scipy import ndimage

    points_mm = np.asarray(points_mm, float)
    spacing = np.asarray(spacing, float).reshape(3, *([1] * (points_mm.ndim - 1)))
    offset = np.asarray(origin_index, float).reshape(spacing.shape)
    return ndimage.map_coordinates(volume, points_mm / spacing - offset, order=order, mode="constant", cval=cval, prefilter=False)


@dataclass(frozen=True)
class PlaneGrid:
    """A rectangular grid of pixels in a plane.

    Pixel ``[i, j]`` lies at ``origin + u[i] * e1 + v[j] * e2`` (mm), with ``u = u0 + i * pixel``
    (``nu`` values) and ``v = v0 + j * pixel`` (``nv`` values): the image's rows follow ``e1``,
    its columns ``e2``. ``origin`` is the point of in-plane coordinates (0, 0).
    """

    origin: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    pixel: float
    u0: float
    v0: float
    nu: int
    nv: int

    @classmethod
    def around(cls, centre, normal, half_width_mm: float, pixel_mm: float, hint=(1.0, 0.0, 0.0)) -> "PlaneGrid":
        """A square grid of odd size centred on ``centre`` in the plane of ``normal`` (frame of
        :func:`plane_frame`)."""
        e1, e2 = plane_frame(normal, hint)
        return cls.square(centre, e1, e2, half_width_mm, pixel_mm)

    @classmethod
    def square(cls, centre, e1, e2, half_width_mm: float, pixel_mm: float) -> "PlaneGrid":
        """A square grid of ``2 ceil(half_width / pixel) + 1`` pixels centred on ``centre``."""
        size = 2 * int(np.ceil(half_width_mm / pixel_mm)) + 1
        first = -(size - 1) / 2 * float(pixel_mm)
        return cls(np.asarray(centre, float), np.asarray(e1, float), np.asarray(e2, float), float(pixel_mm), first, first, size, size)

    @classmethod
    def spanning(cls, origin, e1, e2, u_range, v_range, pixel_mm: float) -> "PlaneGrid":
        """Pixels at ``u = u_range[0], u_range[0] + pixel, ...`` up to ``u_range[1]`` (inclusive
        within 1e-9 mm), likewise along ``e2``."""
        nu = len(np.arange(u_range[0], u_range[1] + 1e-9, pixel_mm))
        nv = len(np.arange(v_range[0], v_range[1] + 1e-9, pixel_mm))
        return cls(np.asarray(origin, float), np.asarray(e1, float), np.asarray(e2, float), float(pixel_mm), float(u_range[0]), float(v_range[0]), nu, nv)

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.e1, self.e2)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.nu, self.nv)

    @property
    def size(self) -> int:
        """Edge length in pixels of a square grid."""
        if self.nu != self.nv:
            raise ValueError(f"grid is not square ({self.nu} x {self.nv})")
        return self.nu

    @property
    def centre(self) -> np.ndarray:
        """The mm point at the middle of the grid."""
        return self.to_mm(np.array([(self.nu - 1) / 2, (self.nv - 1) / 2]))

    def uv(self) -> tuple[np.ndarray, np.ndarray]:
        """In-plane coordinates (mm) of the pixel centres along each image axis."""
        return self.u0 + np.arange(self.nu) * self.pixel, self.v0 + np.arange(self.nv) * self.pixel

    def extent(self) -> tuple[float, float, float, float]:
        """``(u first, u last, v first, v last)`` in mm."""
        u, v = self.uv()
        return float(u[0]), float(u[-1]), float(v[0]), float(v[-1])

    def points(self, offset_mm: float = 0.0) -> np.ndarray:
        """``(3, nu, nv)`` mm coordinates of the pixel centres, shifted ``offset_mm`` along the normal."""
        u, v = self.uv()
        c = self.origin + offset_mm * self.normal if offset_mm else self.origin
        return c[:, None, None] + self.e1[:, None, None] * u[None, :, None] + self.e2[:, None, None] * v[None, None, :]

    def to_uv(self, ij) -> np.ndarray:
        """Pixel coordinates ``(..., 2)`` -> in-plane mm ``(..., 2)``."""
        ij = np.asarray(ij, float)
        return np.stack([self.u0 + ij[..., 0] * self.pixel, self.v0 + ij[..., 1] * self.pixel], axis=-1)

    def to_mm(self, ij) -> np.ndarray:
        """Pixel coordinates ``(..., 2)`` -> 3-D mm points ``(..., 3)``."""
        uv = self.to_uv(ij)
        return self.origin + uv[..., :1] * self.e1 + uv[..., 1:2] * self.e2

    def sample(self, volume: np.ndarray, spacing, offset_mm: float = 0.0, origin_index=(0, 0, 0), order: int = 1, cval: float = 0.0) -> np.ndarray:
        """``volume`` resampled on the grid: an ``(nu, nv)`` image (see :func:`sample`)."""
        return sample(volume, spacing, self.points(offset_mm), origin_index, order, cval)


def smooth_polyline(points: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smooth an ``(n, 3)`` polyline along its length (``sigma`` in samples).

    The ends are padded by point reflection (``2 p_end - p_{end-k}``), which keeps straight
    segments straight and, unlike ``mode="nearest"``, does not pull the ends inwards.
    """
    from scipy import ndimage

    if len(points) < 3 or sigma <= 0:
        return np.asarray(points, float)
    pad = min(len(points) - 1, int(np.ceil(4 * sigma)))
    padded = np.pad(np.asarray(points, float), ((pad, pad), (0, 0)), mode="reflect", reflect_type="odd")
    return ndimage.gaussian_filter1d(padded, sigma, axis=0, mode="nearest")[pad : pad + len(points)]


def arc_length(points: np.ndarray) -> np.ndarray:
    """Arc length (mm) from the first point of an ``(n, 3)`` polyline to each of its points."""
    seg = np.linalg.norm(np.diff(np.asarray(points, float), axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(seg)])


def resample_polyline(points: np.ndarray, step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample an ``(n, 3)`` polyline at a constant arc-length step (mm).

    Returns the new points and their arc length from the first point (mm).
    """
    points = np.asarray(points, float)
    arc = arc_length(points)
    new_arc = np.arange(0.0, arc[-1] + 1e-9, step_mm)
    out = np.stack([np.interp(new_arc, arc, points[:, k]) for k in range(points.shape[1])], axis=1)
    return out, new_arc


# ----------------------------------------------------------------------------------------------
# boxes


def bounding_box(mask: np.ndarray) -> Box | None:
    """Tight bounding box of the ``True`` voxels of a mask (any dimension), or ``None`` if empty."""
    mask = np.asarray(mask)
    # The first axis is reduced over contiguous rows (fast); the others only inside its range.
    first = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    if first.size == 0:
        return None
    sub = mask[first[0] : first[-1] + 1]
    ranges = [first]
    for axis in range(1, mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        ranges.append(np.flatnonzero(sub.any(axis=others)))
    return tuple(slice(int(r[0]), int(r[-1]) + 1) for r in ranges)


def grow_box(box: Box, margin, shape) -> Box:
    """``box`` grown by ``margin`` voxels (an int, or one per axis) and clipped to ``shape``."""
    margin = np.broadcast_to(np.asarray(margin, int), (len(box),))
    return tuple(slice(max(b.start - int(m), 0), min(b.stop + int(m), int(n))) for b, m, n in zip(box, margin, shape))


def intersect_boxes(a: Box, b: Box) -> Box | None:
    """The common part of two boxes, or ``None`` when they do not overlap."""
    out = tuple(slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(a, b))
    return None if any(s.start >= s.stop for s in out) else out


def box_shape(box: Box) -> tuple[int, ...]:
    return tuple(s.stop - s.start for s in box)


def box_start(box: Box) -> np.ndarray:
    """Index of the box's first voxel (its ``origin_index`` for :func:`sample`)."""
    return np.array([s.start for s in box])


def offset_box(outer: Box, inner: Box) -> Box:
    """``inner``, given relative to ``outer``, as a box of the full array."""
    return tuple(slice(o.start + i.start, o.start + i.stop) for o, i in zip(outer, inner))


def relative_box(inner: Box, outer: Box) -> Box:
    """``inner`` (a box of the full array, inside ``outer``) relative to ``outer``."""
    return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer))


def paste(shape, box: Box | None, sub: np.ndarray, dtype=bool) -> np.ndarray:
    """A zero array of ``shape`` holding ``sub`` at ``box`` (nothing when ``box`` is ``None``)."""
    out = np.zeros(shape, dtype)
    if box is not None:
        out[box] = sub
    return out


def reach_voxels(distance_mm: float, spacing) -> np.ndarray:
    """Voxels per axis that a ball of ``distance_mm`` reaches from a voxel centre (floor)."""
    return np.floor((distance_mm + EPS_MM) / np.asarray(spacing, float)).astype(int)


def margin_voxels(distance_mm: float, spacing) -> np.ndarray:
    """Voxels per axis that cover at least ``distance_mm`` (ceil): a generous crop margin."""
    return np.ceil(distance_mm / np.asarray(spacing, float)).astype(int)


def grow_box_mm(box: Box, distance_mm: float, spacing, shape) -> Box:
    """``box`` grown by at least ``distance_mm`` on every side and clipped to ``shape``."""
    return grow_box(box, margin_voxels(distance_mm, spacing), shape)


def box_mm(lo_mm, hi_mm, spacing, shape) -> Box | None:
    """The voxels whose centres can lie in the mm box ``[lo_mm, hi_mm]`` (one extra voxel above),
    clipped to ``shape``; ``None`` when it misses the grid."""
    spacing = np.asarray(spacing, float)
    lo = np.maximum(np.floor(np.asarray(lo_mm, float) / spacing).astype(int), 0)
    hi = np.minimum(np.ceil(np.asarray(hi_mm, float) / spacing).astype(int) + 1, np.asarray(shape))
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def box_around(point_mm, radius_mm, spacing, shape) -> Box | None:
    """:func:`box_mm` of the cube of half-width ``radius_mm`` (scalar or per axis) around a point."""
    point_mm = np.asarray(point_mm, float)
    return box_mm(point_mm - radius_mm, point_mm + radius_mm, spacing, shape)


def box_coordinates(box: Box, spacing) -> list[np.ndarray]:
    """mm coordinates of the voxel centres of ``box`` along each axis."""
    return [np.arange(s.start, s.stop) * float(sp) for s, sp in zip(box, spacing)]


def points_mm(indices: np.ndarray, spacing, origin_index=None) -> np.ndarray:
    """Voxel indices ``(n, 3)`` (of a crop starting at ``origin_index``) as mm points."""
    indices = np.asarray(indices, float)
    if origin_index is not None:
        indices = indices + np.asarray(origin_index, float)
    return indices * np.asarray(spacing, float)


def ball(radius_mm: float, spacing) -> np.ndarray:
    """Ellipsoidal structuring element of ``radius_mm`` on a grid of ``spacing`` (at least three
    voxels wide along every axis)."""
    spacing = np.asarray(spacing, float)
    r = np.maximum(np.floor(radius_mm / spacing).astype(int), 1)
    grids = np.ogrid[tuple(slice(-k, k + 1) for k in r)]
    return sum((g * s) ** 2 for g, s in zip(grids, spacing)) <= max(radius_mm, float(spacing.max())) ** 2 + 1e-9


def as_spacing(spacing: float | Sequence[float], ndim: int = 3) -> np.ndarray:
    """A scalar or per-axis voxel size as a float array of ``ndim`` values."""
    return np.broadcast_to(np.asarray(spacing, float), (ndim,)).copy()


# ----------------------------------------------------------------------------------------------
# the arrays' frame <-> world (SimpleITK's physical frame, LPS for DICOM-derived images)

IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def _origin_direction(geometry) -> tuple[np.ndarray, np.ndarray]:
    """``geometry.origin`` (x, y, z) and the 3 x 3 direction matrix (columns: the x, y and z index
    axes' directions, SimpleITK's row-major ``GetDirection()``)."""
    if len(geometry.origin) != 3:
        raise ValueError(f"a 3-d image geometry is needed, got origin {geometry.origin}")
    return np.asarray(geometry.origin, float), np.asarray(geometry.direction, float).reshape(3, 3)


def array_to_world(points_zyx, geometry) -> np.ndarray:
    """Points in the arrays' frame ((z, y, x) mm, ``index * spacing``) -> world (x, y, z) mm.

    SimpleITK's rule, ``world = origin + D @ (index_xyz * spacing_xyz)``; ``geometry`` is any
    object with ``origin`` and ``direction`` (:class:`nnunet_tavr.io.Geometry`).
    """
    origin, d = _origin_direction(geometry)
    return origin + np.asarray(points_zyx, float)[..., ::-1] @ d.T


def world_to_array(points_xyz, geometry) -> np.ndarray:
    """World (x, y, z) mm -> the arrays' frame ((z, y, x) mm); inverse of :func:`array_to_world`."""
    origin, d = _origin_direction(geometry)
    return ((np.asarray(points_xyz, float) - origin) @ np.linalg.inv(d).T)[..., ::-1]


def vector_to_world(vectors_zyx, geometry) -> np.ndarray:
    """Directions in the arrays' frame ((z, y, x)) -> world (x, y, z) (rotation only, no origin)."""
    _, d = _origin_direction(geometry)
    return np.asarray(vectors_zyx, float)[..., ::-1] @ d.T


def vector_to_array(vectors_xyz, geometry) -> np.ndarray:
    """World directions (x, y, z) -> the arrays' frame ((z, y, x))."""
    _, d = _origin_direction(geometry)
    return (np.asarray(vectors_xyz, float) @ np.linalg.inv(d).T)[..., ::-1]


class _Grid:
    def __init__(self, origin, direction):
        self.origin, self.direction = tuple(origin), tuple(direction)


def index_to_world(index_zyx, spacing, origin_xyz=(0.0, 0.0, 0.0), direction=IDENTITY_DIRECTION) -> np.ndarray:
    """Continuous voxel indices ``(..., 3)`` in (z, y, x) -> world points ``(..., 3)`` in (x, y, z)
    mm (:func:`array_to_world` of ``index * spacing``, ``spacing`` per array axis)."""
    return array_to_world(np.asarray(index_zyx, float) * as_spacing(spacing), _Grid(origin_xyz, direction))


def world_to_index(world_xyz, spacing, origin_xyz=(0.0, 0.0, 0.0), direction=IDENTITY_DIRECTION) -> np.ndarray:
    """Inverse of :func:`index_to_world`: world points (x, y, z) mm -> continuous (z, y, x) indices."""
    return world_to_array(world_xyz, _Grid(origin_xyz, direction)) / as_spacing(spacing)
