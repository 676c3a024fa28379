"""The per-subject random draw: anatomical sizes and angles (mm, degrees) and the contrast."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Parameters:
    """Per-subject anatomical variation, drawn once by :func:`draw_parameters`.

    Lengths and radii are in mm, angles in degrees, intensities in HU. Distances along the root
    (``sinus_distance``, ``stj_distance``) are measured from the annulus plane along its normal.
    """

    annulus_major: float  #: semi-axes of the elliptic annulus (mm)
    annulus_minor: float
    annulus_twist_deg: float  #: angle of the major axis in the annulus plane
    sinus_distance: float  #: sinus of Valsalva: widest point of the root
    sinus_radius: float
    stj_distance: float  #: sinotubular junction: first narrowing above the sinus
    stj_radius: float
    ascending_radius: float
    root_tilt_deg: float  #: annulus normal away from the z axis
    root_azimuth_deg: float
    lv_tilt_deg: float  #: left-ventricle long axis away from the z axis
    lv_azimuth_deg: float
    lv_semi_axes: tuple[float, float, float]  #: long, then the two short semi-axes (mm)
    descending_radius: float
    abdominal_radius: float
    iliac_radius: float
    iliac_spread_deg: float  #: angle of each iliac artery from the -z axis
    jitter: np.ndarray  #: (3,) shift of the annulus centre, anatomical (z, y, x) mm
    contrast_hu: float  #: blood intensity
    stenosis_side: str  #: "left" or "right"
    stenosis_position: float  #: fraction of the iliac length
    stenosis_depth: float  #: fraction of the radius lost at the narrowest point


def draw_parameters(rng: np.random.Generator) -> Parameters:
    """Draw one subject's :class:`Parameters` from ``rng``.

    The draws happen in the order of the keyword arguments below (Python evaluates them left to
    right). That order is part of every existing subject: changing it, or drawing anything more
    here, changes the CT noise and therefore every written file. New builders draw from their own
    generator instead (see the package docstring).
    """
    u = rng.uniform
    a0 = u(11.5, 13.5)
    s_sin = u(9.0, 13.0)
    r_sin = u(15.5, 18.0)
    s_stj = s_sin + u(9.0, 13.0)
    r_stj = u(12.0, min(14.0, r_sin - 2.5))
    return Parameters(
        annulus_major=a0,
        annulus_minor=a0 * u(0.75, 0.9),
        annulus_twist_deg=u(0.0, 180.0),
        sinus_distance=s_sin,
        sinus_radius=r_sin,
        stj_distance=s_stj,
        stj_radius=r_stj,
        ascending_radius=u(max(r_stj + 1.0, 14.0), 16.5),
        root_tilt_deg=u(30.0, 45.0),
        root_azimuth_deg=u(-15.0, 15.0),
        lv_tilt_deg=u(50.0, 65.0),
        lv_azimuth_deg=u(-20.0, 20.0),
        lv_semi_axes=(u(42.0, 50.0), u(22.0, 26.0), u(20.0, 24.0)),
        descending_radius=u(10.5, 12.5),
        abdominal_radius=u(8.0, 9.5),
        iliac_radius=u(4.5, 5.8),
        iliac_spread_deg=u(22.0, 32.0),
        jitter=rng.uniform(-6.0, 6.0, size=3),
        contrast_hu=u(290.0, 360.0),
        stenosis_side=("left", "right")[int(rng.integers(2))],
        stenosis_position=u(0.35, 0.6),
        stenosis_depth=u(0.35, 0.55),
    )
