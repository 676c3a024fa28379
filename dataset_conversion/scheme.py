"""Dataset schemes: what a dataset is, separate from how any dataset is converted.

A scheme declares a dataset (its classes, channels, default id and name, the TotalSegmentator masks
or other inputs it reads, its own options) and turns one input case into nnU-Net cases
(:meth:`Scheme.convert_case`). Everything else is the shared conversion machinery of this package:
discovery, the manifest, resume with fingerprints, shards and merge, splits (grouped by patient
when a scheme makes several cases of one patient), ``dataset.json``, QC figures and
``--install-splits``.

=========== ====================================================== ==================================
scheme      dataset                                                 module
=========== ====================================================== ==================================
``tavr``    the paper's 7 TAVR classes derived by rule (default 301) :mod:`.schemes.tavr`
``import``  CT + an existing label map + a label mapping (JSON)    :mod:`.schemes.imported`
``fluoro``  2-D angiography frames of ``nnunet-tavr fluoro``        :mod:`.schemes.fluoro`
``hinge``   aortic-valve hinge points as labelled spheres (315)     :mod:`.schemes.hinge`
``heart``   seed 004's whole heart from TotalSegmentator (304)     :mod:`.schemes.heart`
=========== ====================================================== ==================================

Adding a dataset is adding a scheme: a subclass with its class attributes and ``convert_case``,
registered in :data:`SCHEMES`.
"""

from __future__ import annotations

import argparse
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from nnunet_tavr.io import Geometry

#: scheme name -> "module:Class" (imported when used, so the CLI starts fast)
SCHEMES: dict[str, str] = {
    "tavr": "nnunet_tavr.dataset_conversion.schemes.tavr:TavrScheme",
    "import": "nnunet_tavr.dataset_conversion.schemes.imported:ImportScheme",
    "fluoro": "nnunet_tavr.dataset_conversion.schemes.fluoro:FluoroScheme",
    "hinge": "nnunet_tavr.dataset_conversion.schemes.hinge:HingeScheme",
    "heart": "nnunet_tavr.dataset_conversion.schemes.heart:HeartScheme",
}


def scheme_class(name: str) -> type["Scheme"]:
    """The scheme class registered as ``name``."""
    try:
        module, cls = SCHEMES[name].split(":")
    except KeyError:
        raise ValueError(f"unknown dataset scheme {name!r}; known: {', '.join(SCHEMES)}") from None
    return getattr(importlib.import_module(module), cls)


@dataclass
class CaseOutput:
    """One nnU-Net case made from an input case.

    The image is either a file copied verbatim (``image_file``: the CT as the user gave it) or an
    array written on ``geometry`` (``image``). ``labels`` is the label map on the same grid.
    ``group`` is the patient it belongs to (splits keep a group together); ``counts`` the voxels of
    each class; ``columns`` the scheme's own manifest values; ``files`` extra JSON documents kept
    in the case record (e.g. landmark coordinates).
    """

    case: str
    labels: np.ndarray
    geometry: Geometry
    image_file: Path | None = None
    image: np.ndarray | None = None
    group: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    columns: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)


@dataclass
class CaseResult:
    """What a scheme made of one input case: its nnU-Net cases, or the reason it made none.

    ``excluded`` holds ``(code, message)`` when the scheme's rules do not apply to the case;
    ``details`` is the JSON record of how the case was handled (kept in the case record and given
    back to :meth:`Scheme.dataset_figures`); ``columns`` are manifest values of an excluded case;
    ``write_qc(path)`` draws the case's QC figure from the objects still in memory.
    """

    outputs: list[CaseOutput] = field(default_factory=list)
    excluded: tuple[str, str] | None = None
    details: dict | None = None
    columns: dict[str, Any] = field(default_factory=dict)
    write_qc: Callable[[Path], Any] | None = None


class Scheme:
    """Base class of the dataset schemes (see the module docstring).

    Subclasses set the class attributes and implement :meth:`convert_case`; options are keyword
    arguments of ``__init__`` recorded by :meth:`options` (the conversion refuses to mix a folder
    made with other options).
    """

    name: ClassVar[str]
    #: default nnU-Net dataset id and name
    dataset_id: ClassVar[int]
    dataset_name: ClassVar[str]
    channel_names: ClassVar[dict[int, str]] = {0: "CT"}
    file_ending: ClassVar[str] = ".nii.gz"
    description: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    license: ClassVar[str] = "see the source dataset"
    #: the scheme's own manifest columns (after the voxel counts)
    manifest_columns: ClassVar[tuple[str, ...]] = ()
    #: whether cases of one patient are grouped in the manifest and the splits
    grouped: ClassVar[bool] = False

    def options(self) -> dict:
        """The settings that decide the dataset's content (JSON-able, recorded in ``config.json``)."""
        return {}

    def discover(self, root) -> tuple[str, list]:
        """``(layout, cases)``: the input cases of ``root`` as
        :class:`~nnunet_tavr.dataset_conversion.layouts.CaseSource` (default: the TotalSegmentator and
        case-folder layouts of :func:`~nnunet_tavr.dataset_conversion.layouts.discover_cases`)."""
        from nnunet_tavr.dataset_conversion.layouts import discover_cases

        return discover_cases(root)

    def labels(self) -> dict[str, int]:
        """nnU-Net's ``labels`` block: class name -> value, background included."""
        raise NotImplementedError

    def convert_case(self, source) -> CaseResult:
        """Turn one :class:`~nnunet_tavr.dataset_conversion.layouts.CaseSource` into nnU-Net cases.

        Raises :class:`~nnunet_tavr.errors.InputError` (with its ``code``) for bad input; a case the
        rules do not apply to is a :class:`CaseResult` with ``excluded`` set.
        """
        raise NotImplementedError

    def dataset_files(self, folder: Path, records: list[dict], split_of: dict[str, str]) -> None:
        """Dataset-level files next to ``dataset.json`` from the kept cases' records (optional;
        e.g. ``landmarks.json``). ``split_of``: nnU-Net case -> ``train`` / ``val`` / ``test``.
        Unlike the figures, a failure here fails the conversion."""

    def dataset_figures(self, folder: Path, records: list[dict]) -> None:
        """Dataset-level QC figures into ``folder/qc`` from the kept cases' records (optional)."""

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """The scheme's own options of ``nnunet-tavr convert`` (an argument group)."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Scheme":
        return cls()

    @property
    def foreground(self) -> tuple[str, ...]:
        """Foreground class names in label-value order."""
        return tuple(name for name, value in sorted(self.labels().items(), key=lambda kv: kv[1]) if value > 0)


def count_labels(labels: np.ndarray, classes: dict[str, int]) -> dict[str, int]:
    """Voxels of every foreground class of a label map (one ``bincount``)."""
    counts = np.bincount(np.asarray(labels).ravel(), minlength=max(classes.values()) + 1)
    return {name: int(counts[value]) for name, value in classes.items() if value > 0}


def as_path(value: str | os.PathLike | None) -> Path | None:
    return None if value is None else Path(value)
