"""Writing subjects and datasets in the TotalSegmentator layout; reruns resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnunet_tavr.geometry import as_spacing
from nnunet_tavr.phantom.calcium import MASK_FILE as CALCIUM_MASK_FILE
from nnunet_tavr.phantom.structure import MASK_NAMES
from nnunet_tavr.phantom.subject import Phantom, make_subject
from nnunet_tavr.totalseg import CT_STEM, META_CSV, SEGMENTATIONS_DIR

#: The ground truth of a subject, written last: its presence marks the subject complete.
TRUTH_JSON = "truth.json"


def subject_id(index: int) -> str:
    """TotalSegmentator-style subject identifier."""
    return f"s{index:04d}"


def write_subject(phantom: Phantom, subject_dir: str | Path) -> Path:
    """Write one subject in the TotalSegmentator layout (atomic per file; truth.json last)."""
    from nnunet_tavr.io import write_array, write_json

    subject_dir = Path(subject_dir)
    geometry = phantom.geometry
    (subject_dir / TRUTH_JSON).unlink(missing_ok=True)  # incomplete until truth.json is written again
    _remove_stale(subject_dir, phantom)
    write_array(phantom.ct, geometry, subject_dir / f"{CT_STEM}.nii.gz")
    # MASK_NAMES first, then any opt-in builder's masks (e.g. the aortic_sinuses ones) in their order
    for name in [*MASK_NAMES, *(n for n in phantom.masks if n not in MASK_NAMES)]:
        write_array(phantom.masks[name].astype(np.uint8), geometry, subject_dir / SEGMENTATIONS_DIR / f"{name}.nii.gz")
    if phantom.calcium is not None:  # the calcium's true voxels (nodule ids), beside the CT
        write_array(phantom.calcium, geometry, subject_dir / CALCIUM_MASK_FILE)
    for task in phantom.multilabel:  # TotalSegmentator --ml files, named after their task
        write_array(multilabel_array(phantom.masks, task), geometry, subject_dir / f"{task}.nii.gz")
    write_json(phantom.truth, subject_dir / TRUTH_JSON)  # written last: marks the subject complete
    return subject_dir


def _remove_stale(subject_dir: Path, phantom: Phantom) -> None:
    """Delete the masks and multilabel files an earlier write with other options left behind (a
    subject rewritten without the heart chambers must not keep their masks)."""
    from nnunet_tavr.totalseg import TASKS

    masks = subject_dir / SEGMENTATIONS_DIR
    if masks.is_dir():
        for path in masks.glob("*.nii.gz"):
            if path.name[: -len(".nii.gz")] not in phantom.masks:
                path.unlink()
    for task in set(TASKS) - set(phantom.multilabel):
        (subject_dir / f"{task}.nii.gz").unlink(missing_ok=True)
    if phantom.calcium is None:
        (subject_dir / CALCIUM_MASK_FILE).unlink(missing_ok=True)


def _refuse_foreign(subject_dir: Path) -> None:
    """A subject folder with files but no phantom ``truth.json`` is somebody's data: never rewritten."""
    import json

    from nnunet_tavr.errors import Refused

    if not subject_dir.is_dir() or not any(subject_dir.iterdir()):
        return
    try:
        made_here = "seed" in json.loads((subject_dir / TRUTH_JSON).read_text())
    except (OSError, ValueError, TypeError):
        made_here = False
    if not made_here:
        raise Refused(f"{subject_dir} holds files that 'nnunet-tavr phantom' did not write (no phantom truth.json): "
                      "choose an empty or new output folder")


def multilabel_array(masks: dict[str, np.ndarray], task: str) -> np.ndarray:
    """TotalSegmentator's multilabel map of ``task`` (uint8 (z, y, x), its label ids) from masks
    named after its labels; later ids win where masks overlap.

    Raises
    ------
    KeyError
        A label of the task has no mask.
    """
    from nnunet_tavr.totalseg import task as get_task

    labels = get_task(task).labels
    missing = [name for name in labels.values() if name not in masks]
    if missing:
        raise KeyError(f"multilabel file {task}: no mask for {missing}")
    out = np.zeros(next(iter(masks.values())).shape, np.uint8)
    for value, name in sorted(labels.items()):
        out[masks[name]] = value
    return out


def _is_complete(subject_dir: Path, params: dict) -> bool:
    """A subject is complete when its truth.json (written last) records the same parameters."""
    try:
        truth = json.loads((subject_dir / TRUTH_JSON).read_text())
    except (OSError, ValueError):
        return False
    spacing = as_spacing(params["spacing"]).tolist()
    same = (truth.get("seed"), truth.get("shape"), truth.get("spacing"), truth.get("has_heart"), truth.get("has_iliacs"),
            truth.get("cusps", False), truth.get("aortic_sinuses", False),
            truth.get("heart_chambers", False), truth.get("heartchambers_highres", False)) == (
        params["seed"], list(params["shape"]), spacing, params["heart"], params["iliacs"],
        bool(params.get("cusps") or params.get("aortic_sinuses")), bool(params.get("aortic_sinuses")),
        bool(params.get("heart_chambers") or params.get("heartchambers_highres")), bool(params.get("heartchambers_highres")))
    calcium = truth.get("calcium")
    if not params.get("calcium"):
        return same and calcium is None
    free = params.get("calcium_nodules") == 0
    return same and calcium is not None and (len(calcium["nodules"]) == 0) == free and (subject_dir / CALCIUM_MASK_FILE).is_file()


def write_dataset(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    shape=(200, 160, 160),
    spacing=1.5,
    no_heart=(),
    no_iliacs=(),
    progress: bool = True,
    calcium: bool = False,
    calcium_free=(),
    cusps: bool = False,
    aortic_sinuses: bool = False,
    heart_chambers: bool = False,
    heartchambers_highres: bool = False,
) -> list[str]:
    """Write ``n`` subjects plus ``meta.csv``; subjects already complete with the same parameters are
    kept (reruns resume), others are (re)written.

    Subject ``i`` uses seed ``seed * 100003 + i``, so adding subjects never changes earlier ones.
    ``no_heart`` and ``no_iliacs`` are subject indices made chest-less or pelvis-less. ``calcium``
    adds calcified nodules and varies the contrast (:mod:`nnunet_tavr.phantom.calcium`);
    ``calcium_free`` are subject indices that get the calcium contrast but no nodule. ``cusps`` and
    ``aortic_sinuses`` (hinge points; the ``aortic_sinuses`` masks), ``heart_chambers`` and
    ``heartchambers_highres`` (the whole heart; its TotalSegmentator multilabel file) are
    :func:`make_subject`'s options.
    """
    from tqdm import tqdm

    from nnunet_tavr.io import write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in tqdm(range(n), desc="phantoms", unit="subject", disable=not progress):
        sid = subject_id(i)
        ids.append(sid)
        params = dict(seed=seed * 100003 + i, shape=tuple(shape), spacing=spacing, heart=i not in set(no_heart), iliacs=i not in set(no_iliacs))
        if calcium:  # only then: the parameters of other subjects stay what they were
            params.update(calcium=True, calcium_nodules=0 if i in set(calcium_free) else None)
        if cusps or aortic_sinuses:  # only when on: the calls of make_subject stay as they were
            params.update(cusps=True, aortic_sinuses=bool(aortic_sinuses))
        if heart_chambers or heartchambers_highres:  # only when on: the calls of make_subject stay as they were
            params.update(heart_chambers=True, heartchambers_highres=bool(heartchambers_highres))
        if _is_complete(out_dir / sid, params):
            continue
        _refuse_foreign(out_dir / sid)
        phantom = make_subject(**params)
        write_subject(phantom, out_dir / sid)
    write_text(_meta_csv(ids), out_dir / META_CSV)
    return ids


def _meta_csv(ids: list[str]) -> str:
    """TotalSegmentator's subject table (``;``-separated) with made-up demographics and a
    train / val / test split of 3:1:1."""
    splits = ("train", "train", "train", "val", "test")
    rows = [("image_id", "age", "gender", "institute", "study_type", "split")]
    for i, sid in enumerate(ids):
        rows.append((sid, str(50 + (i * 7) % 40), "mf"[i % 2], "phantom", "ct thorax-abdomen-pelvis", splits[i % len(splits)]))
    return "".join(";".join(r) + "\n" for r in rows)
