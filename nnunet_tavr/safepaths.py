"""Output paths checked before any work: inputs are never written, nothing lands outside the output.

Every command calls these on its arguments first, so a run that would overwrite an input (the
same path, a symbolic or hard link to it), write into a folder that is a file, write a label map
without an image ending, or write where it has no permission is refused up front, with the
option's name and the file, and nothing is created.

:func:`contained` builds a path from data (a case id, a dataset name) and refuses any result that
resolves outside its base folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from nnunet_tavr.errors import InputError, InvalidCaseId


class UnsafeOutput(InputError):
    """An output path that would overwrite an input, or cannot be written."""

    code = "unsafe_output"


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: equal after resolving links, or one inode (hard links)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` resolves to ``folder`` or below it (symbolic links followed)."""
    root, resolved = Path(folder).resolve(), Path(path).resolve()
    return resolved == root or root in resolved.parents


def contained(base: str | os.PathLike, *parts: str) -> Path:
    """``base / parts...``, refusing a result outside ``base`` (``..``, absolute parts, links)."""
    path = Path(base).joinpath(*parts)
    if any(Path(p).is_absolute() for p in parts) or not inside(path, base):
        raise InvalidCaseId(f"{Path(*parts) if parts else path} would lie outside {base}")
    return path


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable(path: Path, option: str) -> None:
    """The nearest existing ancestor must be a writable folder (not a file)."""
    anchor = _nearest_existing(path.parent if not path.is_dir() else path)
    if not anchor.is_dir():
        raise UnsafeOutput(f"{option} {path}: {anchor} is a file, not a folder")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise UnsafeOutput(f"{option} {path}: no permission to write in {anchor}")


def _refuse_inputs(path: Path, inputs: Iterable, option: str) -> None:
    """Refuse ``path`` if it is one of ``inputs`` (or a link to one) or lies inside an input folder."""
    for given in inputs:
        if given is None:
            continue
        given = Path(given)
        if same_file(path, given):
            raise UnsafeOutput(f"{option} {path} is the input {given}: inputs are never overwritten; choose another output")
        if given.is_dir() and inside(path, given):
            raise UnsafeOutput(f"{option} {path} lies inside the input folder {given}: write outputs elsewhere")


def check_output_file(path: str | os.PathLike, *, inputs: Iterable = (), endings: tuple[str, ...] | None = None,
                      option: str = "-o") -> Path:
    """Check an output file before any work.

    Refused: an existing folder at ``path``; a name without one of ``endings`` (when given); a
    path equal to (or a link to) one of ``inputs`` or inside an input folder; a parent that is a
    file or not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise UnsafeOutput(f"{option} {path} is a folder; give a file name" + (f" ending in {endings[0]}" if endings else ""))
    if endings and not any(path.name.endswith(e) and len(path.name) > len(e) for e in endings):
        raise UnsafeOutput(f"{option} {path}: the file name must end with {' or '.join(endings)}")
    _refuse_inputs(path, inputs, option)
    _check_writable(path, option)
    return path


def check_output_dir(path: str | os.PathLike, *, inputs: Iterable = (), option: str = "-o") -> Path:
    """Check an output folder before any work.

    Refused: an existing file at ``path``; a folder that is (or lies inside) an input folder, or
    that is an input file; an ancestor that is a file or not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UnsafeOutput(f"{option} {path} is a file; give a folder")
    _refuse_inputs(path, inputs, option)
    _check_writable(path, option)
    return path


def check_input(path: str | os.PathLike | None, option: str, kind: str = "file") -> Path | None:
    """An input that must exist (``kind`` ``"file"``, ``"folder"`` or ``"any"``); ``None`` passes."""
    if path is None:
        return None
    from nnunet_tavr.errors import MissingFile

    path = Path(path)
    if not path.exists():
        raise MissingFile(f"{option} {path}: not found")
    if kind == "file" and not path.is_file():
        raise InputError(f"{option} {path} is a folder; give a file")
    if kind == "folder" and not path.is_dir():
        raise InputError(f"{option} {path} is a file; give a folder")
    return path
