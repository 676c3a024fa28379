"""The TAVR label map: the single source of truth for label names and values.

Every module that writes, reads or reports TAVR labels imports it from here.
"""

from __future__ import annotations

#: nnU-Net label values of the 7 foreground classes (0 is background).
LABELS: dict[str, int] = {
    "background": 0,
    "aorta": 1,
    "left_ventricle": 2,
    "aortic_root": 3,
    "valve": 4,
    "annulus": 5,
    "iliac_artery_left": 6,
    "iliac_artery_right": 7,
}

#: Foreground class names in label-value order.
FOREGROUND: tuple[str, ...] = tuple(name for name, value in sorted(LABELS.items(), key=lambda kv: kv[1]) if value > 0)

#: Human-readable names, as the paper's tables print them.
DISPLAY_NAMES: dict[str, str] = {
    "aorta": "Aorta",
    "left_ventricle": "Left Ventr.",
    "aortic_root": "Aortic Root",
    "valve": "Valve",
    "annulus": "Annulus",
    "iliac_artery_left": "I. A. left",
    "iliac_artery_right": "I. A. right",
}

#: Order in which labels are painted into the exclusive label map: later entries win where masks
#: overlap.  It encodes the precedence rules "annulus over left_ventricle" and
#: "valve over aortic_root over aorta".  The iliac arteries are painted before the aorta family so
#: that a voxel claimed by both an iliac and the aorta (TotalSegmentator's masks touch at the
#: bifurcation) stays aorta: the aorta is the better-segmented, larger structure.
PAINT_ORDER: tuple[str, ...] = (
    "iliac_artery_left",
    "iliac_artery_right",
    "left_ventricle",
    "aorta",
    "aortic_root",
    "valve",
    "annulus",
)


def dataset_json_labels() -> dict[str, int]:
    """Label block of an nnU-Net ``dataset.json`` (name -> value, background included)."""
    return dict(LABELS)
