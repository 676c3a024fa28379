"""nnU-Net's folders: ``$nnUNet_raw``, ``$nnUNet_preprocessed``, ``$nnUNet_results``, and dataset names.

Conversion, comparison, the demo and the tests resolve them here, and only here:

- :class:`NnunetFolders` holds the three roots, each from an explicit argument or its environment
  variable, read when asked (nnU-Net itself reads them once, at import);
- :func:`dataset_folder_name` builds ``DatasetXXX_Name`` from a validated id and name;
- :meth:`NnunetFolders.find_dataset` resolves an id or a name to an existing dataset;
- :meth:`NnunetFolders.env` is the environment that points nnU-Net's commands at these roots
  (with ``$nnUNet_extTrainer`` including this project's trainers).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from nnunet_tavr.errors import InputError

#: Root kind -> nnU-Net's environment variable.
ENV_VARIABLES = {"raw": "nnUNet_raw", "preprocessed": "nnUNet_preprocessed", "results": "nnUNet_results"}

#: nnU-Net names datasets ``Dataset%03d_Name``; ids 1-999 keep that three-digit form.
MIN_DATASET_ID, MAX_DATASET_ID = 1, 999
#: A dataset name nnU-Net and every file system handle: it cannot hold a path separator or "..".
DATASET_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_dataset_id(dataset_id) -> int:
    """``dataset_id`` as an int in nnU-Net's range, or an :class:`InputError` saying the range."""
    try:
        value = int(str(dataset_id))
    except ValueError:
        raise InputError(f"dataset id must be a whole number from {MIN_DATASET_ID} to {MAX_DATASET_ID}, got {dataset_id!r}") from None
    if not MIN_DATASET_ID <= value <= MAX_DATASET_ID:
        raise InputError(f"dataset id must be from {MIN_DATASET_ID} to {MAX_DATASET_ID} (nnU-Net's DatasetXXX_ names), got {value}")
    return value


def check_dataset_name(name: str) -> str:
    """``name`` if it can name a dataset folder (letters, digits, ``_``, ``-``; no path), else an error."""
    if not isinstance(name, str) or not DATASET_NAME_PATTERN.match(name):
        raise InputError(f"dataset name {name!r} is not allowed: use 1-64 letters, digits, '_' or '-', starting with a letter or digit")
    return name


def dataset_folder_name(dataset_id, name: str) -> str:
    """``DatasetXXX_Name`` from a validated id and name."""
    return f"Dataset{check_dataset_id(dataset_id):03d}_{check_dataset_name(name)}"


@dataclass(frozen=True)
class NnunetFolders:
    """The three nnU-Net roots; a root not given and not in the environment is ``None``."""

    raw: Path | None = None
    preprocessed: Path | None = None
    results: Path | None = None

    @classmethod
    def resolve(cls, raw=None, preprocessed=None, results=None, environ: dict | None = None) -> "NnunetFolders":
        """Explicit roots where given, else the environment variables (read now)."""
        environ = os.environ if environ is None else environ
        given = {"raw": raw, "preprocessed": preprocessed, "results": results}
        roots = {}
        for kind, variable in ENV_VARIABLES.items():
            value = given[kind] if given[kind] is not None else environ.get(variable)
            roots[kind] = Path(value) if value else None
        return cls(**roots)

    @classmethod
    def under(cls, root: str | os.PathLike) -> "NnunetFolders":
        """Self-contained roots ``root/nnUNet_raw``, ``root/nnUNet_preprocessed``, ``root/nnUNet_results``."""
        root = Path(root)
        return cls(*(root / variable for variable in ENV_VARIABLES.values()))

    def require(self, kind: str) -> Path:
        """The root of ``kind`` (``raw``, ``preprocessed`` or ``results``); an error saying how to set it."""
        path = getattr(self, kind)
        if path is None:
            variable = ENV_VARIABLES[kind]
            raise InputError(f"{variable} is not set: export {variable}=/path/to/{variable} (or pass --{kind})")
        if path.exists() and not path.is_dir():
            raise InputError(f"{ENV_VARIABLES[kind]} = {path} is a file, not a folder")
        return path

    def makedirs(self) -> "NnunetFolders":
        for kind in ENV_VARIABLES:
            self.require(kind).mkdir(parents=True, exist_ok=True)
        return self

    def env(self, base: dict | None = None) -> dict:
        """An environment for nnU-Net's commands: ``base`` (default ``os.environ``) with these roots
        and ``$nnUNet_extTrainer`` including this project's trainers."""
        from nnunet_tavr.trainer_path import ext_trainer_env

        env = ext_trainer_env(base)
        for kind, variable in ENV_VARIABLES.items():
            path = getattr(self, kind)
            if path is not None:
                env[variable] = str(path)
        return env

    def find_dataset(self, dataset) -> str:
        """``DatasetXXX_Name`` from an id (unique ``DatasetXXX_*`` folder in any root) or a name.

        The same rule as nnU-Net's ``maybe_convert_to_dataset_name``, over these roots instead of
        the ones nnU-Net read at import.
        """
        text = str(dataset)
        if text.startswith("Dataset"):
            return text
        try:
            number = int(text)
        except ValueError:
            raise InputError(f"dataset must be an integer id or a DatasetXXX_Name, not {text!r}") from None
        number = check_dataset_id(number)
        prefix = f"Dataset{number:03d}_"
        roots = [r for r in (self.raw, self.preprocessed, self.results) if r]
        found = sorted({p.name for root in roots if root.is_dir() for p in root.iterdir() if p.name.startswith(prefix) and p.is_dir()})
        if len(found) != 1:
            where = ", ".join(map(str, roots)) or "(no nnU-Net folders set)"
            what = "no folder" if not found else f"several folders ({', '.join(found)})"
            raise InputError(f"dataset {number}: {what} named {prefix}* in {where}")
        return found[0]

    def raw_dataset(self, name: str) -> Path:
        return self.require("raw") / name

    def preprocessed_dataset(self, name: str) -> Path:
        return self.require("preprocessed") / name

    def trainer_folder(self, name: str, trainer: str, plans: str, configuration: str) -> Path:
        """nnU-Net's output folder of one trainer / plans / configuration."""
        return self.require("results") / name / f"{trainer}__{plans}__{configuration}"
