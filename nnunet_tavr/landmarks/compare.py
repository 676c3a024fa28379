"""Landmark comparison of trainers across folds (``nnunet-tavr compare --landmarks``).

Beside the Dice comparison of the same predictions, each predicted case becomes three points
(:mod:`.extract`: heatmap trainers by their saved probabilities, which ``nnUNetv2_train --npz``
writes for the validation folds; the others by the centre of mass of each label), and its
**per-case mean landmark error** (mm, world frame, against the dataset's ``landmarks.json``) is the
score. Per split: each trainer's mean with a bootstrap CI, median and share of points under 2 mm,
on the cases every trainer has; pairs of trainers are tested with the paired Wilcoxon signed-rank
test on the cases both have, Holm-corrected over all pairs (:mod:`nnunet_tavr.evaluation.stats`).
A case with a missing point has no mean error: it is listed, not averaged.

Writes OUT/landmarks_report.md, OUT/landmarks_per_case.csv and OUT/landmarks_summary.json.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from nnunet_tavr.evaluation.stats import bootstrap_ci, holm, paired_wilcoxon
from nnunet_tavr.landmarks.report import TOLERANCE_MM


def landmark_records(jobs, reference: dict, refine_mm: float = 4.0) -> tuple[list[dict], list[str]]:
    """One record per job (trainer, split, fold, case) with per-landmark errors and their mean."""
    from nnunet_tavr.errors import InputError
    from nnunet_tavr.landmarks.extract import case_points

    records, problems = [], []
    for job in jobs:
        ref = reference.get(job.case)
        if ref is None:
            problems.append(f"{job.trainer} fold {job.fold} case {job.case}: no reference landmarks")
            continue
        mode = "heatmap" if "Heatmap" in job.trainer else "segmentation"
        try:
            points = case_points(Path(job.prediction), mode, refine_mm=refine_mm)
        except InputError as exc:
            problems.append(f"{job.trainer} fold {job.fold} case {job.case}: {exc}")
            continue
        errors = {n: (None if points.world.get(n) is None else float(np.linalg.norm(np.subtract(points.world[n], p))))
                  for n, p in ref.items()}
        complete = all(e is not None for e in errors.values())
        records.append({"trainer": job.trainer, "split": job.split, "fold": str(job.fold), "case": job.case, "method": mode,
                        **{f"error_{n}_mm": e for n, e in errors.items()},
                        "mean_error_mm": float(np.mean(list(errors.values()))) if complete else math.nan})
    return records, problems


def summarise(records: list[dict], trainers, confidence=0.95, n_resamples=10_000, seed=0, alpha=0.05) -> dict:
    """Per split: per-trainer summaries on the common cases and Holm-corrected pairwise tests."""
    out = {}
    for split in sorted({r["split"] for r in records}):
        rows = [r for r in records if r["split"] == split and not math.isnan(r["mean_error_mm"])]
        by = {t: {(r["fold"], r["case"]): r for r in rows if r["trainer"] == t} for t in trainers}
        common = set.intersection(*(set(v) for v in by.values())) if by else set()
        per = {}
        for t in trainers:
            vals = np.array([by[t][k]["mean_error_mm"] for k in sorted(common)])
            points = [e for k in sorted(common) for n, e in by[t][k].items() if n.startswith("error_") and e is not None]
            lo, hi = bootstrap_ci(vals, confidence, n_resamples, seed) if vals.size else (math.nan, math.nan)
            per[t] = {"n_cases": int(vals.size), "mean_mm": float(vals.mean()) if vals.size else math.nan, "ci": [lo, hi],
                      "median_mm": float(np.median(vals)) if vals.size else math.nan,
                      f"share_points_under_{TOLERANCE_MM:g}mm": float(np.mean(np.asarray(points) < TOLERANCE_MM)) if points else math.nan,
                      "only_this_trainer": sorted(f"{f}/{c}" for f, c in set(by[t]) - common)}
        tests = []
        for a, b in itertools.combinations(trainers, 2):
            keys = sorted(set(by[a]) & set(by[b]))
            res = paired_wilcoxon([by[a][k]["mean_error_mm"] for k in keys], [by[b][k]["mean_error_mm"] for k in keys])
            tests.append({"a": a, "b": b, **res})
        for test, p in zip(tests, holm([t["p"] for t in tests])):
            test["p_holm"] = float(p)
            test["significant"] = bool(p < alpha) if not math.isnan(p) else False
        out[split] = {"common_cases": len(common), "trainers": per, "tests": tests}
    return out


def _f(x, digits=2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown(summary: dict, confidence: float, problems: list[str]) -> str:
    lines = ["# Landmark errors (per-case mean over RCC, LCC, NCC; world mm)", ""]
    for split, s in summary.items():
        lines += [f"## {split} ({s['common_cases']} cases every trainer has)", "",
                  f"| trainer | cases | mean (mm) | {confidence:.0%} CI | median (mm) | points < {TOLERANCE_MM:g} mm |", "|---|---|---|---|---|---|"]
        for t, v in s["trainers"].items():
            share = v[f"share_points_under_{TOLERANCE_MM:g}mm"]
            lines.append(f"| {t} | {v['n_cases']} | {_f(v['mean_mm'])} | {_f(v['ci'][0])}-{_f(v['ci'][1])} | {_f(v['median_mm'])} | "
                         f"{'n/a' if math.isnan(share) else f'{share:.0%}'} |")
        if s["tests"]:
            lines += ["", "| A | B | n | median A-B (mm) | p | p (Holm) |", "|---|---|---|---|---|---|"]
            for t in s["tests"]:
                lines.append(f"| {t['a']} | {t['b']} | {t['n']} | {_f(t['median_difference'])} | {_f(t['p'], 4)} | {_f(t['p_holm'], 4)}{' *' if t['significant'] else ''} |")
        lines.append("")
    if problems:
        lines += ["## Not evaluated", ""] + [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"


def compare_landmarks(info, jobs, trainers, out: Path, confidence=0.95, n_resamples=10_000, seed=0, alpha=0.05) -> dict:
    """Run the landmark comparison of ``jobs`` (:class:`~nnunet_tavr.evaluation.results.CaseJob`)
    against ``$nnUNet_raw/<dataset>/landmarks.json`` and write its report files into ``out``."""
    import pandas as pd

    from nnunet_tavr.io import write_json, write_text
    from nnunet_tavr.landmarks.reference import load_reference

    reference, ref_path = load_reference(str(info.folders.raw_dataset(info.name)))
    records, problems = landmark_records(jobs, reference)
    summary = summarise(records, list(trainers), confidence, n_resamples, seed, alpha)
    write_text(pd.DataFrame.from_records(records).to_csv(index=False), out / "landmarks_per_case.csv")
    write_json({"reference": str(ref_path), "summary": summary, "problems": problems}, out / "landmarks_summary.json")
    write_text(markdown(summary, confidence, problems), out / "landmarks_report.md")
    return summary
