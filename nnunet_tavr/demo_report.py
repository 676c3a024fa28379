"""The demo's report: ``report.md`` (a summary first, then every stage's details) and ``report.json``.

Pure readers of the files the demo's stages wrote (compare's ``summary.json`` and ``report.md``,
measure's ``measurements.json``, the manifest, the phantom's ``truth.json``) and one writer.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from nnunet_tavr.measurement.record import MeasurementRecord, Missing

#: What the summary compares with the phantom's truth (names in measurements.json).
HEADLINE_MEASUREMENTS = ("annulus area_diameter", "aortic_root sinus_diameter", "aortic_root stj_diameter")


def write_report(s, stages, logs: Path, case: str, compare_dir: Path, measure_dir: Path, total_seconds: float) -> Path:
    """Write ``report.md`` and ``report.json`` into the demo folder ``s.out`` (``s``: the demo's
    ``Settings``; ``stages``: its ``StageResult`` list; ``logs``: the folder of the commands' logs)."""
    from nnunet_tavr.io import write_json, write_text

    out = s.out
    rel = lambda p: os.path.relpath(p, out)  # noqa: E731
    summary = demo_summary(compare_dir, measure_dir, s.totalseg / case / "truth.json", s.trainers, total_seconds)
    lines = [
        "# nnunet-tavr demo report",
        "",
        *summary_markdown(summary, case),
        "",
        f"Device: **{s.device}**; mode: **{'quick' if s.quick else 'default'}**; {s.cases} phantom subjects "
        f"{s.shape} at {s.spacing} mm; plans `{s.plans}`; trainers {', '.join(f'`{t}`' for t in s.trainers)}.",
        "",
        f"> Minutes of {'CPU' if not s.gpu else 'GPU'} training on phantoms, which are far easier than real CTs "
        "(high contrast, one pose, no pathology): the numbers show the method and the pipeline working, not "
        "what a model trained for days on real data reaches.",
        "",
        "## Stages",
        "",
        "| # | stage | status | seconds | detail |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(stages, 1):
        lines.append(f"| {i} | {r.name} | {r.status} | {r.seconds:.1f} | {r.detail} |")
    lines += ["", "## Label derivation and conversion", ""]
    manifest = read_manifest(s.dataset_raw / "manifest.csv")
    lines += ["| case | kept | reason |", "|---|---|---|"]
    lines += [f"| {r['case']} | {r['kept']} | {r.get('reason', '')} |" for r in manifest]
    for png in sorted(s.dataset_raw.rglob("*.png"))[:3]:
        lines += ["", f"![{png.stem}]({rel(png)})"]
    lines += ["", "## Comparison of trainers", ""]
    compare_md = compare_dir / "report.md"
    if compare_md.is_file():
        body = compare_md.read_text().splitlines()
        lines += [ln.replace("](", f"]({rel(compare_dir)}/") if "![" in ln else ln for ln in body if not ln.startswith("# ")]
    lines += ["", f"## Measurements (case {case})", ""]
    records = {}
    for kind in ("prediction", "reference"):
        path = measure_dir / kind / "measurements.json"
        if path.is_file():
            records[kind] = _flat_values(json.loads(path.read_text()))
    truth_file = s.totalseg / case / "truth.json"
    if records and truth_file.is_file():
        records["phantom truth"] = _truth_values(json.loads(truth_file.read_text()))
    if records:
        keys = list(dict.fromkeys(k for rec in records.values() for k in rec))
        lines += ["| measurement | " + " | ".join(records) + " |", "|---|" + "---|" * len(records)]
        for k in keys:
            lines.append(f"| {k} | " + " | ".join(records[r].get(k, "missing") for r in records) + " |")
    for png in sorted(measure_dir.rglob("*.png")):
        lines += ["", f"![{png.parent.name} measurements]({rel(png)})"]
    lines += [
        "",
        "## Where everything is",
        "",
        f"- TotalSegmentator-layout phantoms: `{rel(s.totalseg)}`",
        f"- nnU-Net raw dataset (manifest.csv, splits, QC figures): `{rel(s.dataset_raw)}`",
        f"- nnU-Net preprocessed / results: `{rel(s.preprocessed)}`, `{rel(s.results)}`",
        f"- test-set predictions: `{rel(out / 'predictions')}`",
        f"- comparison: `{rel(compare_dir)}`; measurements: `{rel(measure_dir)}`",
        f"- logs of every command: `{rel(logs)}`",
        "",
    ]
    write_json(
        {
            "settings": {"device": s.device, "quick": s.quick, "cases": s.cases, "plans": s.plans, "trainers": list(s.trainers),
                         "spacing_mm": s.spacing, "shape": list(s.shape)},
            "summary": summary,
            "stages": [r.__dict__ for r in stages],
            "total_seconds": total_seconds,
        },
        out / "report.json",
    )
    return write_text("\n".join(lines), out / "report.md")


def demo_summary(compare_dir: Path, measure_dir: Path, truth_file: Path, trainers, total_seconds: float) -> dict:
    """What a user came for: each trainer's test-set Dice (mean, aorta, left ventricle), the headline
    measurements of the predicted case against the phantom's truth, and the total time."""
    summary: dict = {"total_minutes": round(total_seconds / 60, 2), "test_dice": {}, "measurements": {}}
    compared = compare_dir / "summary.json"
    if compared.is_file():
        test = json.loads(compared.read_text())["splits"].get("test", {})
        for trainer in trainers:
            if trainer not in test.get("trainers", []):
                continue
            per_class = test["per_class"]["Dice"]
            summary["test_dice"][trainer] = {
                "mean": test["mean"]["Dice"][trainer],
                "aorta": per_class["aorta"][trainer]["mean"],
                "left_ventricle": per_class["left_ventricle"][trainer]["mean"],
                "n_cases": test["n_common_cases"],
            }
    predicted = measure_dir / "prediction" / "measurements.json"
    if predicted.is_file() and truth_file.is_file():
        values = _numbers(json.loads(predicted.read_text()))
        truth = json.loads(truth_file.read_text())
        for name in HEADLINE_MEASUREMENTS:
            key = _TRUTH_KEYS[name][0]
            value = values.get(name)
            summary["measurements"][name] = {
                "predicted_mm": value, "truth_mm": round(truth[key], 2),
                "error_mm": None if value is None else round(value - truth[key], 2),
            }
        if "annulus label_area_diameter" in values:  # measured with the CT: the labels' own value too
            summary["measurements"]["annulus area_diameter"]["labels_only_mm"] = values["annulus label_area_diameter"]
    return summary


def summary_markdown(summary: dict, case: str) -> list[str]:
    lines = ["## Summary", "", "| trainer | test mean Dice | aorta | left ventricle | test cases |", "|---|---:|---:|---:|---:|"]
    for trainer, d in summary["test_dice"].items():
        lines.append(f"| `{trainer}` | {100 * d['mean']:.1f} | {100 * d['aorta']:.1f} | {100 * d['left_ventricle']:.1f} | {d['n_cases']} |")
    if summary["measurements"]:
        lines += ["", f"Measurements of test case {case} from the first trainer's prediction, against the phantom's truth:", "",
                  "| measurement | predicted (mm) | truth (mm) | error (mm) |", "|---|---:|---:|---:|"]
        for name, m in summary["measurements"].items():
            predicted = "missing" if m["predicted_mm"] is None else f"{m['predicted_mm']:.1f}"
            error = "–" if m["error_mm"] is None else f"{m['error_mm']:+.1f}"
            lines.append(f"| {name.replace('_', ' ')} | {predicted} | {m['truth_mm']:.1f} | {error} |")
        labels_only = summary["measurements"].get("annulus area_diameter", {}).get("labels_only_mm")
        if labels_only is not None:
            lines += ["", f"The annulus contour follows the CT's contrast lumen inside the predicted labels; from the labels "
                          f"alone its area-derived diameter is {labels_only:.1f} mm (docs/measurement.md)."]
    lines += ["", f"Total time: **{summary['total_minutes']:.1f} min**."]
    return lines


def _numbers(data: dict) -> dict[str, float]:
    """``{"annulus area_diameter": 23.1, ...}``: the numeric values of a ``measurements.json``."""
    row = MeasurementRecord.from_json(data).summary_row()
    return {name.replace(".", " ", 1): float(v) for name, v in row.items() if name != "case" and not isinstance(v, bool)}


def read_manifest(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _flat_values(data: dict) -> dict[str, str]:
    """Scalar measurements of a ``measurements.json`` as ``{"annulus area": "387.9 mm2", ...}``.

    Points and vectors are left out (they are in the JSON); a missing value keeps its reason.
    """
    flat: dict[str, str] = {}
    for name, section in MeasurementRecord.from_json(data).sections.items():
        if not section.ok:
            flat[name] = f"missing: {section.missing}"
            continue
        for key, entry in section.values.items():
            if isinstance(entry, Missing):
                flat[f"{name} {key}"] = f"missing: {entry.reason}"
            elif isinstance(entry.value, (int, float)) and not isinstance(entry.value, bool):
                flat[f"{name} {key}"] = f"{entry.value:.1f} {entry.unit if entry.unit not in ('1', None) else ''}".strip()
    return flat


#: measurements.json names -> the phantom's truth.json keys (mm, mm2)
_TRUTH_KEYS = {
    "annulus area": ("annulus_area_mm2", "mm2"),
    "annulus perimeter": ("annulus_perimeter_mm", "mm"),
    "annulus area_diameter": ("annulus_area_diameter_mm", "mm"),
    "annulus perimeter_diameter": ("annulus_perimeter_diameter_mm", "mm"),
    "annulus min_diameter": ("annulus_min_diameter_mm", "mm"),
    "annulus max_diameter": ("annulus_max_diameter_mm", "mm"),
    "aortic_root sinus_diameter": ("sinus_diameter_mm", "mm"),
    "aortic_root stj_diameter": ("stj_diameter_mm", "mm"),
    "aortic_root root_height": ("root_height_mm", "mm"),
    "ascending_aorta diameter": ("ascending_diameter_40mm", "mm"),
}


def _truth_values(truth: dict) -> dict[str, str]:
    """The phantom's ground truth by construction, in the measurement table's names."""
    values = {name: f"{truth[key]:.1f} {unit}" for name, (key, unit) in _TRUTH_KEYS.items() if key in truth}
    for side, iliac in truth.get("iliac", {}).items():
        narrowest = iliac["stenosis"]["min_diameter_mm"] if iliac.get("stenosis") else iliac["diameter_mm"]
        values[f"iliac_artery_{side} min_lumen_diameter"] = f"{narrowest:.1f} mm"
    return values
