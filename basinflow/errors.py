"""Every error a user can cause, in one place.

Each error inherits :class:`Error` *and* the built-in exception it most resembles, so
``except FileNotFoundError`` in user code keeps working while ``except basinflow.Error``
catches everything that is the user's to fix. Messages name the thing (URL, key, field)
and say what to do; the CLI prints ``str(error)`` as its one line.
"""

from __future__ import annotations

from typing import Any


class Error(Exception):
    """Base class of every error caused by input, configuration or data."""


# --- configuration, templates, keys ------------------------------------------------------
class ConfigError(Error, ValueError):
    """A configuration file or value is malformed."""


class TemplateError(Error, ValueError):
    """A repository URL template cannot be used (no ``{scan}``, unknown field, ...)."""


class UnknownSchemeError(Error, ValueError):
    """A URL uses a protocol basinflow does not read from."""


class InvalidKeyError(Error, ValueError):
    """A proposal/scan key or a spice handle contains characters that could escape a root."""


class HandleCollisionError(Error, ValueError):
    """Two keys map to one Python handle; attribute access would be ambiguous."""


# --- finding things ------------------------------------------------------------------------
class NotFound(Error, KeyError):
    """A proposal, scan, recipe, spice handle or document does not exist."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message
        return str(self.args[0]) if self.args else ""


class ProposalNotFound(NotFound):
    """No proposal with this key in the repository."""


class ScanNotFound(NotFound):
    """No scan with this key in the proposal."""


class UnreachableError(Error, ConnectionError):
    """A host did not answer (after retries)."""


class RetriesExhaustedError(UnreachableError):
    """A storage request kept failing transiently (5xx, dropped connections, read timeouts)
    through every retry; the message names the URL. Retrying later may succeed."""


class StorageError(Error, OSError):
    """Reading from or writing to storage failed in a way the user can act on."""


class RangeNotSupportedError(StorageError, ValueError):
    """An HTTP server answered a byte-range request with the whole file (reading HDF5 or
    TIFF remotely needs ranges; fsspec alone would take the body for the range)."""


# --- raw data --------------------------------------------------------------------------------
class LayoutError(Error, ValueError):
    """A scan's files do not match its layout (missing frames, wrong shapes, zero frames)."""


class NotHDF5Error(LayoutError):
    """A file that should be HDF5 is not (or is truncated)."""


class MissingSourceError(LayoutError, FileNotFoundError):
    """Frames live in other files (an HDF5 virtual dataset's sources, an external link's
    target) and one of them is absent: HDF5 would return fill values; we refuse."""


class ManifestError(LayoutError):
    """A TIFF-stack manifest is malformed."""


# --- spice -------------------------------------------------------------------------------------
class SpiceError(Error, ValueError):
    """A spice document or request is invalid."""


class SpiceValidationError(SpiceError):
    """Spice data does not match the schema of its type."""


class SpiceConflict(SpiceError):
    """Two documents share the top revision at one anchor; an explicit update resolves it."""


class SpiceNotFound(NotFound):
    """A spice handle or uuid does not exist in the store."""


# --- recipes -----------------------------------------------------------------------------------
class RecipeError(Error, ValueError):
    """A recipe cannot cook this input with this spice."""


class UnknownRecipeError(NotFound):
    """No recipe registered under this name."""


# --- referrers and basins ----------------------------------------------------------------------
class ReferrerError(Error, ValueError):
    """A referrer file is malformed or truncated."""


class BasinError(ReferrerError):
    """Base of the basin-resolution errors."""


class StaleBasinError(BasinError):
    """A basin no longer matches the pin recorded when the referrer was written."""


class BasinUnavailableError(BasinError, FileNotFoundError):
    """No location of a basin could be reached."""


class UntrustedBasinError(BasinError, PermissionError):
    """A basin points outside the trusted roots or to an unconfigured host.

    ``reason`` says why in a few words (``"outside the trusted roots and hosts"``,
    ``"a relative file URL"``, ``"a '..' or '.' segment"``, ...), for lists of the
    locations refused; the message says it in full."""

    reason: str = ""

    def __init__(self, message: str = "", *, reason: str = "") -> None:
        super().__init__(message)
        if reason:
            self.reason = reason


class RedirectRefusedError(UntrustedBasinError):
    """An HTTP basin location answered with a redirect that was not followed. Redirects of
    basin locations are followed only while a basin is resolved, after their target is
    checked like any other location (``target`` is that location, or ``None``)."""

    def __init__(
        self, message: str = "", *, url: str = "", target: str | None = None, status: int = 0
    ) -> None:
        super().__init__(message, reason=f"redirected to {target!r}")
        self.url, self.target, self.status = url, target, status


class BasinCycleError(BasinError):
    """Basins refer to each other in a cycle."""


class BasinLimitError(BasinError):
    """A referrer exceeds a documented safety limit (number of basins, size of a basin
    definition or basin map, referrers opened at once); see
    :mod:`basinflow.storage.referrer.basins`. The file is refused before the oversized
    part is read, so a crafted referrer cannot exhaust memory or time."""


class BasinDepthError(BasinLimitError):
    """A chain of basins of basins is deeper than ``MAX_BASIN_DEPTH``; export an
    intermediate referrer (``basinflow export``) to make it self-contained."""


class OutputError(Error, OSError):
    """An output cannot be written (collision, not writable, misaligned chunks)."""


class ChunkAlignmentError(OutputError, ValueError):
    """Dask chunks are not whole multiples of the storage chunks of an output variable."""


# --- orchestration -----------------------------------------------------------------------------
class FlowError(Error, RuntimeError):
    """A flow finished with failed scans."""


# --- warnings ----------------------------------------------------------------------------------
class BasinflowWarning(UserWarning):
    """Base of basinflow's warnings."""


class StaleBasinWarning(BasinflowWarning):
    """A stale basin was read because the caller opted out of the pin check."""


class UnlistedEntriesWarning(BasinflowWarning):
    """Entries of a listing that are not scans (broken links, invalid keys): named, not
    silently dropped."""


class MissingBasinWarning(BasinflowWarning):
    """A missing basin was skipped because the caller asked for warnings."""


class UntypedSpiceWarning(BasinflowWarning):
    """Spice of a type nobody registered was stored without validation."""


# --- messages ----------------------------------------------------------------------------------
def yaml_problem(exc: Exception) -> str:
    """One line for a YAML error (PyYAML's own text spans several lines): for the errors
    raised on a bad config file or a bad spice document."""

    def at(mark: Any) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""

    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = at(getattr(exc, "problem_mark", None))
    text = f"{mark}: {problem}" if mark else problem
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        text += f" ({context} at {at(context_mark)})"
    return " ".join(text.split())
