"""Label names, values and colours: the single source of truth for every label map of the project.

Every module that writes, reads, reports or draws labels imports them from here: the TAVR label map
(:data:`LABELS`) and one colour per class name (:data:`COLOURS`), which covers the classes of every
dataset scheme so that a class has the same colour in every figure.
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

#: The calcium class of the TAVR scheme's ``--calcium`` option: a rule-based pseudo-label
#: (:mod:`nnunet_tavr.label_derivation.calcium`) painted over the 7 classes above.
CALCIUM_LABEL = 8
#: The TAVR label map with calcium (8 foreground classes).
LABELS_WITH_CALCIUM: dict[str, int] = {**LABELS, "calcium": CALCIUM_LABEL}

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


#: One RGB colour (0-1) per class name, for every figure of every dataset scheme. The TAVR colours
#: follow the paper's Table 1 (b): aorta grey, valve red, annulus light green, aortic root blue.
COLOURS: dict[str, tuple[float, float, float]] = {
    "aorta": (0.62, 0.62, 0.62),
    "left_ventricle": (0.96, 0.62, 0.20),
    "aortic_root": (0.15, 0.35, 0.95),
    "valve": (0.90, 0.10, 0.10),
    "annulus": (0.40, 0.95, 0.30),
    "iliac_artery_left": (0.10, 0.80, 0.80),
    "iliac_artery_right": (0.10, 0.55, 0.30),
    "calcium": (1.00, 0.15, 0.85),  # magenta: stands out on grey CT and on every class above
    # hinge points (scheme hinge): right, left and non-coronary cusp
    "RCC": (0.95, 0.25, 0.25),
    "LCC": (0.25, 0.55, 1.00),
    "NCC": (1.00, 0.80, 0.10),
    # whole heart (the heart scheme, seed 004): left heart warm, right heart cool
    "pulmonary_veins": (0.80, 0.45, 0.70),
    "left_atrium": (0.95, 0.80, 0.25),
    "left_ventricle_cavity": (0.96, 0.62, 0.20),
    "left_ventricle_myocardium": (0.70, 0.25, 0.15),
    "coronary_sinus": (0.55, 0.35, 0.20),
    "superior_vena_cava": (0.45, 0.75, 0.95),
    "right_atrium": (0.20, 0.50, 0.90),
    "right_ventricle_cavity": (0.30, 0.30, 0.80),
    "pulmonary_artery": (0.55, 0.30, 0.85),
}

#: Colour of a class this table does not know (a user's own label map).
OTHER_COLOUR = (0.85, 0.85, 0.20)


def colour(name: str) -> tuple[float, float, float]:
    """The colour of class ``name`` (:data:`COLOURS`, else :data:`OTHER_COLOUR`)."""
    return COLOURS.get(name, OTHER_COLOUR)


def label_colormap(labels: dict[str, int] | None = None, background=(0.0, 0.0, 0.0, 0.0)):
    """A matplotlib ``ListedColormap`` indexed by label value (default: the TAVR map).

    Value ``v`` gets the colour of the class named ``v`` in ``labels``; values without a class
    (gaps in the numbering) are transparent, like the background. Use it with
    ``vmin=-0.5, vmax=len(colormap.colors) - 0.5``.
    """
    from matplotlib.colors import ListedColormap

    labels = LABELS if labels is None else labels
    by_value = {int(v): k for k, v in labels.items() if not isinstance(v, (list, tuple))}
    top = max(by_value, default=0)
    colours = [background] + [(*colour(by_value[v]), 1.0) if v in by_value else (0.0, 0.0, 0.0, 0.0) for v in range(1, top + 1)]
    return ListedColormap(colours)
