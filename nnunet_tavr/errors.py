"""The project's error classes, each with a short machine-readable ``code``.

Manifests, reports and exit codes read ``code``; nothing parses messages. Messages name the case
and the file.

============================ ==================== ===================================================
class                        code                 meaning
============================ ==================== ===================================================
:class:`InputError`          ``input_error``      bad input (base class)
:class:`UsageError`          ``usage``            options that do not go together, or a missing one
:class:`MissingFile`         ``missing_file``     a file or folder that should be there is not
:class:`Unreadable`          ``unreadable``       a file exists but cannot be read (corrupt, truncated)
:class:`GridMismatch`        ``geometry_mismatch`` images of one case are not on one voxel grid
:class:`MissingMask`         ``missing_mask``     a required TotalSegmentator mask is not there
:class:`TaskMismatch`        ``task_mismatch``    a multilabel file does not fit the task it is said to be
:class:`InvalidCaseId`       ``invalid_case_id``  a case id that cannot name files
:class:`ImplausibleGeometry` ``implausible_geometry`` a spacing or size no CT has
:class:`Excluded`            (per rule)           the rules do not apply to a case (not an error of the input)
:class:`Refused`             ``refused``          the command will not run as asked (it would overwrite, mix settings, ...)
============================ ==================== ===================================================
"""

from __future__ import annotations

#: Exit codes shared by every command: 0 success, 1 the work ran but cases were excluded or failed
#: (their reasons are in the report), 2 bad input or usage (nothing or only the listed part done).
EXIT_OK = 0
EXIT_EXCLUDED = 1
EXIT_INPUT = 2


class InputError(ValueError):
    """Bad input: the message names the case and the file."""

    code = "input_error"


class UsageError(InputError):
    """Options that do not go together, or a missing one (exit status 2, like argparse's)."""

    code = "usage"


class MissingFile(InputError):
    code = "missing_file"


class Unreadable(InputError):
    code = "unreadable"


class GridMismatch(InputError):
    code = "geometry_mismatch"


class MissingMask(MissingFile):
    """A required mask file is not there (the message says where it was looked for)."""

    code = "missing_mask"


class TaskMismatch(InputError):
    code = "task_mismatch"


class InvalidCaseId(InputError):
    code = "invalid_case_id"


class ImplausibleGeometry(InputError):
    code = "implausible_geometry"


class Excluded(ValueError):
    """A case the rules cannot be applied to: excluded with a reason, never forced.

    Attributes
    ----------
    code : str
        Short machine-readable reason (e.g. ``"no_contact"``).
    message : str
        What was found, for people.
    """

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Refused(RuntimeError):
    """The command will not run as asked (it would overwrite another dataset, mix settings, ...)."""

    code = "refused"


def reason_code(exc: BaseException) -> str:
    """The ``code`` of one of the project's errors, ``"error"`` for anything else."""
    return str(getattr(exc, "code", "error"))
