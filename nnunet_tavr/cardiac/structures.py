"""The whole-heart vocabulary of seed 004: its ten structures, their TotalSegmentator sources and
the myocardial density; shared by the phantom's truth, the ``heart`` dataset scheme and
``nnunet-tavr cardiac``.

Seed 004 (deep-learning whole-heart segmentation of pre-TAVI ECG-gated CT) segments pulmonary
veins (PV), left atrium with its appendage (LA), left-ventricular cavity (LVC) and myocardium
(LVM, papillary muscles included), aorta (Ao), coronary sinus (CS), superior vena cava (SVC),
right atrium with its appendage (RA), right-ventricular cavity (RVC) and pulmonary artery (PA),
and computes LV mass as LVM volume x 1.05 g/ml.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CardiacStructure:
    """One of the seed's structures.

    ``name`` is its class name in the ``heart`` dataset; ``totalseg`` the TotalSegmentator masks
    whose union it is (empty: TotalSegmentator has no source for it).
    """

    name: str
    abbreviation: str
    display: str
    totalseg: tuple[str, ...]


#: The seed's ten structures, in the seed's order (which is also the order of the class values).
STRUCTURES: tuple[CardiacStructure, ...] = (
    CardiacStructure("pulmonary_veins", "PV", "Pulmonary veins", ("pulmonary_vein",)),
    CardiacStructure("left_atrium", "LA", "Left atrium", ("heart_atrium_left", "atrial_appendage_left")),
    CardiacStructure("left_ventricle_cavity", "LVC", "Left ventricular cavity", ("heart_ventricle_left",)),
    CardiacStructure("left_ventricle_myocardium", "LVM", "Left ventricular myocardium", ("heart_myocardium",)),
    CardiacStructure("aorta", "Ao", "Aorta", ("aorta",)),
    CardiacStructure("coronary_sinus", "CS", "Coronary sinus", ()),
    CardiacStructure("superior_vena_cava", "SVC", "Superior vena cava", ("superior_vena_cava",)),
    CardiacStructure("right_atrium", "RA", "Right atrium", ("heart_atrium_right",)),
    CardiacStructure("right_ventricle_cavity", "RVC", "Right ventricular cavity", ("heart_ventricle_right",)),
    CardiacStructure("pulmonary_artery", "PA", "Pulmonary artery", ("pulmonary_artery",)),
)
BY_NAME: dict[str, CardiacStructure] = {s.name: s for s in STRUCTURES}

#: The class whose volume gives the LV mass.
MYOCARDIUM = "left_ventricle_myocardium"
#: Specific gravity of myocardium (g/ml) used by the seed for LV mass.
MYOCARDIAL_DENSITY_G_PER_ML = 1.05
#: The structure with no TotalSegmentator source.
CORONARY_SINUS = "coronary_sinus"


def abbreviation(name: str) -> str:
    """The seed's abbreviation of a class name (the name itself for other classes)."""
    return BY_NAME[name].abbreviation if name in BY_NAME else name


def display_name(name: str) -> str:
    return BY_NAME[name].display if name in BY_NAME else name.replace("_", " ")


#: What seed 004 reports on its test set (n = 8), for orientation beside a report's numbers:
#: Dice median (Q1, Q3) (Table 2); reference volume median (Q1, Q3) in ml, g for LVM (Table 3);
#: Bland-Altman bias and limits of agreement as *prediction - reference* (the paper prints
#: reference - prediction: its LVC bias -6.63 ml goes with larger automatic volumes), ml or g;
#: Pearson r. The paper's overall Dice is 0.920 (0.906-0.925); 13.4 s per case.
SEED_004: dict[str, dict] = {
    "aorta": {"dice": (0.915, 0.902, 0.930), "reference": (133, 122, 148), "bias": 0.41, "limits": (-19.7, 20.6), "r": 0.97},
    "coronary_sinus": {"dice": (0.604, 0.516, 0.652), "reference": (2.39, 1.94, 2.82), "bias": 0.40, "limits": (-0.76, 1.56), "r": 0.77},
    "left_atrium": {"dice": (0.939, 0.933, 0.941), "reference": (88, 69, 106), "bias": 1.07, "limits": (-8.2, 10.4), "r": 0.98},
    "left_ventricle_cavity": {"dice": (0.852, 0.793, 0.867), "reference": (29, 17, 42), "bias": 6.63, "limits": (-2.9, 16.2), "r": 0.99},
    "left_ventricle_myocardium": {"dice": (0.927, 0.923, 0.940)},
    "lv_mass": {"reference": (135, 129, 177), "bias": 1.76, "limits": (-6.0, 9.5), "r": 0.99},
    "pulmonary_artery": {"dice": (0.878, 0.865, 0.888), "reference": (60, 51, 73), "bias": -0.53, "limits": (-10.1, 9.0), "r": 0.96},
    "pulmonary_veins": {"dice": (0.657, 0.594, 0.712), "reference": (12, 10, 18), "bias": 4.67, "limits": (-0.35, 9.68), "r": 0.90},
    "right_atrium": {"dice": (0.877, 0.816, 0.901), "reference": (83, 63, 100), "bias": 0.76, "limits": (-13.1, 14.6), "r": 0.95},
    "right_ventricle_cavity": {"dice": (0.819, 0.763, 0.862), "reference": (47, 31, 50), "bias": 8.17, "limits": (-1.6, 18.0), "r": 0.98},
    "superior_vena_cava": {"dice": (0.627, 0.408, 0.659), "reference": (15, 7, 21), "bias": -2.51, "limits": (-14.9, 9.9), "r": 0.49},
}
#: The seed's overall Dice median (Q1, Q3) and its seconds per case (median, range).
SEED_004_OVERALL_DICE = (0.920, 0.906, 0.925)
SEED_004_SECONDS_PER_CASE = (13.4, 11.9, 14.9)
