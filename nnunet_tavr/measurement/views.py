"""C-arm views of the measured annulus plane: its S-curve and the recommended implantation views.

The ``carm_views`` section of ``measurements.json`` (angles in degrees, :mod:`nnunet_tavr.carm`'s
conventions: primary LAO > 0 / RAO < 0, secondary CRA > 0 / CAU < 0, patient LPS frame from the
image's origin and direction):

- ``secondary_at_rao30`` / ``secondary_at_ap`` / ``secondary_at_lao30``: the S-curve (the
  secondary angle that shows the annulus edge-on) at three primary angles; the whole curve, every
  5 degrees, is in ``geometry.s_curve``;
- ``nearest_ap_primary`` / ``nearest_ap_secondary``: the coplanar view with the least total tilt;
- ``en_face_primary`` / ``en_face_secondary``: the view along the annulus normal;
- with hinge points (``measure --hinge-points``): ``three_cusp_*`` and ``cusp_overlap_*`` from the
  cusp nadirs (:func:`nnunet_tavr.carm.cusp_views`), and ``hinge_plane_angle``, the angle between
  the hinge points' plane and the fitted annulus plane.

:func:`plot_views` draws the S-curve with these views (``s_curve.png``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnunet_tavr.carm import cusp_views, en_face, nearest_to_ap, s_curve
from nnunet_tavr.geometry import vector_to_world
from nnunet_tavr.geometry import angle_deg, unit
from nnunet_tavr.measurement.record import Section

CONVENTION = "primary LAO > 0 / RAO < 0, secondary CRA > 0 / CAU < 0 (DICOM positioner angles), patient LPS frame"


def measure_views(annulus: Section, geometry, hinge_points: dict | None = None) -> Section:
    """The ``carm_views`` section from a measured ``annulus`` section and the image geometry.

    Parameters
    ----------
    annulus : Section
        :func:`nnunet_tavr.measurement.annulus.measure_annulus`'s section (``normal`` in the arrays'
        frame).
    geometry : nnunet_tavr.io.Geometry
        The segmentation's grid (origin and direction give the LPS frame).
    hinge_points : dict, optional
        ``{"RCC", "LCC", "NCC"}`` cusp nadirs, world (LPS) mm (:mod:`nnunet_tavr.hinge_points`).
    """
    if not annulus.ok:
        return Section.absent("carm_views", f"needs the annulus plane; annulus missing: {annulus.missing}")
    normal = unit(vector_to_world(np.asarray(annulus.get("normal"), float), geometry))
    section = Section("carm_views")
    section.add("annulus_normal_lps", normal, "1", "annulus normal (ventricle -> aorta) in the patient's LPS frame")
    for name, primary in (("rao30", -30.0), ("ap", 0.0), ("lao30", 30.0)):
        section.add(f"secondary_at_{name}", float(s_curve(normal, primary)), "deg",
                    f"S-curve: secondary angle showing the annulus plane edge-on at primary {primary:+g} ({CONVENTION})")
    near = nearest_to_ap(normal)
    section.add("nearest_ap_primary", near.primary, "deg", "coplanar view with the least primary^2 + secondary^2")
    section.add("nearest_ap_secondary", near.secondary, "deg", "coplanar view with the least primary^2 + secondary^2")
    face = en_face(normal)
    section.add("en_face_primary", face.primary, "deg", "view along the annulus normal, detector in front")
    section.add("en_face_secondary", face.secondary, "deg", "view along the annulus normal, detector in front")
    if hinge_points:
        views = cusp_views(hinge_points["RCC"], hinge_points["LCC"], hinge_points["NCC"])
        for key, view, how in (("three_cusp", views.three_cusp, "right cusp midway between left and non-coronary"),
                               ("cusp_overlap", views.cusp_overlap, "right and left cusps superimposed")):
            section.add(f"{key}_primary", view.primary, "deg", f"{how}: view along the hinge plane")
            section.add(f"{key}_secondary", view.secondary, "deg", f"{how}: view along the hinge plane")
        section.add("hinge_plane_angle", angle_deg(views.normal, normal, oriented=False), "deg",
                    "angle between the hinge points' plane and the fitted annulus plane")
        section.geometry["hinge_points_lps_mm"] = {k: np.asarray(v, float).tolist() for k, v in hinge_points.items()}
    else:
        section.notes.append("no hinge points: the three-cusp and cusp-overlap views need them (measure --hinge-points)")
    curve = np.arange(-90.0, 90.0 + 1e-9, 5.0)
    section.geometry["s_curve"] = [[float(a), float(b)] for a, b in zip(curve, s_curve(normal, curve))]
    return section


def plot_views(section: Section, path, case: str = "") -> Path:
    """``s_curve.png``: the S-curve of the annulus plane with its recommended views."""
    from nnunet_tavr.carm import Angulation
    from nnunet_tavr.fluoro.figures import s_curve_axes
    from nnunet_tavr.io import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    if not section.ok:
        ax.text(0.5, 0.5, f"C-arm views missing:\n{section.missing}", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        views = {"nearest_ap": Angulation(section.get("nearest_ap_primary"), section.get("nearest_ap_secondary"))}
        for key in ("three_cusp", "cusp_overlap"):
            if section.get(f"{key}_primary") is not None:
                views[key] = Angulation(section.get(f"{key}_primary"), section.get(f"{key}_secondary"))
        s_curve_axes(ax, section.get("annulus_normal_lps"), views, title=f"{case}: annulus S-curve".strip(": "))
    fig.tight_layout()
    return save_figure(fig, path)
