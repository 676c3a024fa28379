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
    write_array(phantom.ct, geometry, subject_dir / f"{CT_STEM}.nii.gz")
    # MASK_NAMES first, then any opt-in builder's masks (e.g. the aortic_sinuses ones) in their order
    for name in [*MASK_NAMES, *(n for n in phantom.masks if n not in MASK_NAMES)]:
        write_array(phantom.masks[name].astype(np.uint8), geometry, subject_dir / SEGMENTATIONS_DIR / f"{name}.nii.gz")
    if phantom.calcium is not None:  # the calcium's true voxels (nodule ids), beside the CT
        write_array(phantom.calcium, geometry, subject_dir / CALCIUM_MASK_FILE)
    write_json(phantom.truth, subject_dir / TRUTH_JSON)  # written last: marks the subject complete
    return subject_dir


def _is_complete(subject_dir: Path, params: dict) -> bool:
    """A subject is complete when its truth.json (written last) records the same parameters."""
    try:
        truth = json.loads((subject_dir / TRUTH_JSON).read_text())
    except (OSError, ValueError):
        return False
    spacing = as_spacing(params["spacing"]).tolist()
    same = (truth.get("seed"), truth.get("shape"), truth.get("spacing"), truth.get("has_heart"), truth.get("has_iliacs"),
            truth.get("cusps", False), truth.get("aortic_sinuses", False)) == (
        params["seed"], list(params["shape"]), spacing, params["heart"], params["iliacs"],
        bool(params.get("cusps") or params.get("aortic_sinuses")), bool(params.get("aortic_sinuses")))
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
) -> list[str]:
    """Write ``n`` subjects plus ``meta.csv``; subjects already complete with the same parameters are
    kept (reruns resume), others are (re)written.

    Subject ``i`` uses seed ``seed * 100003 + i``, so adding subjects never changes earlier ones.
    ``no_heart`` and ``no_iliacs`` are subject indices made chest-less or pelvis-less. ``calcium``
    adds calcified nodules and varies the contrast (:mod:`nnunet_tavr.phantom.calcium`);
    ``calcium_free`` are subject indices that get the calcium contrast but no nodule. ``cusps`` and
    ``aortic_sinuses`` are :func:`make_subject`'s options (hinge points; the ``aortic_sinuses`` masks).
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
        if _is_complete(out_dir / sid, params):
            continue
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
