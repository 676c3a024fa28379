"""The heart chambers and great vessels (opt-in builder: ``make_subject(heart_chambers=True)``).

Adds the right ventricle, both atria (the left one with its appendage as a separate mask), the
pulmonary artery, the superior vena cava, the pulmonary veins and two papillary muscles (moved
from the LV cavity into the myocardium) to a subject, with CT intensities of an aortic-phase TAVI
scan and their true volumes. Layout and sizes: :mod:`nnunet_tavr.phantom.heart_anatomy`.

Masks carry TotalSegmentator's names: the v1 chamber names (``heart_atrium_left``,
``heart_atrium_right``, ``heart_ventricle_right``, ``pulmonary_artery``; the LV and myocardium
masks exist already) and the v2 vessel names (``pulmonary_vein``, ``superior_vena_cava``,
``atrial_appendage_left``).

Precedence: the aorta wins every voxel, then the left ventricle and its myocardium, then the
layers of :func:`~nnunet_tavr.phantom.heart_anatomy.heart_shapes` in their order (earlier wins).
Voxels outside the field of view belong to nothing.

Truth (``truth.json``)
----------------------
``heart_volumes_ml``: the seed's structures (:mod:`nnunet_tavr.cardiac.structures`; the left
atrium includes its appendage), ``heart_mask_volumes_ml``: every heart mask by its
TotalSegmentator name, ``lv_mass_g`` (myocardium x :data:`MYOCARDIAL_DENSITY_G_PER_ML`), the
intensities (``heart_hu``) and landmarks. Volumes are those of the continuous shapes inside the
field of view, integrated with :func:`nnunet_tavr.phantom.shapes.measure` (boundary voxels split
into 4 x 4 x 4 samples), so a mask's voxel count is checked against an independent number; the
aorta, painted as voxels by its builder, is its voxel count.

Generator: ``np.random.default_rng([seed, BUILDER_ID])`` for the anatomy and
``default_rng([seed, BUILDER_ID, 1])`` for the intensities.
"""

from __future__ import annotations

import numpy as np

from nnunet_tavr.cardiac.structures import MYOCARDIAL_DENSITY_G_PER_ML
from nnunet_tavr.phantom.canvas import Canvas
from nnunet_tavr.phantom.frame import Frame
from nnunet_tavr.phantom.heart_anatomy import S, draw_heart, heart_shapes
from nnunet_tavr.phantom.parameters import Parameters
from nnunet_tavr.phantom.shapes import Difference, Implicit, Intersection, Union, measure, paint
from nnunet_tavr.phantom.structure import AORTA, LEFT_VENTRICLE, MYOCARDIUM, Structure, totalseg_name

#: This builder's generator id (``default_rng([seed, BUILDER_ID])``); unique among builders.
BUILDER_ID = 17
#: Sample points per axis in a boundary voxel when integrating volumes.
SUBSAMPLES = 4
#: Epicardial fat (HU) replacing lung within FAT_MM (mm) of the heart.
FAT_HU, FAT_MM = -90.0, 6.0

#: The masks this builder adds to a subject, in the order they are written (it also changes
#: ``heart_ventricle_left`` and ``heart_myocardium``: papillary muscles, the basal cap).
HEART_MASK_NAMES: tuple[str, ...] = tuple(totalseg_name(name) for name in (
    "heart_atrium_left", "atrial_appendage_left", "heart_ventricle_right", "heart_atrium_right",
    "pulmonary_artery", "superior_vena_cava", "pulmonary_vein"))


def paint_heart(frame: Frame, prm: Parameters, canvas: Canvas, seed: int, aorta: np.ndarray, ventricle: Structure,
                cut: np.ndarray) -> Structure:
    """Paint the heart chambers and vessels around the left ventricle and measure every volume.

    Parameters
    ----------
    seed : int
        The subject's seed (this builder draws from its own generator, see the module docstring).
    aorta : np.ndarray
        bool (z, y, x): the aorta; nothing here claims its voxels.
    ventricle : Structure
        What :func:`~nnunet_tavr.phantom.ventricle.paint_ventricle` returned (its masks and the
        ``geometry`` used to integrate the LV volumes).
    cut : np.ndarray
        bool (z, y, x): outside the field of view.

    Returns
    -------
    Structure
        ``masks``: :data:`HEART_MASK_NAMES` plus the LV cavity and myocardium with the papillary
        muscles moved into the myocardium (all cut to the field of view). ``truth``: see the module
        docstring. ``aux``: ``parameters`` (:class:`HeartParameters`), ``layout``
        (:class:`HeartShapes`) and ``seed``.
    """
    hp = draw_heart(np.random.default_rng([int(seed), BUILDER_ID]))
    layout = heart_shapes(frame, prm, hp)
    geometry = ventricle.aux["geometry"]
    reach = geometry.reach()
    pool = Implicit(geometry.pool, geometry.centre - reach, geometry.centre + reach)
    outer = Implicit(geometry.outer, geometry.centre - reach, geometry.centre + reach)
    blocked = aorta | cut  # voxels no shape of this builder may claim
    volumes_mm3: dict[str, float] = {}

    # The papillary muscles leave the cavity for the myocardium.
    papillary = paint(layout.papillary, canvas) & ventricle.masks[LEFT_VENTRICLE]
    lv = ventricle.masks[LEFT_VENTRICLE] & ~papillary & ~cut
    myo = (ventricle.masks[MYOCARDIUM] | papillary) & ~cut

    # The layers in precedence order; a mask's shape is the union of its layers, each without
    # everything before it (exact below the voxel); its mask is painted the same way on centres.
    masks = {LEFT_VENTRICLE: lv, MYOCARDIUM: myo, **{name: canvas.blank() for name in HEART_MASK_NAMES}}
    parts = {MYOCARDIUM: [Union(Difference(outer, pool), Intersection(pool, layout.papillary))]}
    taken = blocked | ventricle.masks[LEFT_VENTRICLE] | ventricle.masks[MYOCARDIUM]
    earlier = [outer]
    for name, raw in layout.layers:
        mask = paint(raw, canvas, taken)
        masks[name] |= mask
        parts.setdefault(name, []).append(Difference(raw, Union(*earlier)))
        taken |= mask
        earlier.append(raw)
    volumes_mm3[LEFT_VENTRICLE] = measure(Difference(pool, layout.papillary), canvas, lv, blocked, SUBSAMPLES)
    for name, shapes in parts.items():
        volumes_mm3[name] = measure(Union(*shapes), canvas, masks[name], blocked, SUBSAMPLES)

    voxel_mm3 = float(np.prod(canvas.spacing))
    volumes_mm3[AORTA] = float((aorta & ~cut).sum()) * voxel_mm3
    truth = _truth(volumes_mm3, hp, prm, layout)
    return Structure("heart", masks=masks, truth=truth, aux={"parameters": hp, "layout": layout, "seed": int(seed)})


def _truth(volumes_mm3: dict, hp, prm: Parameters, layout) -> dict:
    ml = {name: round(v / 1000.0, 4) for name, v in volumes_mm3.items()}
    seed_structures = {
        "pulmonary_veins": ml["pulmonary_vein"],
        "left_atrium": round(ml["heart_atrium_left"] + ml["atrial_appendage_left"], 4),
        "left_ventricle_cavity": ml[LEFT_VENTRICLE],
        "left_ventricle_myocardium": ml[MYOCARDIUM],
        "aorta": ml[AORTA],
        "superior_vena_cava": ml["superior_vena_cava"],
        "right_atrium": ml["heart_atrium_right"],
        "right_ventricle_cavity": ml["heart_ventricle_right"],
        "pulmonary_artery": ml["pulmonary_artery"],
    }
    left, right, svc = _enhancement(hp, prm)
    return {
        "heart_volumes_ml": seed_structures,
        "heart_mask_volumes_ml": {k: ml[k] for k in (LEFT_VENTRICLE, MYOCARDIUM, *HEART_MASK_NAMES, AORTA)},
        "heart_volume_method": (f"continuous shapes inside the field of view, boundary voxels integrated on "
                                f"{SUBSAMPLES}x{SUBSAMPLES}x{SUBSAMPLES} samples; aorta: voxel count"),
        "lv_mass_g": round(ml[MYOCARDIUM] * MYOCARDIAL_DENSITY_G_PER_ML, 4),
        "myocardial_density_g_per_ml": MYOCARDIAL_DENSITY_G_PER_ML,
        "heart_hu": {"left_heart": left, "right_heart": right, "superior_vena_cava": svc,
                     "right_atrium_inferior": hp.ivc_hu},
        "heart_landmarks_mm": {k: v.tolist() for k, v in layout.landmarks.items()},
    }


def _enhancement(hp, prm: Parameters) -> tuple[float, float, float]:
    """Mean HU of the left heart (the aorta's), the right heart and the superior vena cava."""
    left = float(prm.contrast_hu)
    return left, left * hp.right_fraction, left * hp.svc_fraction


def add_heart(masks: dict[str, np.ndarray], heart: Structure) -> dict[str, np.ndarray]:
    """The subject's masks with the heart's: the LV cavity and myocardium replaced (papillary
    muscles moved), :data:`HEART_MASK_NAMES` appended in that order."""
    out = dict(masks)
    out.update(heart.masks)
    return out


def paint_heart_intensities(background: Structure, masks: dict[str, np.ndarray], heart: Structure, frame: Frame,
                            prm: Parameters, noise_hu: float) -> None:
    """Paint the new chambers' CT intensities into the background CT (float HU, in place) before
    the aorta, LV and myocardium are painted over it by
    :func:`~nnunet_tavr.phantom.background.render_ct`.

    Aortic-phase TAVI protocol: the left atrium, appendage and pulmonary veins enhance like the
    aorta; the right ventricle and pulmonary artery less (``right_fraction``); the superior vena
    cava holds the injected contrast (``svc_fraction``); the right atrium mixes it with
    unenhanced caval blood from below (a superior-inferior gradient, as in the seed's images).
    Lung within :data:`FAT_MM` of the heart becomes epicardial fat (:data:`FAT_HU`): the heart sits
    in the mediastinum, not in air.
    """
    ct = background.aux["ct"]
    hp = heart.aux["parameters"]
    rng = np.random.default_rng([heart.aux["seed"], BUILDER_ID, 1])
    heart_mask = masks[LEFT_VENTRICLE] | masks[MYOCARDIUM]
    for name in HEART_MASK_NAMES:
        heart_mask = heart_mask | masks[name]
    fat = _near(heart_mask, FAT_MM, frame.spacing) & background.aux["lungs"] & ~heart_mask
    ct[fat] = FAT_HU + rng.normal(0.0, noise_hu, int(fat.sum()))
    left, right, svc = _enhancement(hp, prm)
    for name, hu in (("heart_atrium_left", left), ("atrial_appendage_left", left), ("pulmonary_vein", left),
                     ("heart_ventricle_right", right), ("pulmonary_artery", right), ("superior_vena_cava", svc)):
        mask = masks[name]
        ct[mask] = hu + rng.normal(0.0, noise_hu, int(mask.sum()))
    ra = masks["heart_atrium_right"]
    if ra.any():
        points = np.argwhere(ra) * frame.spacing
        up = (points - heart.aux["layout"].landmarks["right_atrium_center_mm"]) @ frame.turn(S)
        t = np.clip(0.5 + 0.5 * up / hp.ra_semi[0], 0.0, 1.0)
        top = 0.5 * (right + svc)
        ct[ra] = hp.ivc_hu + (top - hp.ivc_hu) * t + rng.normal(0.0, noise_hu, len(points))


def _near(mask: np.ndarray, distance_mm: float, spacing) -> np.ndarray:
    """Voxels within ``distance_mm`` of ``mask`` (bool, same grid), computed in its bounding box."""
    from scipy import ndimage

    from nnunet_tavr.geometry import bounding_box, grow_box_mm

    out = np.zeros_like(mask)
    box = bounding_box(mask)
    if box is None:
        return out
    box = grow_box_mm(box, distance_mm, spacing, mask.shape)
    out[box] = ndimage.distance_transform_edt(~mask[box], sampling=spacing) <= distance_mm
    return out
