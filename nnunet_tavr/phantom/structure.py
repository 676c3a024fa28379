"""What a builder returns, and the TotalSegmentator names of the masks the builders paint."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnunet_tavr.totalseg import TASKS

#: Every mask name of the TotalSegmentator vocabulary (:mod:`nnunet_tavr.totalseg`).
_TOTALSEG_NAMES = frozenset(name for task in TASKS.values() for name in task.labels.values())


def totalseg_name(name: str) -> str:
    """``name``, checked against TotalSegmentator's vocabulary: a phantom writes only masks that
    TotalSegmentator writes, under the same file name.

    Raises
    ------
    ValueError
        ``name`` is no mask of any task in :data:`nnunet_tavr.totalseg.TASKS`.
    """
    if name not in _TOTALSEG_NAMES:
        raise ValueError(f"{name!r} is not a TotalSegmentator mask name (see nnunet_tavr.totalseg.TASKS)")
    return name


AORTA = totalseg_name("aorta")
LEFT_VENTRICLE = totalseg_name("heart_ventricle_left")
MYOCARDIUM = totalseg_name("heart_myocardium")
#: Iliac artery mask per side ("left" is the patient's left: larger x).
ILIAC = {"left": totalseg_name("iliac_artery_left"), "right": totalseg_name("iliac_artery_right")}

#: TotalSegmentator mask names written for every subject (in the order they are written).
MASK_NAMES = (AORTA, LEFT_VENTRICLE, MYOCARDIUM, ILIAC["left"], ILIAC["right"])


@dataclass
class Structure:
    """What one builder painted.

    Attributes
    ----------
    name : str
        The builder's structure ("aorta", "root", "ventricle", ...).
    masks : dict[str, np.ndarray]
        TotalSegmentator mask name (:data:`MASK_NAMES`) -> bool array on the full (z, y, x) grid.
        Two builders may paint the same name (the curved aorta and the root both paint "aorta");
        the subject's mask is their union, cut to the field of view.
    truth : dict
        The keys this builder contributes to ``truth.json`` (JSON-serialisable; mm, degrees and
        unit vectors in the arrays' physical (z, y, x) frame). Keys are unique across builders.
    aux : dict
        Auxiliary results other builders or the label map need (each builder documents its own):
        part maps, crop boxes, distances to the annulus plane, the CT.
    """

    name: str
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    truth: dict = field(default_factory=dict)
    aux: dict = field(default_factory=dict)
