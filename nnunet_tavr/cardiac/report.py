"""Summaries and files of a whole-heart analysis: volume and LV-mass tables, Dice, agreement, report.

Input: the per-case records of :func:`nnunet_tavr.cardiac.volumes.evaluate_case`. Quantities are
every class volume (ml) and the LV mass (g). Agreement uses the cases that have both a
segmentation and a reference (:mod:`nnunet_tavr.cardiac.agreement` for the definitions). Written
into the output folder::

    volumes.csv, volumes.json   volumes (ml) and LV mass (g) per case, segmentation and reference
    dice.csv                    per case and class (with references)
    agreement.csv, .json        per quantity: medians (IQR), Wilcoxon p, bias, limits, r, CIs
    figures/agreement_<q>.png   scatter + Bland-Altman of every quantity
    figures/dice.png            Dice per structure
    report.md                   all of it, with seed 004's numbers beside
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from nnunet_tavr.cardiac.agreement import bland_altman, median_iqr, pearson
from nnunet_tavr.cardiac.structures import (SEED_004, SEED_004_OVERALL_DICE, SEED_004_SECONDS_PER_CASE, abbreviation,
                                            display_name)
from nnunet_tavr.io import write_json, write_text

LV_MASS = "lv_mass"


def quantities(classes: dict[str, int], records: list[dict]) -> list[tuple[str, str]]:
    """``(quantity, unit)``: every class volume, then the LV mass when there is a myocardium."""
    out = [(name, "ml") for name in classes]
    if any(r.get("lv_mass_g") is not None for r in records):
        out.append((LV_MASS, "g"))
    return out


def value(record: dict, quantity: str, reference: bool = False) -> float:
    prefix = "reference_" if reference else ""
    if quantity == LV_MASS:
        return record[f"{prefix}lv_mass_g"]
    return record[f"{prefix}volumes_ml"][quantity]


def label(quantity: str) -> str:
    return "LV mass" if quantity == LV_MASS else display_name(quantity)


def agreement_table(records: list[dict], classes: dict[str, int], confidence: float) -> list[dict]:
    """One row per quantity over the paired cases: medians (IQR), Wilcoxon, Bland-Altman, Pearson."""
    from nnunet_tavr.evaluation.stats import paired_wilcoxon

    paired = [r for r in records if "reference_volumes_ml" in r]
    rows = []
    for quantity, unit in quantities(classes, paired):
        ref = np.array([value(r, quantity, True) for r in paired], float)
        pred = np.array([value(r, quantity) for r in paired], float)
        ba, corr = bland_altman(ref, pred, confidence), pearson(ref, pred, confidence)
        wilcoxon = paired_wilcoxon(pred, ref) if ref.size else {"p": math.nan}
        rows.append({"quantity": quantity, "unit": unit, "n": int(ref.size),
                     "reference_median_iqr": median_iqr(ref), "prediction_median_iqr": median_iqr(pred),
                     "wilcoxon_p": wilcoxon["p"], "bland_altman": ba.as_dict(), "pearson": corr.as_dict(),
                     "reference": ref.tolist(), "prediction": pred.tolist()})
    return rows


def dice_table(records: list[dict], classes: dict[str, int]) -> dict:
    """Per class (and ``overall``: the per-case mean over the classes present): per-case Dice,
    median (IQR) and range."""
    paired = [r for r in records if "dice" in r]
    per_class = {name: [r["dice"][name] for r in paired] for name in classes}
    overall = [float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
               for v in (np.array([r["dice"][n] for n in classes], float) for r in paired)]
    out = {}
    for name, values in {"overall": overall, **per_class}.items():
        finite = [v for v in values if np.isfinite(v)]
        out[name] = {"values": values, "median_iqr": median_iqr(finite),
                     "range": (min(finite), max(finite)) if finite else (math.nan, math.nan), "n": len(finite)}
    return out


# ----------------------------------------------------------------------------------------------
# files


def _csv(rows: list[dict], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _r(v, digits: int = 4):
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), digits)


def volume_rows(records: list[dict], classes: dict[str, int]) -> list[dict]:
    rows = []
    for r in records:
        for kind, prefix in (("segmentation", ""), ("reference", "reference_")):
            if f"{prefix}volumes_ml" in r:
                row = {"case": r["case"], "source": kind, "lv_mass_g": _r(r.get(f"{prefix}lv_mass_g"))}
                row.update({f"{name}_ml": _r(r[f"{prefix}volumes_ml"][name]) for name in classes})
                rows.append(row)
    return rows


def agreement_rows(table: list[dict]) -> list[dict]:
    rows = []
    for row in table:
        ba, pc = row["bland_altman"], row["pearson"]
        out = {"quantity": row["quantity"], "unit": row["unit"], "n": row["n"], "wilcoxon_p": _r(row["wilcoxon_p"])}
        for kind in ("reference", "prediction"):
            med, q1, q3 = row[f"{kind}_median_iqr"]
            out.update({f"{kind}_median": _r(med), f"{kind}_q1": _r(q1), f"{kind}_q3": _r(q3)})
        out.update(bias=_r(ba["bias"]), sd=_r(ba["sd"]), lower_limit=_r(ba["lower"]), upper_limit=_r(ba["upper"]))
        for key in ("bias_ci", "lower_ci", "upper_ci"):
            ci = ba[key] or (None, None)
            out.update({f"{key}_low": _r(ci[0]), f"{key}_high": _r(ci[1])})
        ci = pc["ci"] or (None, None)
        out.update(pearson_r=_r(pc["r"]), pearson_p=_r(pc["p"], 6), pearson_ci_low=_r(ci[0]), pearson_ci_high=_r(ci[1]),
                   notes="; ".join(ba["notes"] + pc["notes"]))
        rows.append(out)
    return rows


def write_outputs(out_dir: Path, records: list[dict], classes: dict[str, int], settings: dict,
                  problems: dict[str, list[str]]) -> dict:
    """Write every file of the analysis (see the module docstring); returns the summary written to
    ``agreement.json`` (or, without references, the volumes' summary)."""
    from nnunet_tavr.cardiac.figures import plot_agreement, plot_dice

    out_dir.mkdir(parents=True, exist_ok=True)
    volume_columns = ["case", "source", *(f"{n}_ml" for n in classes), "lv_mass_g"]
    write_text(_csv(volume_rows(records, classes), volume_columns), out_dir / "volumes.csv")
    write_json({"settings": settings, "classes": classes, "cases": records, "problems": problems}, out_dir / "volumes.json")
    summary: dict = {"settings": settings, "classes": classes, "problems": problems}
    figures: dict[str, str] = {}
    if any("dice" in r for r in records):
        table = agreement_table(records, classes, settings["confidence"])
        dice = dice_table(records, classes)
        dice_rows = [{"case": r["case"], "class": n, "dice": _r(r["dice"][n])} for r in records if "dice" in r for n in classes]
        write_text(_csv(dice_rows, ["case", "class", "dice"]), out_dir / "dice.csv")
        write_text(_csv(agreement_rows(table), list(agreement_rows(table)[0]) if table else ["quantity"]), out_dir / "agreement.csv")
        for row in table:
            if row["n"] == 0:
                continue
            path = out_dir / "figures" / f"agreement_{row['quantity']}.png"
            from nnunet_tavr.cardiac.agreement import BlandAltman, Correlation

            plot_agreement(path, label(row["quantity"]), row["unit"], row["reference"], row["prediction"],
                           BlandAltman(**_tuples(row["bland_altman"])), Correlation(**_tuples(row["pearson"])),
                           "left_ventricle_myocardium" if row["quantity"] == LV_MASS else row["quantity"])
            figures[row["quantity"]] = str(path.relative_to(out_dir))
        if dice:
            plot_dice(out_dir / "figures" / "dice.png", {n: dice[n]["values"] for n in classes}, dice["overall"]["values"])
            figures["dice"] = "figures/dice.png"
        summary.update(agreement=table, dice=dice, figures=figures)
        write_json(summary, out_dir / "agreement.json")
    write_text(markdown(records, classes, settings, summary, problems), out_dir / "report.md")
    return summary


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) and k.endswith("ci") else v for k, v in d.items()}


# ----------------------------------------------------------------------------------------------
# Markdown


def _num(v, digits: int = 1) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def _ci(ci, digits: int = 1) -> str:
    return "" if not ci else f" [{_num(ci[0], digits)}, {_num(ci[1], digits)}]"


def _miqr(t, digits: int = 1) -> str:
    return f"{_num(t[0], digits)} ({_num(t[1], digits)}–{_num(t[2], digits)})"


def markdown(records: list[dict], classes: dict[str, int], settings: dict, summary: dict, problems: dict) -> str:
    level = int(round(100 * settings["confidence"]))
    lines = ["# Whole-heart analysis", "",
             f"- segmentations: `{settings['segmentations']}` ({settings['layout']})",
             f"- references: `{settings['references']}`" if settings.get("references") else "- references: none (volumes only)",
             f"- classes ({settings['classes_from']}): " + ", ".join(f"{v} {n}" for n, v in classes.items()),
             f"- LV mass = volume of `{settings['myocardium']}` x {settings['density']} g/ml",
             f"- cases: {len(records)}" + (f", paired with a reference: {sum('dice' in r for r in records)}" if settings.get("references") else ""),
             ""]
    lines += _volume_section(records, classes)
    if "agreement" in summary:
        lines += _dice_section(summary["dice"], classes)
        lines += _agreement_section(summary["agreement"], level)
        lines += ["## Figures", ""] + [f"![{k}]({v})" for k, v in summary["figures"].items()] + [""]
    if any(problems.values()):
        lines += ["## Cases left out", ""]
        for kind, items in problems.items():
            lines += [f"- {kind}: {item}" for item in items]
        lines.append("")
    return "\n".join(lines)


def _volume_section(records, classes) -> list[str]:
    lines = ["## Volumes per case", "", "ml; LV mass in g" + ("; reference in parentheses" if any("dice" in r for r in records) else ""), ""]
    head = ["case", *(abbreviation(n) for n in classes)] + (["LV mass"] if any(r.get("lv_mass_g") is not None for r in records) else [])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        cells = [r["case"]]
        for n in classes:
            cell = _num(r["volumes_ml"][n])
            if "reference_volumes_ml" in r:
                cell += f" ({_num(r['reference_volumes_ml'][n])})"
            cells.append(cell)
        if len(head) > len(classes) + 1:
            cells.append(_num(r.get("lv_mass_g")) + (f" ({_num(r.get('reference_lv_mass_g'))})" if "reference_volumes_ml" in r else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _dice_section(dice, classes) -> list[str]:
    lines = ["## Dice", "", "median (Q1–Q3) and range over the paired cases; seed 004's test set beside", "",
             "| structure | n | Dice | range | seed 004 |", "|---|---|---|---|---|"]
    for name in ["overall", *classes]:
        d = dice[name]
        seed = SEED_004_OVERALL_DICE if name == "overall" else SEED_004.get(name, {}).get("dice")
        lines.append(f"| {'Overall' if name == 'overall' else display_name(name)} | {d['n']} | {_miqr(d['median_iqr'], 3)} | "
                     f"{_num(d['range'][0], 3)}–{_num(d['range'][1], 3)} | {_miqr(seed, 3) if seed else '–'} |")
    return lines + [""]


def _agreement_section(table, level) -> list[str]:
    lines = ["## Agreement", "",
             f"Bias and {level} % limits of agreement of prediction − reference with their {level} % CIs "
             "(Bland–Altman), Pearson's r with its Fisher CI, Wilcoxon signed-rank p of the paired values. "
             "Seed 004 (n = 8) beside, converted to prediction − reference.", "",
             "| quantity | n | reference | prediction | Wilcoxon p | bias | lower limit | upper limit | r | seed 004: bias (limits), r |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in table:
        ba, pc = row["bland_altman"], row["pearson"]
        unit = row["unit"]
        if ba["bias"] is None:
            bias = lower = upper = ba["notes"][0]
        else:
            bias = _num(ba["bias"]) + _ci(ba["bias_ci"])
            lower = ba["notes"][0] if ba["lower"] is None else _num(ba["lower"]) + _ci(ba["lower_ci"])
            upper = "" if ba["upper"] is None else _num(ba["upper"]) + _ci(ba["upper_ci"])
        r = pc["notes"][0] if pc["r"] is None else _num(pc["r"], 3) + _ci(pc["ci"], 3) + (f" ({pc['notes'][0]})" if pc["notes"] else "")
        seed = SEED_004.get(row["quantity"], {})
        seed_text = (f"{seed['bias']:+.2f} ({seed['limits'][0]}, {seed['limits'][1]}), {seed['r']}" if "bias" in seed else "–")
        p = row["wilcoxon_p"]
        lines.append(f"| {label(row['quantity'])} ({unit}) | {row['n']} | {_miqr(row['reference_median_iqr'])} | "
                     f"{_miqr(row['prediction_median_iqr'])} | {_num(p, 3)} | {bias} | {lower} | {upper} | {r} | {seed_text} |")
    return lines + ["", f"Seed 004: {SEED_004_SECONDS_PER_CASE[0]} s per case (range {SEED_004_SECONDS_PER_CASE[1]}–"
                        f"{SEED_004_SECONDS_PER_CASE[2]}); see benchmarks/results/cardiac_predict.txt for nnU-Net's.", ""]
