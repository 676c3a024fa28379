"""The aortic root and ascending aorta: a straight tube along the annulus normal with an elliptic
annulus, the sinus of Valsalva and the sinotubular junction (STJ), rendered analytically."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nnunet_tavr.geometry import plane_frame
from nnunet_tavr.phantom.aorta import AORTA_PARTS
from nnunet_tavr.phantom.canvas import Canvas, ease, profile
from nnunet_tavr.phantom.frame import Frame
from nnunet_tavr.phantom.parameters import Parameters
from nnunet_tavr.phantom.structure import AORTA, Structure

#: Distance (mm) above the STJ at which the tube reaches the ascending radius.
ASCENDING_TAPER_MM = 20.0


@dataclass(frozen=True)
class Annulus:
    """The elliptic annulus in the arrays' physical frame (mm, (z, y, x))."""

    centre: np.ndarray
    normal: np.ndarray  #: unit, ventricle -> aorta
    major_axis: np.ndarray  #: unit, in the plane
    minor_axis: np.ndarray  #: unit, ``normal x major_axis``
    major_radius: float  #: semi-axes (mm)
    minor_radius: float

    def footprint(self, coords: list[np.ndarray], grow_mm: float = 0.0) -> np.ndarray:
        """Voxels of a box (``coords``: mm per axis, :meth:`Canvas.coordinates`) whose projection
        onto the annulus plane lies inside the ellipse grown by ``grow_mm``; bool, box-shaped."""
        rel = Canvas.offsets(coords, self.centre)
        u = sum(rel[k] * self.major_axis[k] for k in range(3))
        v = sum(rel[k] * self.minor_axis[k] for k in range(3))
        return (u / (self.major_radius + grow_mm)) ** 2 + (v / (self.minor_radius + grow_mm)) ** 2 <= 1


def paint_root(frame: Frame, prm: Parameters, canvas: Canvas) -> Structure:
    """Paint the straight root + ascending tube from the annulus plane up :attr:`Frame.straight_length` mm.

    Its cross-section is an ellipse (the annulus semi-axes, twisted by ``annulus_twist_deg``)
    that eases into the circular sinus at ``sinus_distance``; above it the radius follows a
    cosine-eased profile through the sinus, the STJ (an exact local minimum) and the ascending
    radius. Voxels up to the STJ are "root", above it "ascending".

    Returns
    -------
    Structure
        ``masks``: ``aorta`` (this tube only). ``truth``: the annulus (centre, normal, major axis,
        radii, area, perimeter and the derived diameters), sinus, STJ, root height, the ascending
        diameter 40 mm above the annulus and the tube length. ``aux``: ``aorta_part`` (uint8
        (z, y, x), :data:`AORTA_PARTS` root / ascending), ``annulus`` (:class:`Annulus`), and for
        the label rules ``box`` (slices around the tube, or None), ``tube`` (bool, box-shaped) and
        ``axial_mm`` (distance from the annulus plane along the normal, box-shaped, mm).
    """
    n = frame.annulus_normal
    n_w = frame.turn(n)
    e1, e2 = plane_frame(n, hint=(0.0, 1.0, 0.0))
    twist = np.deg2rad(prm.annulus_twist_deg)
    major_dir = math.cos(twist) * e1 + math.sin(twist) * e2
    annulus = Annulus(frame.place(frame.annulus_centre), n_w, frame.turn(major_dir), frame.turn(np.cross(n, major_dir)),
                      prm.annulus_major, prm.annulus_minor)
    a_w, major_w, minor_w, straight = annulus.centre, annulus.major_axis, annulus.minor_axis, frame.straight_length
    rmax = max(prm.sinus_radius, prm.ascending_radius) + 2
    corners = np.array([a_w + sgn1 * rmax * major_w + sgn2 * rmax * minor_w + t * n_w
                        for sgn1 in (-1, 1) for sgn2 in (-1, 1) for t in (0, straight)])
    knots = [(0.0, 0.0), (prm.sinus_distance, prm.sinus_radius), (prm.stj_distance, prm.stj_radius),
             (prm.stj_distance + ASCENDING_TAPER_MM, prm.ascending_radius)]

    aorta_part = canvas.blank(np.uint8)
    box, coords = canvas.box(corners.min(0), corners.max(0))
    tube = s = None
    if box is not None:
        rel = canvas.offsets(coords, a_w)
        s = sum(rel[k] * n_w[k] for k in range(3))
        u = sum(rel[k] * major_w[k] for k in range(3))
        v = sum(rel[k] * minor_w[k] for k in range(3))
        radius = profile(s, knots)
        grow = ease(s / prm.sinus_distance)  # elliptic annulus -> circular sinus
        below_sinus = s < prm.sinus_distance
        semi_a = np.where(below_sinus, prm.annulus_major + (prm.sinus_radius - prm.annulus_major) * grow, radius)
        semi_b = np.where(below_sinus, prm.annulus_minor + (prm.sinus_radius - prm.annulus_minor) * grow, radius)
        tube = ((u / semi_a) ** 2 + (v / semi_b) ** 2 <= 1.0) & (s >= 0) & (s <= straight)
        view = aorta_part[box]
        view[tube & (s <= prm.stj_distance)] = AORTA_PARTS["root"]
        view[tube & (s > prm.stj_distance)] = AORTA_PARTS["ascending"]

    truth = _root_truth(annulus, prm, knots, straight)
    aux = {"aorta_part": aorta_part, "annulus": annulus, "box": box, "tube": tube, "axial_mm": s}
    return Structure("root", masks={AORTA: aorta_part > 0}, truth=truth, aux=aux)


def _root_truth(annulus: Annulus, prm: Parameters, knots, straight: float) -> dict:
    """The root's ``truth.json`` keys (mm; Ramanujan's second approximation of the perimeter)."""
    a, b = annulus.major_radius, annulus.minor_radius
    h = ((a - b) / (a + b)) ** 2
    perimeter = math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))
    asc40 = float(profile(np.array([40.0]), knots)[0])
    return {
        "annulus_center_mm": annulus.centre.tolist(),
        "annulus_normal": annulus.normal.tolist(),
        "annulus_major_axis": annulus.major_axis.tolist(),
        "annulus_major_radius_mm": a,
        "annulus_minor_radius_mm": b,
        "annulus_area_mm2": math.pi * a * b,
        "annulus_perimeter_mm": perimeter,
        "annulus_min_diameter_mm": 2 * b,
        "annulus_max_diameter_mm": 2 * a,
        "annulus_area_diameter_mm": 2 * math.sqrt(a * b),
        "annulus_perimeter_diameter_mm": perimeter / math.pi,
        "sinus_distance_mm": prm.sinus_distance,
        "sinus_diameter_mm": 2 * prm.sinus_radius,
        "stj_distance_mm": prm.stj_distance,
        "stj_diameter_mm": 2 * prm.stj_radius,
        "root_height_mm": prm.stj_distance,
        "ascending_diameter_40mm": 2 * asc40,
        "straight_aorta_length_mm": straight,
    }
