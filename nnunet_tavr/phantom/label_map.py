"""The 7-class TAVR label map by construction: the paper's valve and annulus rules (section 2.1)
evaluated exactly on the analytic annulus plane, not estimated from the masks."""

from __future__ import annotations

import numpy as np

from nnunet_tavr.labels import LABELS, PAINT_ORDER
from nnunet_tavr.phantom.aorta import AORTA_PARTS
from nnunet_tavr.phantom.canvas import Canvas
from nnunet_tavr.phantom.structure import AORTA, ILIAC, LEFT_VENTRICLE, Structure

#: The rule thresholds used for the by-construction valve and annulus labels (paper 2.1 on 1.5 mm).
VALVE_MM = 4.5
ANNULUS_MM = 1.5


def tavr_labels(canvas: Canvas, masks: dict, aorta_part: np.ndarray, root: Structure, ventricle: Structure, heart: bool = True) -> np.ndarray:
    """The label map (uint8 (z, y, x), values of :data:`nnunet_tavr.labels.LABELS`).

    - aorta, left ventricle and iliacs: the subject's masks (already cut to the field of view);
    - aortic root: the "root" part of ``aorta_part`` (annulus plane up to the STJ);
    - valve: aorta voxels of the root tube within :data:`VALVE_MM` above the annulus plane;
    - annulus: left-ventricle voxels within :data:`ANNULUS_MM` below the plane, under the annulus
      ellipse grown by half of :data:`ANNULUS_MM` (the aortic footprint).

    Overlaps are resolved by :data:`nnunet_tavr.labels.PAINT_ORDER` (later classes win), the same
    precedence as the derived labels. Chest-less subjects (``heart=False``) have no valve or annulus.

    Parameters
    ----------
    masks : dict
        The subject's TotalSegmentator masks (bool (z, y, x)).
    root, ventricle : Structure
        What :func:`~nnunet_tavr.phantom.root.paint_root` and
        :func:`~nnunet_tavr.phantom.ventricle.paint_ventricle` returned (their ``box``,
        ``axial_mm``, ``tube`` and ``annulus`` aux entries).
    """
    aorta, lv = masks[AORTA], masks[LEFT_VENTRICLE]
    classes = {
        "iliac_artery_left": masks[ILIAC["left"]],
        "iliac_artery_right": masks[ILIAC["right"]],
        "left_ventricle": lv,
        "aorta": aorta,
        "aortic_root": aorta_part == AORTA_PARTS["root"],
    }
    if heart:
        valve = canvas.blank()
        if root.aux["box"] is not None:
            valve[root.aux["box"]] = root.aux["tube"] & (root.aux["axial_mm"] <= VALVE_MM)
        classes["valve"] = valve & aorta
        annulus = canvas.blank()
        box = ventricle.aux["box"]
        if box is not None:
            foot = root.aux["annulus"].footprint(canvas.coordinates(box), grow_mm=ANNULUS_MM / 2)
            annulus[box] = lv[box] & (ventricle.aux["axial_mm"] >= -ANNULUS_MM) & foot
        classes["annulus"] = annulus
    unknown = set(classes) - set(PAINT_ORDER)
    if unknown:  # a class without precedence would silently be left out
        raise ValueError(f"classes {sorted(unknown)} are not in nnunet_tavr.labels.PAINT_ORDER")
    labels = canvas.blank(np.uint8)
    for name in PAINT_ORDER:
        if name in classes:
            labels[classes[name]] = LABELS[name]
    return labels
