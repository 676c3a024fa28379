"""Patient-level comparison: several cases of one patient (the frames of one CT) count as one.

Seed 002 evaluates per patient: each patient's frames are averaged first, and the bootstrap CIs and
the paired Wilcoxon tests (Holm-corrected) are computed over patients. ``compare --group-by patient``
does that with the functions here:

- :func:`load_groups` reads which patient each case belongs to from the raw dataset: the ``groups``
  of ``tavr_splits.json`` (written by ``nnunet-tavr convert`` for grouped schemes such as
  ``fluoro``), else the ``group`` column of ``manifest.csv``;
- :func:`aggregate_by_group` turns the per-case records into per-patient records: every metric is
  the mean over the patient's cases (NaN cases, a class absent from reference and prediction, are
  skipped), voxel counts are summed, and ``n_frames`` / ``one_empty_frames`` say what each
  patient's mean stands on. The result has the per-case records' columns (``case`` = the patient),
  so the report's summaries run on it unchanged.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from nnunet_tavr.errors import InputError

METRIC_COLUMNS = ("Dice", "IoU", "ASSD", "HD95")
COUNT_COLUMNS = ("TP", "FP", "FN", "n_ref", "n_pred")


def load_groups(raw_dataset: str | Path) -> dict[str, str]:
    """Case -> patient from ``tavr_splits.json`` (``groups``) or ``manifest.csv`` (``group``)."""
    folder = Path(raw_dataset)
    try:
        groups = json.loads((folder / "tavr_splits.json").read_text()).get("groups")
    except (OSError, ValueError):
        groups = None
    if groups:
        return {str(k): str(v) for k, v in groups.items()}
    manifest = folder / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("group") and r.get("kept", "1") in ("1", "True", "true")]
        if rows:
            return {r["case"]: r["group"] for r in rows}
    raise InputError(f"--group-by patient: {folder} records no patients (no 'groups' in tavr_splits.json, no 'group' column in "
                     "manifest.csv); convert it with a grouped scheme (e.g. --scheme fluoro)")


def aggregate_by_group(frame, groups: dict[str, str]):
    """Per-patient records from per-case records (see the module docstring).

    Raises
    ------
    InputError
        A case without a patient.
    """
    if frame.empty:
        return frame
    missing = sorted(set(frame["case"]) - set(groups))
    if missing:
        raise InputError(f"--group-by patient: no patient for case(s) {', '.join(missing[:10])}"
                         + (" ..." if len(missing) > 10 else ""))
    frame = frame.assign(patient=frame["case"].map(groups))
    frame = frame.assign(one_empty=(frame["n_ref"] == 0) != (frame["n_pred"] == 0))
    keys = ["trainer", "split", "patient", "class"]
    grouped = frame.groupby(keys, sort=True)
    out = grouped[list(METRIC_COLUMNS)].mean()
    out[list(COUNT_COLUMNS)] = grouped[list(COUNT_COLUMNS)].sum()
    out["n_frames"] = grouped["case"].nunique()
    out["one_empty_frames"] = grouped["one_empty"].sum().astype(int)
    folds = grouped["fold"].agg(lambda f: f.iloc[0] if f.nunique() == 1 else "+".join(sorted(set(f))))
    out["fold"] = folds
    out = out.reset_index().rename(columns={"patient": "case"})
    return out[["trainer", "split", "fold", "case", "class", *METRIC_COLUMNS, *COUNT_COLUMNS, "n_frames", "one_empty_frames"]].pipe(
        lambda df: df.sort_values(["split", "trainer", "fold", "case", "class"], kind="stable").reset_index(drop=True))


def frames_per_patient(frame, trainers, cases) -> dict[str, int]:
    """Frames behind the (fold, patient) keys ``cases``, per trainer (from aggregated records)."""
    out = {}
    for trainer in trainers:
        rows = frame[frame.trainer == trainer].drop_duplicates(["fold", "case"])
        keep = [key in cases for key in zip(rows["fold"], rows["case"])]
        out[trainer] = int(rows.loc[keep, "n_frames"].sum())
    return out
