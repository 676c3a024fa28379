"""C-arm geometry: angulations, viewing directions, cone-beam projection, the S-curve and the
three-cusp and cusp-overlap views.

Every function is pure (numpy in, numpy out). Conventions (see ``docs/fluoroscopy.md`` and its
figure ``docs/figures/carm_conventions.png``):

World frame
    The patient's **LPS** frame, as DICOM and SimpleITK store it: +x to the patient's **left**,
    +y **posterior**, +z **superior** (head), in mm. :func:`nnunet_tavr.geometry.array_to_world` and
    :func:`~nnunet_tavr.geometry.world_to_array` convert from and to the arrays' physical frame of
    :mod:`nnunet_tavr.geometry` ((z, y, x) mm, ``index * spacing``) with the image's origin and
    direction (:class:`nnunet_tavr.io.Geometry`).
Angulation
    ``(primary, secondary)`` in degrees, as DICOM's Positioner Primary / Secondary Angle: the
    primary angle turns the C about the patient's long axis, **LAO positive, RAO negative**; the
    secondary angle tilts it along that axis, **CRA(nial) positive, CAU(dal) negative**. Names
    refer to where the *detector* (image intensifier) goes: LAO 90 puts the detector at the
    patient's left, CRA 90 above the head. ``(0, 0)`` is AP: source under the table, detector in
    front of the chest.
Viewing direction
    ``d`` = the unit vector from the source through the isocentre to the detector (the direction
    the X-rays travel), in LPS::

        d = (sin a cos b, -cos a cos b, sin b)        a = primary, b = secondary

    so AP is ``(0, -1, 0)`` (anterior), LAO 90 is ``+x``, CRA 90 is ``+z``. The C-arm is the AP
    pose rotated by ``R = Rz(a) Rx(-b)``.
Detector image
    Shown as a radiograph is read: as seen from the detector, looking back at the source. Image
    columns (to the right) run along ``c = (cos a, sin a, 0)``, rows (downwards) along
    ``r = (sin a sin b, -cos a sin b, -cos b)``. In AP the patient's left is on the image's right
    and the head at the top.
Cone beam
    The source lies ``sid`` mm before the isocentre (``iso - sid * d``), the detector plane
    ``sdd`` mm from the source; a point at depth ``t`` along ``d`` from the source is magnified by
    ``sdd / t`` (``sdd / sid`` at the isocentre). Pixel sizes are given **at the isocentre**.
S-curve
    The angulations whose viewing direction lies in a plane (the annulus plane seen edge-on, the
    "coplanar" views): ``d . n = 0`` gives, for every primary angle ``a``,
    ``b = atan((n_y cos a - n_x sin a) / n_z)`` (:func:`s_curve`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: C-arm defaults: source to isocentre (Siemens Artis / Philips Allura ~ 785 / 810 mm).
SOURCE_ISOCENTRE_MM = 785.0


# ----------------------------------------------------------------------------------------------
# angulations


@dataclass(frozen=True)
class Angulation:
    """A C-arm angulation in degrees: ``primary`` LAO > 0 / RAO < 0, ``secondary`` CRA > 0 / CAU < 0."""

    primary: float
    secondary: float

    @property
    def direction(self) -> np.ndarray:
        """The viewing direction ``d`` (LPS unit vector, source -> detector)."""
        return view_direction(self.primary, self.secondary)

    def label(self, digits: int = 0) -> str:
        """``"LAO 12 CRA 5"``-style text (``AP`` / no secondary word at 0)."""
        def part(value, pos, neg):
            v = round(float(value), digits)
            if v == 0:
                return ""
            return f"{pos if v > 0 else neg} {abs(v):.{digits}f}"

        words = [w for w in (part(self.primary, "LAO", "RAO"), part(self.secondary, "CRA", "CAU")) if w]
        return " ".join(words) or "AP"

    def as_dict(self) -> dict:
        return {"primary_deg": float(self.primary), "secondary_deg": float(self.secondary), "label": self.label(1)}


def view_direction(primary_deg, secondary_deg) -> np.ndarray:
    """Viewing direction(s) ``d`` (LPS, source -> detector) of angulations in degrees; shape ``(..., 3)``."""
    a, b = np.deg2rad(np.asarray(primary_deg, float)), np.deg2rad(np.asarray(secondary_deg, float))
    return np.stack(np.broadcast_arrays(np.sin(a) * np.cos(b), -np.cos(a) * np.cos(b), np.sin(b)), axis=-1)


def angulation(direction) -> Angulation:
    """The angulation whose viewing direction is ``direction`` (LPS; normalised here).

    Primary in (-180, 180], secondary in [-90, 90]. A direction straight along z (CRA/CAU 90) has
    no defined primary angle: 0 is returned.
    """
    d = np.asarray(direction, float)
    d = d / np.linalg.norm(d)
    secondary = np.degrees(np.arcsin(np.clip(d[2], -1.0, 1.0)))
    primary = 0.0 if np.hypot(d[0], d[1]) < 1e-12 else np.degrees(np.arctan2(d[0], -d[1]))
    return Angulation(float(primary), float(secondary))


def detector_axes(primary_deg: float, secondary_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(columns, rows, d)``: LPS unit vectors of the image's column axis (to the right), its row
    axis (downwards) and the viewing direction, for one angulation (module docstring)."""
    a, b = np.deg2rad(float(primary_deg)), np.deg2rad(float(secondary_deg))
    columns = np.array([np.cos(a), np.sin(a), 0.0])
    rows = np.array([np.sin(a) * np.sin(b), -np.cos(a) * np.sin(b), -np.cos(b)])
    return columns, rows, view_direction(primary_deg, secondary_deg)


def frontal(direction) -> np.ndarray:
    """``direction`` or its opposite, whichever has the detector in front of the patient
    (``d_y <= 0``, primary within +-90 degrees): both show a plane edge-on, only this one is a C-arm pose
    used in the cath lab."""
    d = np.asarray(direction, float)
    d = d / np.linalg.norm(d)
    if d[1] > 1e-12 or (abs(d[1]) <= 1e-12 and d[0] < 0):
        d = -d
    return d


# ----------------------------------------------------------------------------------------------
# planes seen edge-on


def _upward(normal) -> np.ndarray:
    n = np.asarray(normal, float)
    n = n / np.linalg.norm(n)
    return -n if n[2] < 0 else n


def s_curve(normal, primary_deg) -> np.ndarray:
    """Secondary angles (degrees) that show the plane of ``normal`` (LPS) edge-on at the given
    primary angles: the S-curve. ``normal`` and ``-normal`` give the same curve.

    A vertical plane (``n_z = 0``) is edge-on only at one primary angle, where any secondary angle
    works; elsewhere the curve runs off to +-90 degrees, which is returned.
    """
    n = _upward(normal)
    a = np.deg2rad(np.asarray(primary_deg, float))
    return np.degrees(np.arctan2(n[1] * np.cos(a) - n[0] * np.sin(a), n[2]))


def coplanar(normal, primary_deg: float) -> Angulation:
    """The angulation on the S-curve of ``normal`` at one primary angle."""
    return Angulation(float(primary_deg), float(s_curve(normal, primary_deg)))


def off_plane_deg(normal, angle: Angulation) -> float:
    """Angle (degrees) between the viewing direction and the plane of ``normal``: 0 on the S-curve
    (edge-on), 90 looking straight along the normal (en face)."""
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    return float(np.degrees(np.arcsin(min(1.0, abs(float(np.dot(angle.direction, n)))))))


def en_face(normal) -> Angulation:
    """The frontal angulation looking along the normal (the plane seen face-on)."""
    return angulation(frontal(normal))


def nearest_to_ap(normal, primary_range=(-90.0, 90.0), step_deg: float = 0.1) -> Angulation:
    """The S-curve angulation with the smallest total tilt from AP (``primary**2 + secondary**2``)."""
    a = np.arange(primary_range[0], primary_range[1] + 1e-9, step_deg)
    b = s_curve(normal, a)
    k = int(np.argmin(a**2 + b**2))
    return Angulation(float(a[k]), float(b[k]))


@dataclass(frozen=True)
class CuspViews:
    """The recommended implantation views for three cusp hinge points (LPS mm).

    ``three_cusp``: the coplanar view with the right coronary cusp projected midway between the left
    and the non-coronary cusps (viewing direction along the in-plane line from the right cusp to the
    midpoint of the other two). ``cusp_overlap``: the coplanar view in which the right and left
    coronary cusps project onto each other, isolating the non-coronary cusp (viewing direction along
    the in-plane line from the left to the right cusp). Both are taken with the detector in front
    (:func:`frontal`) and lie on the S-curve of the hinge-point plane (``centre``, ``normal``).
    """

    centre: np.ndarray
    normal: np.ndarray  #: unit, pointing superior (n_z >= 0)
    three_cusp: Angulation
    cusp_overlap: Angulation

    def as_dict(self) -> dict:
        return {"centre_lps_mm": self.centre.tolist(), "normal_lps": self.normal.tolist(),
                "three_cusp": self.three_cusp.as_dict(), "cusp_overlap": self.cusp_overlap.as_dict()}


def cusp_views(right, left, non) -> CuspViews:
    """Three-cusp and cusp-overlap views from the nadirs (hinge points) of the right, left and
    non-coronary cusps, each a world (LPS) point in mm.

    Raises
    ------
    ValueError
        The three points are (nearly) collinear: they define no plane.
    """
    r, l, n = (np.asarray(p, float) for p in (right, left, non))
    normal = np.cross(l - r, n - r)
    size = np.linalg.norm(l - r) * np.linalg.norm(n - r)
    if np.linalg.norm(normal) <= 1e-6 * max(size, 1e-12):
        raise ValueError("the three hinge points are collinear: they define no annulus plane")
    normal = _upward(normal)

    def in_plane(v):
        v = v - np.dot(v, normal) * normal
        return v / np.linalg.norm(v)

    three = angulation(frontal(in_plane(r - (l + n) / 2)))
    overlap = angulation(frontal(in_plane(r - l)))
    return CuspViews((r + l + n) / 3, normal, three, overlap)


# ----------------------------------------------------------------------------------------------
# cone-beam projection


@dataclass(frozen=True)
class Projection:
    """One cone-beam C-arm pose and its detector.

    Points are LPS mm. The detector has ``shape = (rows, columns)`` pixels of ``pixel_mm`` *at the
    isocentre* (``pixel_mm * sdd / sid`` on the detector); pixel ``(i, j)`` is row ``i``, column
    ``j``, and the isocentre projects onto the detector's centre ``((rows - 1) / 2, (columns - 1) / 2)``.
    """

    angle: Angulation
    isocentre: np.ndarray
    sid: float  #: source to isocentre (mm)
    sdd: float  #: source to detector (mm)
    pixel_mm: float  #: pixel size at the isocentre (mm)
    shape: tuple[int, int]

    @classmethod
    def at(cls, angle: Angulation, isocentre, sdd: float, pixel_mm: float, shape, sid: float = SOURCE_ISOCENTRE_MM) -> "Projection":
        if not sdd > sid > 0:
            raise ValueError(f"the detector must lie beyond the isocentre: sdd {sdd} mm, sid {sid} mm")
        return cls(angle, np.asarray(isocentre, float), float(sid), float(sdd), float(pixel_mm), (int(shape[0]), int(shape[1])))

    @property
    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(columns, rows, d)`` LPS unit vectors (:func:`detector_axes`)."""
        return detector_axes(self.angle.primary, self.angle.secondary)

    @property
    def source(self) -> np.ndarray:
        return self.isocentre - self.sid * self.axes[2]

    @property
    def detector_centre(self) -> np.ndarray:
        return self.source + self.sdd * self.axes[2]

    @property
    def magnification(self) -> float:
        """Magnification at the isocentre, ``sdd / sid``."""
        return self.sdd / self.sid

    @property
    def detector_pixel_mm(self) -> float:
        """Pixel size on the detector itself (mm)."""
        return self.pixel_mm * self.magnification

    @property
    def principal_point(self) -> np.ndarray:
        """``(row, column)`` of the isocentre's projection."""
        return np.array([(self.shape[0] - 1) / 2.0, (self.shape[1] - 1) / 2.0])

    @property
    def matrix(self) -> np.ndarray:
        """The 3x4 projection matrix: ``P @ (x, y, z, 1) ~ (column, row, 1) * depth`` (LPS mm -> pixels)."""
        c, r, d = self.axes
        f = self.sdd / self.detector_pixel_mm
        row0, col0 = self.principal_point
        k = np.array([[f, 0.0, col0], [0.0, f, row0], [0.0, 0.0, 1.0]])
        rot = np.stack([c, r, d])
        return k @ np.hstack([rot, -(rot @ self.source)[:, None]])

    def project(self, points) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates ``(..., 2)`` as (row, column) and depths ``(...)`` (mm from the source
        along ``d``) of LPS points ``(..., 3)``."""
        c, r, d = self.axes
        rel = np.asarray(points, float) - self.source
        depth = rel @ d
        scale = self.sdd / self.detector_pixel_mm / depth
        row0, col0 = self.principal_point
        return np.stack([row0 + scale * (rel @ r), col0 + scale * (rel @ c)], axis=-1), depth

    def pixel_points(self, rows=None, columns=None) -> np.ndarray:
        """LPS centres ``(len(rows), len(columns), 3)`` of detector pixels (all by default)."""
        c, r, _ = self.axes
        rows = np.arange(self.shape[0]) if rows is None else np.asarray(rows, float)
        columns = np.arange(self.shape[1]) if columns is None else np.asarray(columns, float)
        row0, col0 = self.principal_point
        p = self.detector_pixel_mm
        return (self.detector_centre + ((rows[:, None, None] - row0) * p) * r + ((columns[None, :, None] - col0) * p) * c)

    def as_dict(self) -> dict:
        c, r, d = self.axes
        return {
            "angulation": self.angle.as_dict(),
            "isocentre_lps_mm": self.isocentre.tolist(),
            "source_lps_mm": self.source.tolist(),
            "detector_centre_lps_mm": self.detector_centre.tolist(),
            "column_axis_lps": c.tolist(), "row_axis_lps": r.tolist(), "view_direction_lps": d.tolist(),
            "source_isocentre_mm": self.sid, "source_detector_mm": self.sdd,
            "pixel_mm_at_isocentre": self.pixel_mm, "pixel_mm_at_detector": self.detector_pixel_mm,
            "magnification": self.magnification, "shape": list(self.shape),
            "projection_matrix": self.matrix.tolist(),
        }
