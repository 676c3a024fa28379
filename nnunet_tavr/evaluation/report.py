"""Summaries and report files of a trainer comparison.

Input is the long table of per-case, per-class records (one row per trainer x split x fold x case x
class, see :func:`nnunet_tavr.evaluation.results.evaluate_jobs`). Rules:

- Within a split, trainers are summarised on the **common cases**, those every compared trainer
  has; cases only some trainers have are listed as excluded, never silently averaged.
- A pair of trainers is tested on the cases both have (which may be more than the common cases).
- A case's *mean Dice* (IoU, ASSD, HD95) is the mean over the classes defined in that case (NaN
  classes, absent from reference and prediction, are skipped). The "Mean" rows of the table and the
  bootstrap CIs are means of these per-case means; when every class is present in every case this
  equals the mean of the per-class means that nnU-Net's ``foreground_mean`` and the paper report.
- Dice and IoU are printed in percent, ASSD and HD95 in mm; the best value of each row is bold
  (highest Dice / IoU, lowest distance).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from nnunet_tavr.evaluation.metrics import HIGHER_IS_BETTER, METRICS, SegClass
from nnunet_tavr.evaluation.results import Gap
from nnunet_tavr.evaluation.stats import MIN_CASES, TOO_FEW
from nnunet_tavr.io import atomic_path, pyplot, save_figure, write_json, write_text

CASE_KEY = ["fold", "case"]


def display_name(name: str) -> str:
    """The paper's name of a TAVR class, else the dataset.json name."""
    from nnunet_tavr.labels import DISPLAY_NAMES

    return DISPLAY_NAMES.get(name, name)


def records_frame(records: Sequence[dict]):
    """The per-case records as a pandas DataFrame in a stable order."""
    import pandas as pd

    frame = pd.DataFrame.from_records(list(records))
    if frame.empty:
        return frame
    frame["fold"] = frame["fold"].astype(str)
    return frame.sort_values(["split", "trainer", "fold", "case", "class"], kind="stable").reset_index(drop=True)


def case_means(frame, metric: str):
    """Per-case mean of ``metric`` over the classes defined in the case, indexed by (trainer, fold, case)."""
    return frame.groupby(["trainer", *CASE_KEY])[metric].mean()  # pandas' mean skips NaN


def common_cases(frame, trainers: Sequence[str]) -> tuple[set, dict[str, list]]:
    """Cases (fold, case) every trainer has, and for each trainer the cases it has beyond them."""
    have = {t: set(map(tuple, frame.loc[frame.trainer == t, CASE_KEY].drop_duplicates().values)) for t in trainers}
    common = set.intersection(*have.values()) if have else set()
    return common, {t: sorted(have[t] - common) for t in trainers}


def _restrict(frame, cases: set):
    keys = list(zip(frame["fold"], frame["case"]))
    return frame[[k in cases for k in keys]]


def _nan_to_none(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def summarize_split(
    frame,
    trainers: Sequence[str],
    classes: Sequence[SegClass],
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict:
    """Summary of one split (all rows of ``frame`` belong to it): JSON-ready nested dicts."""
    from nnunet_tavr.evaluation.stats import bootstrap_ci, holm, paired_wilcoxon

    present = [t for t in trainers if (frame.trainer == t).any()]
    common, extra = common_cases(frame, present)
    shared = _restrict(frame, common)
    class_names = [c.name for c in classes]

    per_class = {}
    for metric in METRICS:
        table = shared.groupby(["class", "trainer"])[metric].agg(["mean", "std", "count"])
        per_class[metric] = {
            name: {
                t: {k: _nan_to_none(float(table.loc[(name, t), k])) if (name, t) in table.index else None for k in ("mean", "std", "count")}
                for t in present
            }
            for name in class_names
        }
    means = {metric: case_means(shared, metric) for metric in METRICS}
    overall = {
        metric: {t: _nan_to_none(float(means[metric].loc[t].mean())) if t in means[metric].index.get_level_values(0) else None for t in present}
        for metric in METRICS
    }

    # Per fold, each trainer on all the cases it has (n shown), so a fold only one trainer has
    # still appears; the pooled figures are on the common cases.
    folds = sorted(set(frame["fold"]), key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0, f))
    per_fold = {}
    for fold in folds:
        sub = frame[frame.fold == fold]
        dice = case_means(sub, "Dice")
        per_fold[fold] = {t: {"mean_dice": _nan_to_none(float(dice.loc[t].mean())), "n": int(dice.loc[t].size)} for t in present if t in dice.index.get_level_values(0)}

    ci = {}
    for t in present:
        values = means["Dice"].loc[t].dropna().to_numpy() if t in means["Dice"].index.get_level_values(0) else np.array([])
        lo, hi = bootstrap_ci(values, confidence=confidence, n_resamples=n_resamples, seed=seed)
        ci[t] = {
            "mean_dice": _nan_to_none(float(values.mean())) if values.size else None,
            "low": _nan_to_none(lo),
            "high": _nan_to_none(hi),
            "n": int(values.size),
            "confidence": confidence,
        }

    ci_metrics = {}  # every metric's mean and CI over the units (cases, or patients)
    for metric in METRICS:
        ci_metrics[metric] = {}
        for t in present:
            values = means[metric].loc[t].dropna().to_numpy() if t in means[metric].index.get_level_values(0) else np.array([])
            lo, hi = bootstrap_ci(values, confidence=confidence, n_resamples=n_resamples, seed=seed)
            ci_metrics[metric][t] = {"mean": _nan_to_none(float(values.mean())) if values.size else None,
                                     "median": _nan_to_none(float(np.median(values))) if values.size else None,
                                     "low": _nan_to_none(lo), "high": _nan_to_none(hi), "n": int(values.size)}

    all_dice = case_means(frame, "Dice")
    tests = []
    for a, b in itertools.combinations(present, 2):
        pair = all_dice.loc[a].to_frame("a").join(all_dice.loc[b].to_frame("b"), how="inner").dropna()
        result = paired_wilcoxon(pair["a"].to_numpy(), pair["b"].to_numpy())
        result["mean_difference"] = float((pair["a"] - pair["b"]).mean()) if len(pair) else np.nan
        tests.append({"a": a, "b": b, **result})
    adjusted = holm([t["p"] for t in tests])
    for test, p_holm in zip(tests, adjusted):
        test["p_holm"] = float(p_holm)
        test["significant"] = bool(p_holm < alpha) if not math.isnan(p_holm) else False
        for key in ("p", "p_holm", "statistic", "median_difference", "mean_difference"):
            test[key] = _nan_to_none(float(test[key]))

    return {
        "trainers": present,
        "classes": class_names,
        "n_common_cases": len(common),
        "common_cases": [list(k) for k in sorted(common)],
        "excluded_cases": {t: [list(k) for k in v] for t, v in extra.items() if v},
        "per_class": per_class,
        "mean": overall,
        "per_fold": per_fold,
        "bootstrap_ci": ci,
        "bootstrap_ci_metrics": ci_metrics,
        **_unit(shared, present, common),
        "wilcoxon": tests,
        "alpha": alpha,
        "n_resamples": n_resamples,
        "seed": seed,
        "undefined_distances": _undefined_distances(shared),
    }


def _unit(frame, trainers, common) -> dict:
    """What one statistical unit is: a case, or (records of :mod:`.grouping`) a patient, with the
    number of frames the common patients hold per trainer."""
    if "n_frames" not in frame.columns:
        return {"unit": "case"}
    from nnunet_tavr.evaluation.grouping import frames_per_patient

    return {"unit": "patient", "n_common_frames": frames_per_patient(frame, trainers, common)}


def _undefined_distances(frame) -> dict:
    """How many (case, class) records had exactly one empty mask (distance by convention); for
    patient records, how many of their frames had."""
    if "one_empty_frames" in frame.columns:
        return {t: int(frame.loc[frame.trainer == t, "one_empty_frames"].sum()) for t in sorted(set(frame.trainer))}
    one_empty = frame[(frame.n_ref == 0) != (frame.n_pred == 0)]
    return {t: int((one_empty.trainer == t).sum()) for t in sorted(set(frame.trainer))}


def _fmt(value, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.2f}" if metric in ("Dice", "IoU") else f"{value:.2f}"


def _row(label: str, metric: str, values: dict, trainers: Sequence[str]) -> str:
    cells = [values.get(t) for t in trainers]
    finite = [v for v in cells if v is not None and not math.isnan(v)]
    best = (max if HIGHER_IS_BETTER[metric] else min)(finite) if len(finite) > 1 else None
    text = [f"**{_fmt(v, metric)}**" if best is not None and v is not None and round(v, 6) == round(best, 6) else _fmt(v, metric) for v in cells]
    return "| " + " | ".join([label, *text]) + " |"


def table3_markdown(summary: dict) -> str:
    """Table shaped like the paper's Table 3: rows class x {Dice, IoU}, then means, then distances."""
    trainers, classes = summary["trainers"], summary["classes"]
    lines = ["| | " + " | ".join(trainers) + " |", "|---|" + "---:|" * len(trainers)]
    for name in classes:
        for metric in ("Dice", "IoU"):
            values = {t: summary["per_class"][metric][name][t]["mean"] for t in trainers}
            lines.append(_row(f"{display_name(name)} {metric}", metric, values, trainers))
    for metric in ("Dice", "IoU"):
        lines.append(_row(f"Mean {metric}", metric, summary["mean"][metric], trainers))
    for metric in ("ASSD", "HD95"):
        for name in classes:
            values = {t: summary["per_class"][metric][name][t]["mean"] for t in trainers}
            lines.append(_row(f"{display_name(name)} {metric} (mm)", metric, values, trainers))
        lines.append(_row(f"Mean {metric} (mm)", metric, summary["mean"][metric], trainers))
    return "\n".join(lines)


def _fold_table(summary: dict) -> str:
    trainers = summary["trainers"]
    lines = ["| fold | " + " | ".join(trainers) + " |", "|---|" + "---:|" * len(trainers)]
    for fold, row in summary["per_fold"].items():
        cells = [f"{_fmt(row[t]['mean_dice'], 'Dice')} (n={row[t]['n']})" if t in row else "–" for t in trainers]
        lines.append(f"| {fold} | " + " | ".join(cells) + " |")
    pooled = [f"{_fmt(summary['bootstrap_ci'][t]['mean_dice'], 'Dice')} (n={summary['bootstrap_ci'][t]['n']})" for t in trainers]
    lines.append("| pooled (common cases) | " + " | ".join(pooled) + " |")
    return "\n".join(lines)


def _ci_table(summary: dict) -> str:
    level = round(100 * next(iter(summary["bootstrap_ci"].values()))["confidence"]) if summary["bootstrap_ci"] else 95
    lines = [f"| trainer | mean Dice | {level}% CI | n {summary.get('unit', 'case')}s |", "|---|---:|---:|---:|"]
    for t, ci in summary["bootstrap_ci"].items():
        interval = TOO_FEW if ci["n"] < MIN_CASES else f"[{_fmt(ci['low'], 'Dice')}, {_fmt(ci['high'], 'Dice')}]"
        lines.append(f"| {t} | {_fmt(ci['mean_dice'], 'Dice')} | {interval} | {ci['n']} |")
    return "\n".join(lines)


def _metric_ci_table(summary: dict) -> str:
    """Mean [bootstrap CI of the mean], median, of every metric per trainer (Dice, IoU in %, distances in mm)."""
    ci = summary.get("bootstrap_ci_metrics", {})
    trainers = summary["trainers"]
    lines = ["| metric | " + " | ".join(trainers) + " |", "|---|" + "---:|" * len(trainers)]
    for metric in METRICS:
        unit = " (mm)" if metric in ("ASSD", "HD95") else " (%)"
        cells = []
        for t in trainers:
            c = ci.get(metric, {}).get(t)
            cells.append("–" if not c else f"{_fmt(c['mean'], metric)} [{_fmt(c['low'], metric)}, {_fmt(c['high'], metric)}], "
                         f"median {_fmt(c.get('median'), metric)} (n={c['n']})")
        lines.append(f"| {metric}{unit} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _unit_line(summary: dict) -> str:
    if summary.get("unit") != "patient":
        return f"{summary['n_common_cases']} case(s) common to all trainers; every figure below is on them unless stated."
    frames = summary.get("n_common_frames", {})
    counts = sorted(set(frames.values()))
    shown = str(counts[0]) if len(counts) == 1 else ", ".join(f"{t}: {n}" for t, n in frames.items())
    return (f"{summary['n_common_cases']} patient(s) ({shown} frames) common to all trainers. The unit of every figure below is the "
            "patient: each patient counts once, with the mean of its frames (seed 002's patient-level evaluation); "
            "CIs resample patients and the Wilcoxon tests pair patients.")


def _p(value) -> str:
    return "–" if value is None else (f"{value:.2e}" if value < 1e-3 else f"{value:.4f}")


def _test_table(summary: dict) -> str:
    lines = [
        "| A | B | n | mean ΔDice (A−B) | median Δ | A better / tie / B better | p | p (Holm) | significant |",
        "|---|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for t in summary["wilcoxon"]:
        few = t["n"] < MIN_CASES
        p, p_holm, significant = (TOO_FEW, TOO_FEW, "–") if few else (_p(t["p"]), _p(t["p_holm"]), "yes" if t["significant"] else "no")
        lines.append(
            f"| {t['a']} | {t['b']} | {t['n']} | {_fmt(t['mean_difference'], 'Dice')} | {_fmt(t['median_difference'], 'Dice')} | "
            f"{t['wins']} / {t['ties']} / {t['losses']} | {p} | {p_holm} | {significant} |"
        )
    return "\n".join(lines)


def _gap_lines(gaps: Sequence[Gap], summary: dict | None) -> list[str]:
    lines = []
    for g in gaps:
        what = f"fold {g.fold}" if g.case is None else f"fold {g.fold}, case {g.case}"
        lines.append(f"- {g.trainer} ({g.split}): {what}: {g.reason}")
    if summary:
        for t, cases in summary["excluded_cases"].items():
            shown = ", ".join(f"{c} (fold {f})" for f, c in cases[:20]) + (" ..." if len(cases) > 20 else "")
            lines.append(f"- {t}: {len(cases)} case(s) left out of the common comparison because another trainer lacks them: {shown}")
    return lines


SPLIT_TITLES = {"val": "Cross-validation (fold validation sets)", "test": "Test set"}


def markdown_report(summaries: dict[str, dict], gaps: Sequence[Gap], settings: dict) -> str:
    """The whole Markdown report (one section per split)."""
    out = [f"# Trainer comparison: {settings.get('dataset', '')} {settings.get('configuration', '')}".rstrip(), ""]
    out.append(
        f"Plans `{settings.get('plans')}`, folds {', '.join(settings.get('folds', []))}. Dice and IoU in %, ASSD and HD95 in mm; "
        "bold = best in row. Surface distances with exactly one empty mask are set to "
        + ("the image diagonal" if settings.get("one_empty") == "diagonal" else "NaN (left out)")
        + "; classes absent from both reference and prediction are left out (nnU-Net's convention)."
    )
    out.append("")
    for split, summary in summaries.items():
        out += [f"## {SPLIT_TITLES.get(split, split)}", ""]
        out.append(_unit_line(summary))
        out += ["", "### Per-class metrics (paper's Table 3 layout)", "", table3_markdown(summary), ""]
        out += ["### Mean Dice per fold (each trainer's own cases) and pooled (common cases)", "", _fold_table(summary), ""]
        out += [f"### Bootstrap confidence intervals of the mean Dice ({summary['n_resamples']} resamples, seed {summary['seed']})", "", _ci_table(summary), ""]
        out += [f"### Mean and {round(100 * next(iter(summary['bootstrap_ci'].values()))['confidence']) if summary['bootstrap_ci'] else 95}% "
                f"bootstrap CI of the mean, and median, of every metric (per {summary.get('unit', 'case')})", "", _metric_ci_table(summary), ""]
        out += [
            f"### Paired Wilcoxon signed-rank tests on per-{summary.get('unit', 'case')} mean Dice (Holm-corrected, α = {summary['alpha']})",
            "",
            f"Each pair is tested on the {summary.get('unit', 'case')}s both trainers have.",
            "",
            _test_table(summary),
            "",
        ]
        undefined = {t: n for t, n in summary["undefined_distances"].items() if n}
        if undefined:
            out += ["Class records with exactly one empty mask (surface distance by convention): " + ", ".join(f"{t}: {n}" for t, n in undefined.items()), ""]
        out += [f"![per-case Dice]({settings.get('plots', {}).get(split, '')})", ""] if settings.get("plots", {}).get(split) else []
    gap_lines = _gap_lines(gaps, None) + [line for s in summaries.values() for line in _gap_lines([], s)]
    out += ["## Gaps", ""] + (gap_lines or ["None: every expected fold and case was evaluated for every trainer."]) + [""]
    return "\n".join(out)


def dice_boxplots(frame, trainers: Sequence[str], classes: Sequence[SegClass], path: str | Path, title: str = "") -> Path:
    """Box plots of per-case Dice, one panel per class, one box per trainer (PNG, Agg backend)."""
    plt = pyplot()

    names = [c.name for c in classes]
    ncols = min(4, len(names) + 1)
    nrows = math.ceil((len(names) + 1) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.0 * nrows), squeeze=False, sharey=True)
    panels = [(display_name(n), frame[frame["class"] == n].groupby(["trainer", *CASE_KEY])["Dice"].mean()) for n in names]
    panels.append(("Mean (per case)", case_means(frame, "Dice")))
    for ax, (label, series) in zip(axes.flat, panels):
        data = [series.loc[t].dropna().to_numpy() if t in series.index.get_level_values(0) else np.array([]) for t in trainers]
        ax.boxplot(data, showmeans=True, showfliers=False)
        # every case as a dot: with few cases a box alone hides how many there are
        jitter = np.random.default_rng(0)
        for i, values in enumerate(data, start=1):
            ax.scatter(i + jitter.uniform(-0.12, 0.12, values.size), values, s=6, color="black", alpha=0.5, zorder=3)
        ax.set_xticks(range(1, len(trainers) + 1), [t.replace("nnUNetTrainer", "") or t for t in trainers], rotation=30, ha="right", fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("Dice")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    return save_figure(fig, path, dpi=120)


def write_outputs(
    out_dir: str | Path,
    frame,
    trainers: Sequence[str],
    classes: Sequence[SegClass],
    gaps: Sequence[Gap],
    settings: dict,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
    cases=None,
) -> dict:
    """Write ``per_case.csv``, ``summary.json``, ``report.md`` and ``dice_boxplots_<split>.png``.

    With ``cases`` (the per-case records behind patient records ``frame``, see :mod:`.grouping`),
    ``per_case.csv`` holds ``cases`` and ``per_patient.csv`` the patients.
    Returns the summary (what ``summary.json`` holds).
    """
    from dataclasses import asdict

    # Every number first, then the files: a failure leaves no half-written report behind.
    splits = [s for s in ("val", "test") if not frame.empty and (frame.split == s).any()]
    summaries = {split: summarize_split(frame[frame.split == split], trainers, classes, confidence, n_resamples, seed, alpha) for split in splits}
    plots = {split: f"dice_boxplots_{split}.png" for split in splits}
    settings = {**settings, "plots": plots}
    summary = {"settings": settings, "splits": summaries, "gaps": [asdict(g) for g in gaps]}
    report = markdown_report(summaries, gaps, settings)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "per_case.csv") as tmp:
        (frame if cases is None else cases).to_csv(tmp, index=False)
    if cases is not None:
        with atomic_path(out_dir / "per_patient.csv") as tmp:
            frame.to_csv(tmp, index=False)
    for split in splits:
        common = _restrict(frame[frame.split == split], set(map(tuple, summaries[split]["common_cases"])))
        dice_boxplots(common, summaries[split]["trainers"], classes, out_dir / plots[split], title=f"{SPLIT_TITLES[split]}: per-{summaries[split].get('unit', 'case')} Dice")
    write_json(summary, out_dir / "summary.json")
    write_text(report, out_dir / "report.md")
    return summary
