"""TotalSegmentator's vocabulary: mask names, multilabel tasks and their label ids, image endings.

Everything that reads TotalSegmentator output (subjects, case discovery, conversion schemes) and
everything that imitates it (the phantoms) takes the names from here.

Versions
--------
- **v1** (TotalSegmentator 1.x, and its public dataset v1): the task ``total`` had the heart
  chambers (``heart_myocardium``, ``heart_atrium_left``, ``heart_ventricle_left``,
  ``heart_atrium_right``, ``heart_ventricle_right``) and ``pulmonary_artery``. Its multilabel ids
  are the task :data:`TASKS` ``["total_v1"]``.
- **v2** (TotalSegmentator 2.x, dataset v2): ``total`` has one ``heart`` label (plus
  ``pulmonary_vein``, ``superior_vena_cava``, ``atrial_appendage_left``); the chambers come from the
  licensed task ``heartchambers_highres``, the aortic cusps and the LVOT from ``aortic_sinuses``
  (licensed), the annulus and the sinotubular junction from ``aorta_annulus``.

Per-structure file names are the same in both versions (``aorta.nii.gz``,
``heart_ventricle_left.nii.gz``, ...). Label ids below are TotalSegmentator 2.18's; only the
structures this project reads are listed, plus the ones needed to tell the versions apart
(:func:`check_task_fit`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

#: File endings of images read anywhere in the project (SimpleITK reads them all), longest first
#: where one ends another (``.nii.gz`` before ``.nii``).
IMAGE_ENDINGS: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")

#: File stem of the CT in a TotalSegmentator dataset subject (``SUBJECT/ct.nii.gz``).
CT_STEM = "ct"
#: Folder of the per-structure masks in a dataset subject (``SUBJECT/segmentations/``).
SEGMENTATIONS_DIR = "segmentations"
#: The dataset's table of subjects.
META_CSV = "meta.csv"


@dataclass(frozen=True)
class Task:
    """A TotalSegmentator task as this project uses it.

    ``labels`` maps multilabel ids to mask names (the subset this project reads, see the module
    docstring); ``licensed`` tasks need a licence key; ``command`` is how a user produces the
    per-structure masks of the task.
    """

    name: str
    labels: dict[int, str]
    licensed: bool = False
    max_label: int | None = None
    version: str = "v2"
    #: pairs ``(upper, lower)`` of structures whose centroids lie in that superior-inferior order
    #: in every scan that holds both (used to tell a file of another task or version)
    above: tuple[tuple[str, str], ...] = field(default=())

    @property
    def ids(self) -> dict[str, int]:
        """Mask name -> label id."""
        return {name: value for value, name in self.labels.items()}

    def command(self, ct: str = "ct.nii.gz", out: str = "SEG_DIR") -> str:
        task = "" if self.name in ("total", "total_v1") else f" -ta {self.name}"
        return f"TotalSegmentator -i {ct} -o {out}{task}"


TASKS: dict[str, Task] = {
    "total": Task(
        "total",
        {7: "pancreas", 44: "vertebrae_C7", 45: "vertebrae_C6", 46: "vertebrae_C5", 47: "vertebrae_C4",
         48: "vertebrae_C3", 51: "heart", 52: "aorta", 53: "pulmonary_vein", 61: "atrial_appendage_left",
         62: "superior_vena_cava", 63: "inferior_vena_cava", 65: "iliac_artery_left", 66: "iliac_artery_right"},
        max_label=117,
        above=(("vertebrae_C5", "heart"), ("heart", "pancreas"), ("heart", "iliac_artery_left"),
               ("heart", "iliac_artery_right"), ("pancreas", "iliac_artery_left"), ("pancreas", "iliac_artery_right")),
    ),
    "total_v1": Task(
        "total_v1",
        {7: "aorta", 8: "inferior_vena_cava", 44: "heart_myocardium", 45: "heart_atrium_left",
         46: "heart_ventricle_left", 47: "heart_atrium_right", 48: "heart_ventricle_right",
         49: "pulmonary_artery", 51: "iliac_artery_left", 52: "iliac_artery_right"},
        max_label=104,
        version="v1",
        above=(("heart_ventricle_left", "iliac_artery_left"), ("heart_ventricle_left", "iliac_artery_right"),
               ("heart_atrium_left", "iliac_artery_left"), ("heart_atrium_right", "iliac_artery_right")),
    ),
    "heartchambers_highres": Task(
        "heartchambers_highres",
        {1: "heart_myocardium", 2: "heart_atrium_left", 3: "heart_ventricle_left", 4: "heart_atrium_right",
         5: "heart_ventricle_right", 6: "aorta", 7: "pulmonary_artery"},
        licensed=True,
        max_label=7,
    ),
    "aortic_sinuses": Task(
        "aortic_sinuses",
        {1: "left_ventricular_outflow_tract", 2: "right_coronary_cusp", 3: "left_coronary_cusp", 4: "non_coronary_cusp"},
        licensed=True,
        max_label=4,
    ),
    "aorta_annulus": Task("aorta_annulus", {1: "annulus_proper", 2: "sinotubular_junction"}, max_label=2),
    "coronary_arteries": Task("coronary_arteries", {1: "coronary_arteries"}, licensed=True, max_label=1),
}

#: The three aortic cusps of ``aortic_sinuses``, in the order right, left, non-coronary.
CUSPS: tuple[str, ...] = ("right_coronary_cusp", "left_coronary_cusp", "non_coronary_cusp")

#: Heart-chamber masks of TotalSegmentator v1's ``total`` (and of v2's ``heartchambers_highres``).
HEART_CHAMBERS: tuple[str, ...] = (
    "heart_myocardium", "heart_atrium_left", "heart_ventricle_left", "heart_atrium_right", "heart_ventricle_right",
)


def task(name: str) -> Task:
    """The :class:`Task` called ``name``; a clear error for an unknown one."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown TotalSegmentator task {name!r}; known: {', '.join(sorted(TASKS))}") from None


def tasks_with(mask: str) -> list[str]:
    """Names of the tasks whose multilabel output holds ``mask``."""
    return [t.name for t in TASKS.values() if mask in t.labels.values()]


def how_to_get(mask: str) -> str:
    """One sentence telling a user which TotalSegmentator call writes ``mask``."""
    names = tasks_with(mask)
    v2 = [n for n in names if n != "total_v1"]
    if not v2:
        return f"'{mask}' is written by TotalSegmentator v1's default task only"
    t = TASKS[v2[0]]
    licence = " (free for non-commercial use, needs a licence key)" if t.licensed else ""
    return f"'{mask}' comes from `{t.command()}`{licence}"


# ----------------------------------------------------------------------------------------------
# files


def strip_image_ending(name: str) -> str | None:
    """``name`` without its image ending, or ``None`` when it has none of :data:`IMAGE_ENDINGS`."""
    for ending in IMAGE_ENDINGS:
        if name.endswith(ending) and len(name) > len(ending):
            return name[: -len(ending)]
    return None


def image_stem(path: str | os.PathLike) -> str:
    """File name without the image ending (``case.nii.gz`` -> ``case``); other names lose their
    last suffix."""
    name = Path(path).name
    stem = strip_image_ending(name)
    return stem if stem is not None else Path(name).stem


def find_image(folder: str | os.PathLike, stem: str) -> Path | None:
    """``folder/stem`` with the first of :data:`IMAGE_ENDINGS` that exists, else ``None``."""
    for ending in IMAGE_ENDINGS:
        path = Path(folder) / f"{stem}{ending}"
        if path.is_file():
            return path
    return None


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in ``folder`` (sorted, hidden files left out)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and strip_image_ending(p.name))


def multilabel_files(folder: str | os.PathLike) -> list[tuple[str, Path]]:
    """``(task, path)`` of the multilabel files in a case folder, named after their task
    (``total.nii.gz``, ``total_v1.nii.gz``, ``heartchambers_highres.nii.gz``, ...)."""
    found = []
    for name in TASKS:
        path = find_image(folder, name)
        if path is not None:
            found.append((name, path))
    return found


# ----------------------------------------------------------------------------------------------
# does a multilabel file belong to the task it is said to be?


def check_task_fit(values, centroid_z_mm: dict[int, float], task_name: str) -> str | None:
    """Why a multilabel file does not fit ``task_name``, or ``None`` when it does.

    Parameters
    ----------
    values : iterable of int
        Label ids present in the file.
    centroid_z_mm : dict
        Label id -> superior-inferior position of its centroid (mm, larger = more superior).
    task_name : str
        The task the user named.

    Two tests: every id must exist in the task (a v2 ``total`` file has ids up to 117, v1 up to
    104), and structures of known superior-inferior order must be in that order (a v1 ``total``
    file read as v2 puts its heart chambers where v2 has the cervical vertebrae and its aorta where
    v2 has the pancreas).
    """
    t = task(task_name)
    values = sorted(int(v) for v in values if int(v) > 0)
    if t.max_label is not None and values and values[-1] > t.max_label:
        return f"label {values[-1]} does not exist in task {t.name} (ids 1-{t.max_label})"
    ids = t.ids
    for upper, lower in t.above:
        if ids.get(upper) in centroid_z_mm and ids.get(lower) in centroid_z_mm:
            if centroid_z_mm[ids[upper]] <= centroid_z_mm[ids[lower]]:
                return (f"read as task {t.name}, '{upper}' (label {ids[upper]}) lies below '{lower}' (label {ids[lower]}), "
                        "which no scan shows")
    return None


def suggest_task(values, centroid_z_mm: dict[int, float], named: str) -> str | None:
    """Another task of the same family that the file fits, if any (for the error message)."""
    family = {"total": ("total_v1",), "total_v1": ("total",)}.get(named, ())
    for other in family:
        if check_task_fit(values, centroid_z_mm, other) is None:
            return other
    return None
