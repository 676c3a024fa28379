"""Refactorings keep the data: phantoms, derived labels and converted datasets are byte-identical to
those of the code before the consolidation (issue 13), whose hashes are stored in
``tests/identity_hashes.json``.

``python tests/test_identity.py --write`` regenerates that file; do it only for a change that is
meant to alter the data, and say so in the commit message.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HASHES = Path(__file__).with_name("identity_hashes.json")

#: Subjects that cover every option of the phantom: default anatomy, chest-less, pelvis-less,
#: rotated on an anisotropic grid, no stenosis.
SUBJECTS = {
    "default": dict(seed=7, shape=(100, 80, 80), spacing=3.0),
    "no_heart": dict(seed=8, shape=(100, 80, 80), spacing=3.0, heart=False),
    "no_iliacs": dict(seed=9, shape=(100, 80, 80), spacing=3.0, iliacs=False),
    "rotated_anisotropic": dict(seed=10, shape=(90, 96, 96), spacing=(3.3, 2.5, 2.5), rotation_deg=(8.0, -12.0, 15.0)),
    "no_stenosis": dict(seed=11, shape=(100, 80, 80), spacing=3.0, stenosis=False, noise_hu=5.0),
}
#: The rule distances of the 3 mm subjects: the paper's 3 and 1 voxels.
RULES = dict(valve_mm=9.0, annulus_mm=3.0)
#: Manifest columns that are not data (timings, absolute paths).
VOLATILE_COLUMNS = ("seconds", "source")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree_hashes(folder: Path, skip=()) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): _sha(p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part in skip for part in p.relative_to(folder).parts)
    }


def subject_hashes(tmp: Path) -> dict[str, dict[str, str]]:
    """Files written for every subject, and the labels derived from its masks."""
    from nnunet_tavr.label_derivation import derive_tavr_labels
    from nnunet_tavr.phantom import make_subject, write_subject

    out = {}
    for name, params in SUBJECTS.items():
        phantom = make_subject(**params)
        write_subject(phantom, tmp / name)
        hashes = _tree_hashes(tmp / name)
        hashes["labels_by_construction"] = _sha(phantom.labels.tobytes())
        hashes["aorta_part"] = _sha(phantom.aorta_part.tobytes())
        labels, result = derive_tavr_labels(phantom.masks, phantom.spacing, case=name, **RULES)
        hashes["derived_labels"] = None if labels is None else _sha(labels.tobytes())
        record = result.to_dict()
        hashes["derivation_record"] = _sha(json.dumps(record, sort_keys=True).encode())
        out[name] = hashes
    return out


def dataset_hashes(tmp: Path) -> dict[str, str]:
    """A converted dataset (six phantoms, one chest-less): every file but the per-case records and
    figures; the manifest without its timing and path columns."""
    from nnunet_tavr.phantom import write_dataset

    source, raw = tmp / "totalsegmentator", tmp / "raw"
    write_dataset(source, 6, seed=3, shape=(100, 80, 80), spacing=3.0, no_heart=[5], progress=False)
    cmd = [str(Path(sys.executable).with_name("nnunet-tavr")), "convert", str(source), "-d", "990", "-n", "Identity",
           "--raw", str(raw), "--quiet", "--valve-mm", "9", "--annulus-mm", "3"]
    subprocess.run(cmd, check=True, capture_output=True)
    folder = raw / "Dataset990_Identity"
    hashes = _tree_hashes(folder, skip=("conversion", "qc", "manifest.csv"))
    rows = list(csv.DictReader(io.StringIO((folder / "manifest.csv").read_text())))
    for row in rows:
        for column in VOLATILE_COLUMNS:
            row.pop(column)
    hashes["manifest.csv (data columns)"] = _sha(json.dumps(rows).encode())
    hashes.update(_tree_hashes(source))
    return hashes


def all_hashes(tmp: Path) -> dict:
    return {"subjects": subject_hashes(tmp / "subjects"), "dataset": dataset_hashes(tmp / "dataset")}


def test_phantoms_and_derived_labels_are_unchanged(tmp_path):
    expected = json.loads(HASHES.read_text())["subjects"]
    got = subject_hashes(tmp_path)
    for name in SUBJECTS:
        diff = sorted(k for k in set(expected[name]) | set(got[name]) if expected[name].get(k) != got[name].get(k))
        assert not diff, f"subject {name}: changed {diff}"


def test_converted_dataset_is_unchanged(tmp_path):
    expected = json.loads(HASHES.read_text())["dataset"]
    got = dataset_hashes(tmp_path)
    diff = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
    assert not diff, f"converted dataset: changed {diff}"


def test_hash_check_detects_a_change(tmp_path):
    """The comparison can fail: one flipped voxel changes the derived-label hash."""
    from nnunet_tavr.phantom import make_subject

    phantom = make_subject(**SUBJECTS["default"])
    flipped = phantom.labels.copy()
    flipped.flat[np.flatnonzero(flipped)[0]] = 0
    assert _sha(flipped.tobytes()) != _sha(phantom.labels.tobytes())


if __name__ == "__main__":
    import tempfile

    if "--write" not in sys.argv:
        sys.exit("usage: python tests/test_identity.py --write   (regenerates tests/identity_hashes.json)")
    with tempfile.TemporaryDirectory() as tmp:
        HASHES.write_text(json.dumps(all_hashes(Path(tmp)), indent=1, sort_keys=True) + "\n")
    print(f"wrote {HASHES}")
    _ = pytest  # imported for the tests above
