"""Exceptions of the load generator.

    KubescribeError                (services.common.errors)
    └── LoadgenError               anything the load generator reports as one readable line
        ├── TraceError             a trace file that does not parse or validate (names the line)
        ├── AudioSynthesisError    a synthetic audio spec that cannot be rendered (missing espeak-ng, ...)
        └── TargetError            the system under test refused or could not be reached

Deriving from :class:`KubescribeError` lets ``kubescribe`` print them as one line and exit 1.
"""

from __future__ import annotations

from services.common.errors import KubescribeError


class LoadgenError(KubescribeError):
    """Root of the load generator's errors."""


class TraceError(LoadgenError):
    """A trace (or results) file is malformed; the message names the file and the line."""


class AudioSynthesisError(LoadgenError):
    """A synthetic audio spec could not be turned into a file."""


class TargetError(LoadgenError):
    """The target refused a submission or could not be reached."""
