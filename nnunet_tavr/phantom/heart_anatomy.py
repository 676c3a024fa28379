"""Where the heart chambers and great vessels lie, and how large they are: the per-subject draw of
the heart builder and the :class:`~nnunet_tavr.phantom.shapes.Shape` of every structure.

Everything is laid out in the subject's anatomical frame (mm, (z, y, x) = superior, posterior,
patient's left; see :class:`~nnunet_tavr.phantom.frame.Frame`) around the landmarks the other
builders hang on: the aortic annulus (centre and normal), the left-ventricular long axis and
semi-axes, the ascending aorta and the descending aorta. Shapes are turned into the arrays'
physical frame with :meth:`Frame.place` / :meth:`Frame.turn`, so a rotated subject rotates its
heart too.

Anatomy (sizes are the draw's ranges; the seed paper's end-systolic TAVI population, Table 3,
has LA 88 ml, RA 83 ml, RV cavity 47 ml, PA 60 ml, PV 12 ml, SVC 15 ml, LV myocardium 135 g):

- **right ventricle**: a crescent wrapped around the septum (an ellipsoid beside the left
  ventricle, anterior and to the right of it, minus the left ventricle's epicardial ellipsoid),
  below the annulus plane, with an outflow tract (RVOT) rising to the pulmonary valve;
- **pulmonary artery**: trunk from the pulmonary valve (anterior, left and above the aortic valve)
  up and back along the left of the ascending aorta, bifurcating under the arch into a left
  branch (over to the left, in front of the descending aorta) and a right branch (behind the
  ascending aorta);
- **left ventricle's base**: the existing ventricle ends flat and open at the annulus plane; a
  myocardial cap (:data:`BASE_CAP_MM` thick) closes it except for the aortic root and the mitral
  orifice, so the cavity touches only the aorta, the myocardium and the left atrium;
- **left atrium**: an ellipsoid behind the aortic root, above the left ventricle's base and in
  front of the descending aorta, with a funnel down to the mitral orifice (behind and left of the
  aortic valve, in the annulus plane); the **left atrial appendage** is a tapered finger from its
  anterior-left side towards the left of the pulmonary trunk;
- **pulmonary veins**: four tubes (superior and inferior, left and right) entering the left
  atrium from behind and the side;
- **right atrium**: an ellipsoid to the right, joined to the right ventricle's base by a short
  tube (the tricuspid orifice), with its appendage as an anterior lobe;
- **superior vena cava**: a tube from the right atrium's roof up, against the right-posterior side
  of the ascending aorta;
- **papillary muscles**: two ellipsoids on the left ventricle's free wall; they belong to the
  myocardium, not to the cavity (the seed paper's protocol).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnunet_tavr.geometry import plane_frame, unit
from nnunet_tavr.phantom.canvas import bezier
from nnunet_tavr.phantom.frame import Frame
from nnunet_tavr.phantom.parameters import Parameters
from nnunet_tavr.phantom.shapes import Ellipsoid, HalfSpace, Intersection, Shape, Tube, Union
from nnunet_tavr.phantom.ventricle import WALL_MM

S, P, L = np.eye(3)  # anatomical unit vectors: superior, posterior, patient's left

#: Points per centreline of the tubes (segments of a few mm: the capsules make them smooth).
TUBE_POINTS = 16
#: Thickness (mm) of the myocardial cap that closes the left ventricle's base above the annulus plane.
BASE_CAP_MM = 8.0


@dataclass(frozen=True)
class HeartParameters:
    """One subject's heart: sizes in mm, intensities as fractions or HU (drawn by :func:`draw_heart`)."""

    scale: float  #: overall size of the chambers (1 = the mid-range heart)
    la_semi: tuple[float, float, float]  #: left atrium semi-axes (superior, posterior, left)
    ra_semi: tuple[float, float, float]  #: right atrium semi-axes
    rv_reach: float  #: how far the right ventricle reaches beyond the septum (mm)
    rv_wrap: float  #: its half-width around the left ventricle (mm)
    pv_radii: tuple[float, float, float, float]  #: LSPV, LIPV, RSPV, RIPV (mm)
    pv_lengths: tuple[float, float, float, float]
    laa_length: float
    laa_radius: float  #: at the ostium; it tapers to 45 %
    pa_radius: float  #: pulmonary trunk
    pa_branch_radius: float
    pa_trunk_length: float
    svc_radius: float
    mitral_offset: float  #: mitral orifice centre from the aortic valve's, in the annulus plane (mm)
    mitral_radius: float
    tricuspid_radius: float
    papillary_semi: tuple[float, float, float]  #: along the long axis, radial, tangential
    jitter: np.ndarray  #: (4, 3) mm shifts of the LA, RA, RV and pulmonary valve
    right_fraction: float  #: right-heart enhancement relative to the aorta's (TAVI bolus timing)
    svc_fraction: float  #: superior vena cava enhancement relative to the aorta's (injection arm)
    ivc_hu: float  #: unenhanced caval blood mixing into the lower right atrium


def draw_heart(rng: np.random.Generator) -> HeartParameters:
    """Draw one subject's :class:`HeartParameters` from the heart builder's own generator."""
    u = rng.uniform
    k = u(0.92, 1.08)
    return HeartParameters(
        scale=k,
        la_semi=(k * u(24.0, 29.0), k * u(17.0, 21.0), k * u(31.0, 37.0)),
        ra_semi=(k * u(25.0, 30.0), k * u(20.0, 24.0), k * u(19.0, 23.0)),
        rv_reach=k * u(14.0, 20.0),
        rv_wrap=k * u(34.0, 42.0),
        pv_radii=tuple(u(5.0, 6.5, size=4)),
        pv_lengths=tuple(u(18.0, 26.0, size=4)),
        laa_length=u(34.0, 44.0),
        laa_radius=u(8.5, 11.0),
        pa_radius=u(12.5, 15.5),
        pa_branch_radius=u(8.5, 10.5),
        pa_trunk_length=u(36.0, 46.0),
        svc_radius=u(8.0, 10.0),
        mitral_offset=u(15.0, 19.0),
        mitral_radius=u(9.0, 12.0),
        tricuspid_radius=u(11.0, 14.0),
        papillary_semi=(u(9.0, 13.0), u(4.5, 6.0), u(4.0, 5.0)),
        jitter=rng.uniform(-3.0, 3.0, size=(4, 3)),
        right_fraction=u(0.45, 0.8),
        svc_fraction=u(0.9, 2.2),
        ivc_hu=u(60.0, 140.0),
    )


@dataclass
class HeartShapes:
    """The structures' raw shapes in the arrays' physical frame, as ``layers``: (TotalSegmentator
    mask name, shape) in precedence order (an earlier layer wins a contested point; one mask may
    be several layers), the papillary muscles (taken from the LV cavity), and the landmarks
    recorded in ``truth.json`` (physical mm)."""

    layers: list[tuple[str, Shape]]
    papillary: Shape
    landmarks: dict[str, np.ndarray]


class _Placer:
    """Builds shapes from anatomical coordinates (mm around the FOV centre) in the physical frame."""

    def __init__(self, frame: Frame):
        self.frame = frame

    def ellipsoid(self, centre, axes, semi) -> Ellipsoid:
        return Ellipsoid(self.frame.place(centre), [self.frame.turn(a) for a in axes], semi)

    def tube(self, points, radii) -> Tube:
        return Tube(np.array([self.frame.place(p) for p in points]), radii)

    def half_space(self, point, normal) -> HalfSpace:
        return HalfSpace(self.frame.place(point), self.frame.turn(normal))

    def curve(self, p0, p1, p2, p3) -> np.ndarray:
        return bezier(np.asarray(p0, float), np.asarray(p1, float), np.asarray(p2, float), np.asarray(p3, float), TUBE_POINTS)

    def straight(self, p0, p1) -> np.ndarray:
        return np.linspace(np.asarray(p0, float), np.asarray(p1, float), 4)


def heart_shapes(frame: Frame, prm: Parameters, hp: HeartParameters) -> HeartShapes:
    """Lay out the chambers and vessels of one subject (see the module docstring)."""
    place = _Placer(frame)
    a, n, u = frame.annulus_centre, frame.annulus_normal, frame.lv_axis
    lvc, (a_lv, b_lv, c_lv) = frame.lv_centre, prm.lv_semi_axes
    j_la, j_ra, j_rv, j_pv = hp.jitter
    f1, f2 = plane_frame(u, hint=(0.0, 0.0, 1.0))

    # The left ventricle's base: a myocardial cap over the open face of the cavity (the existing
    # ventricle ends flat at the annulus plane), pierced by the aortic root and the mitral orifice.
    outer_lv = place.ellipsoid(lvc, (u, f1, f2), np.array(prm.lv_semi_axes) + WALL_MM)
    cap = Intersection(outer_lv, place.half_space(a, n), place.half_space(a + BASE_CAP_MM * n, -n))
    mitral = a + hp.mitral_offset * unit(_perpendicular(P + 0.4 * L, n))  # behind and left of the aortic valve

    # Left atrium: behind the root, above the left ventricle's base, in front of the descending
    # aorta; its mitral funnel runs down to the ventricle's base.
    la_centre = a + hp.scale * (12.0 * S + 26.0 * P + 6.0 * L) + j_la
    la = place.ellipsoid(la_centre, (S, P, L), hp.la_semi)
    funnel = place.tube(place.straight(mitral - 2.0 * n, la_centre), np.linspace(hp.mitral_radius, hp.mitral_radius + 6.0, 4))

    # Right ventricle: anterior-right of the left ventricle, around its septal wall, below the
    # annulus plane, with its outflow tract up to the pulmonary valve.
    septal = unit(_perpendicular(-0.8 * P - 0.6 * L, u))
    wrap = np.cross(u, septal)
    b_out = 0.5 * (b_lv + c_lv) + WALL_MM  # epicardial short radius
    # Along the septal direction the body spans from inside the left ventricle (-0.3 b_out, which
    # the ventricle then removes) to rv_reach beyond the epicardium: a crescent remains.
    inner, outer = -0.3 * b_out, b_out + hp.rv_reach
    rv_centre = lvc + 0.5 * (inner + outer) * septal + 4.0 * u + j_rv
    rv_semi = (0.85 * (a_lv + WALL_MM), 0.5 * (outer - inner), hp.rv_wrap)
    rv_body = place.ellipsoid(rv_centre, (u, septal, wrap), rv_semi)
    valve = a + 18.0 * S - 22.0 * P + 17.0 * L + j_pv  # pulmonary valve: anterior, left, above the aortic valve
    rvot_start = rv_centre + 0.45 * (valve - rv_centre)
    rvot = place.tube(place.curve(rvot_start, rvot_start + 0.3 * (valve - rvot_start), valve - 8.0 * S, valve),
                      np.linspace(hp.pa_radius + 3.0, hp.pa_radius, TUBE_POINTS))
    right_ventricle = Union(Intersection(rv_body, place.half_space(a, -n)), rvot)

    # Right atrium (with its appendage, an anterior lobe): to the right; the tricuspid orifice
    # joins it to the right ventricle's base.
    ra_centre = a + hp.scale * (-4.0 * S + 9.0 * P - 36.0 * L) + j_ra
    ra_body = place.ellipsoid(ra_centre, (S, P, L), hp.ra_semi)
    raa = place.ellipsoid(ra_centre + hp.ra_semi[0] * 0.45 * S - hp.ra_semi[1] * 0.85 * P + 8.0 * L, (S, P, L), (9.0, 12.0, 8.0))
    towards_ra = unit(ra_centre - rv_centre)
    reach_rv = 1.0 / np.sqrt(sum((towards_ra @ axis / semi) ** 2 for axis, semi in zip((u, septal, wrap), rv_semi)))
    tricuspid = place.tube(place.straight(rv_centre + 0.6 * reach_rv * towards_ra, ra_centre), hp.tricuspid_radius)

    # Left atrial appendage: a finger from the atrium's anterior-left side, forward and down.
    laa0 = la_centre + 0.3 * hp.la_semi[0] * S - 0.45 * hp.la_semi[1] * P + 0.7 * hp.la_semi[2] * L
    laa3 = laa0 + hp.laa_length * unit(-0.25 * S - 0.8 * P + 0.45 * L)
    laa_line = place.curve(laa0, laa0 + 12.0 * unit(0.3 * S - 0.4 * P + L), laa3 + 8.0 * S, laa3)
    appendage = place.tube(laa_line, hp.laa_radius * np.linspace(1.0, 0.45, TUBE_POINTS))

    # Pulmonary artery: trunk up, back and left, then the left and right branches.
    trunk_dir = unit(0.55 * S + 0.75 * P + 0.2 * L)
    bifurcation = valve + hp.pa_trunk_length * trunk_dir
    trunk = place.tube(place.curve(valve, valve + 12.0 * (S + 0.3 * P), bifurcation - 12.0 * trunk_dir, bifurcation),
                       np.linspace(hp.pa_radius, hp.pa_radius * 0.9, TUBE_POINTS))
    lpa_end = bifurcation + 38.0 * unit(-0.2 * S + 0.55 * P + 0.8 * L)
    rpa_end = bifurcation + 62.0 * unit(-0.15 * S + 0.25 * P - 1.0 * L)
    r_branch = np.full(TUBE_POINTS, hp.pa_branch_radius)
    lpa = place.tube(place.curve(bifurcation, bifurcation + 10.0 * trunk_dir, lpa_end - 10.0 * L, lpa_end), r_branch)
    rpa = place.tube(place.curve(bifurcation, bifurcation + 8.0 * trunk_dir, rpa_end + 15.0 * L, rpa_end), r_branch)

    # Superior vena cava: from the right atrium's roof up, right of (and against) the ascending aorta.
    # It passes the ascending aorta at 80 % of its straight length, overlapping it by 1 mm (the aorta wins).
    roof = ra_centre + 0.6 * hp.ra_semi[0] * S
    beside = a + 0.8 * frame.straight_length * n
    beside = beside + (prm.ascending_radius + hp.svc_radius - 1.0) * unit(_perpendicular(-L + 0.3 * P, n))
    svc_line = np.vstack([place.curve(roof, roof + 20.0 * S, beside - 15.0 * S, beside), place.straight(beside, beside + 35.0 * S)[1:]])
    svc = place.tube(svc_line, np.full(len(svc_line), hp.svc_radius))

    # Pulmonary veins: from inside the atrium out, back and sideways (superior ones up, inferior down).
    veins = []
    for (side, up), r, length in zip(((1, 1), (1, -1), (-1, 1), (-1, -1)), hp.pv_radii, hp.pv_lengths):
        start = la_centre + up * 0.35 * hp.la_semi[0] * S + 0.3 * hp.la_semi[1] * P + side * 0.6 * hp.la_semi[2] * L
        direction = unit(up * 0.3 * S + 0.45 * P + side * 0.85 * L)
        end = start + (length + 0.4 * hp.la_semi[2]) * direction
        veins.append(place.tube(place.curve(start, start + 10.0 * side * L, end - 10.0 * direction, end), np.full(TUBE_POINTS, r)))

    # Papillary muscles: two on the free wall, a little apical of the ventricle's centre.
    muscles = []
    for angle in (np.deg2rad(60.0), np.deg2rad(-60.0)):
        radial = np.cos(angle) * f1 + np.sin(angle) * f2
        tangential = np.cross(u, radial)
        reach = min(b_lv, c_lv) - hp.papillary_semi[1] + 1.0
        muscles.append(place.ellipsoid(lvc - 0.2 * a_lv * u + reach * radial, (u, radial, tangential), hp.papillary_semi))

    layers = [
        ("heart_atrium_left", funnel),
        ("heart_myocardium", cap),
        ("heart_atrium_left", la),
        ("heart_ventricle_right", right_ventricle),
        ("heart_atrium_right", Union(ra_body, raa)),
        ("heart_atrium_right", tricuspid),
        ("atrial_appendage_left", appendage),
        ("pulmonary_artery", Union(trunk, lpa, rpa)),
        ("superior_vena_cava", svc),
        ("pulmonary_vein", Union(*veins)),
    ]
    landmarks = {"pulmonary_valve_mm": frame.place(valve), "pulmonary_bifurcation_mm": frame.place(bifurcation),
                 "mitral_orifice_mm": frame.place(mitral), "left_atrium_center_mm": frame.place(la_centre),
                 "right_atrium_center_mm": frame.place(ra_centre)}
    return HeartShapes(layers=layers, papillary=Union(*muscles), landmarks=landmarks)


def _perpendicular(v, axis) -> np.ndarray:
    """``v`` without its component along the unit vector ``axis``."""
    v = np.asarray(v, float)
    return v - (v @ axis) * axis
