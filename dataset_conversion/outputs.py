"""The dataset folder a conversion writes: its paths, its settings and its per-case records.

Layout (``$nnUNet_raw/DatasetXXX_Name/``)::

    imagesTr/<case>_0000<ending>   labelsTr/<case><ending>     training + validation cases
    imagesTs/ labelsTs/                                         test cases (never in any fold)
    conversion/config.json                                      the settings (reruns must match)
    conversion/cases/<source>.json                              one record per input case, written last

A record marks its input case done. It holds the input's fingerprint (size and mtime of every
file of the case folder) and the sizes of the files written, so a rerun redoes exactly the cases
whose input changed or whose outputs are broken. Every path built from a case id goes through
:func:`case_path`, which refuses ids that could leave the folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from nnunet_tavr.errors import InvalidCaseId, Refused
from nnunet_tavr.io import write_json

#: Bump when the per-case output format changes: records of another version are redone.
RECORD_VERSION = 2
#: Case identifiers nnU-Net and file systems handle without surprises (no separators, no "..").
CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
SUBFOLDERS = ("imagesTr", "labelsTr", "imagesTs", "labelsTs")


def check_case_id(case: str) -> str:
    """``case`` if it can name files inside a dataset, else :class:`InvalidCaseId`."""
    if not isinstance(case, str) or not CASE_ID_PATTERN.match(case) or len(case) > 200:
        raise InvalidCaseId(f"invalid case id {case!r}: use letters, digits, '_' and '-' only (no path separators)")
    return case


def case_path(folder: Path, sub: str, name: str) -> Path:
    """``folder/sub/name``, refusing any result outside ``folder`` (symbolic links resolved)."""
    path = Path(folder) / sub / name
    root = Path(folder).resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise InvalidCaseId(f"{path} would lie outside the dataset folder {folder}")
    return path


def image_path(folder: Path, case: str, test: bool, ending: str) -> Path:
    return case_path(folder, "imagesTs" if test else "imagesTr", f"{check_case_id(case)}_0000{ending}")


def label_path(folder: Path, case: str, test: bool, ending: str) -> Path:
    return case_path(folder, "labelsTs" if test else "labelsTr", f"{check_case_id(case)}{ending}")


def record_path(folder: Path, source_case: str) -> Path:
    return case_path(folder, "conversion/cases", f"{check_case_id(source_case)}.json")


def case_files(folder: Path, case: str, ending: str) -> list[Path]:
    """Every place an output file of ``case`` may be (training and test side)."""
    return [p(folder, case, test, ending) for test in (False, True) for p in (image_path, label_path)]


def remove_temporaries(folder: Path, case: str) -> None:
    """Remove temporary files an interrupted run left for one case (atomic writes' ``.<name>.*``)."""
    check_case_id(case)
    for sub in SUBFOLDERS + ("qc",):
        d = folder / sub
        if d.is_dir():
            for tmp in list(d.glob(f".{case}.*")) + list(d.glob(f".{case}_0000.*")):
                tmp.unlink(missing_ok=True)


def input_fingerprint(source) -> dict[str, list[int]]:
    """Relative path -> [size, mtime_ns] of every file of the case folder (what a rerun compares)."""
    if source.problem or not source.path.is_dir():
        return {}
    out = {}
    for path in sorted(source.path.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            st = path.stat()
            out[str(path.relative_to(source.path))] = [int(st.st_size), int(st.st_mtime_ns)]
    return out


def read_record(folder: Path, source_case: str) -> dict | None:
    try:
        return json.loads(record_path(folder, source_case).read_text())
    except (OSError, ValueError):
        return None


def finished_record(folder: Path, source, ending: str, accept_failed: bool = False) -> dict | None:
    """The record of a case that needs no work, or ``None`` (missing, stale input, broken outputs)."""
    record = read_record(folder, source.case_id)
    if record is None or record.get("record_version") != RECORD_VERSION or record.get("input") != input_fingerprint(source):
        return None
    if record.get("status") == "failed" and not accept_failed:
        return None
    for output in record.get("outputs", []):
        for kind, locate in (("image", image_path), ("label", label_path)):
            found = [p for p in (locate(folder, output["case"], False, ending), locate(folder, output["case"], True, ending)) if p.is_file()]
            if len(found) != 1 or found[0].stat().st_size != output["sizes"].get(kind):
                return None
    return record


def prepare_dataset_folder(raw_root: Path, folder_name: str, dataset_id: int, config: dict, overwrite: bool = False) -> Path:
    """Create (or reuse) the dataset folder, enforcing the overwrite policy.

    Refused unless ``overwrite``: another ``DatasetXXX_*`` folder with the same id, a non-empty
    folder not made by this converter, or one made with different settings (source, seed,
    scheme options, ...). With ``overwrite`` those folders are deleted first.
    """
    folder = raw_root / folder_name
    others = sorted(p for p in raw_root.glob(f"Dataset{dataset_id:03d}_*") if p.is_dir() and p.name != folder.name)
    state = folder / "conversion" / "config.json"
    if overwrite:
        for path in others + ([folder] if folder.exists() else []):
            shutil.rmtree(path)
    else:
        if others:
            raise Refused(f"dataset id {dataset_id} is already used by {', '.join(map(str, others))}; "
                          "choose another -d or pass --overwrite to replace it")
        # A folder holding only conversion/ is one a parallel shard is just creating.
        if folder.is_dir() and not state.is_file() and any(p.name != "conversion" for p in folder.iterdir()):
            raise Refused(f"{folder} exists and was not made by 'nnunet-tavr convert'; pass --overwrite to replace it")
    if not state.is_file():
        write_json(config, state)  # shards starting together write the same content
    previous = json.loads(state.read_text())
    if previous != config:
        changed = sorted(k for k in set(previous) | set(config) if previous.get(k) != config.get(k))
        raise Refused(
            f"{folder} was converted with different settings ({', '.join(f'{k}: {previous.get(k)!r} -> {config.get(k)!r}' for k in changed)}); "
            "pass --overwrite to rebuild it"
        )
    return folder


def dataset_settings(folder: Path) -> dict | None:
    """The ``conversion/config.json`` of a converted dataset, or ``None``."""
    try:
        return json.loads((Path(folder) / "conversion" / "config.json").read_text())
    except (OSError, ValueError):
        return None


def is_inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` resolves inside ``folder`` (symbolic links followed)."""
    root, resolved = Path(folder).resolve(), Path(path).resolve()
    return resolved == root or root in resolved.parents
