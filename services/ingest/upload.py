"""Request bodies as bounded-memory byte streams: raw ``audio/*`` bodies and multipart ``file`` fields.

Nothing here holds more than one network read (and, for multipart, the pieces of that read)
in memory: bytes flow from the socket to the Object Store and a spool file for the probe.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from services.ingest.errors import ApiError

RAW_TYPES = ("audio/", "video/", "application/octet-stream", "application/ogg")
"""Raw bodies we accept; the probe decides whether they really are audio."""


class UploadError(ApiError):
    """The request body cannot be read as an upload: the API answers ``status`` with ``code``.

    An :class:`ApiError` (so a permanent rejection) because the same body fails the same way.
    """

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(status, code, detail)


class Upload:
    """The audio of one request: content type, file name, and the bytes as an async iterator.

    :meth:`prime` reads until the first audio bytes (and, for multipart, the ``file`` part's
    headers), so an empty body is rejected before anything is written to NATS.
    """

    def __init__(self, body: AsyncIterator[bytes], content_type: str, filename: str | None = None) -> None:
        self._body = body
        self.content_type = content_type
        self.filename = filename
        self._first: list[bytes] = []

    async def _pieces(self) -> AsyncIterator[bytes]:
        async for chunk in self._body:
            if chunk:
                yield chunk

    async def prime(self) -> None:
        self._iterator = self._pieces().__aiter__()
        try:
            self._first.append(await self._iterator.__anext__())
        except StopAsyncIteration:
            raise UploadError(400, "empty", "the request body is empty: send the audio bytes") from None

    async def chunks(self) -> AsyncIterator[bytes]:
        for piece in self._first:
            yield piece
        self._first.clear()
        async for piece in self._iterator:
            yield piece


class MultipartUpload(Upload):
    """The ``file`` field of a ``multipart/form-data`` body, parsed as it streams in."""

    FIELD = "file"

    def __init__(self, body: AsyncIterator[bytes], boundary: bytes) -> None:
        super().__init__(body, "application/octet-stream")
        self._pending: list[bytes] = []
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._active = False
        self._found = False
        self._done = False
        self._ended = False
        callbacks = {
            "on_part_begin": self._on_part_begin,
            "on_header_field": lambda data, start, end: self._add_header_field(data[start:end]),
            "on_header_value": lambda data, start, end: self._add_header_value(data[start:end]),
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }
        self._parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]

    def _on_part_begin(self) -> None:
        self._headers = {}

    def _add_header_field(self, data: bytes) -> None:
        self._header_field += data

    def _add_header_value(self, data: bytes) -> None:
        self._header_value += data

    def _on_header_end(self) -> None:
        self._headers[self._header_field.strip().lower()] = self._header_value.strip()
        self._header_field = self._header_value = b""

    def _on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        if params.get(b"name") == self.FIELD.encode() and not self._found:
            self._found = self._active = True
            filename = params.get(b"filename")
            self.filename = os.path.basename(filename.decode("utf-8", "replace")) if filename else None
            self.content_type = self._headers.get(b"content-type", b"application/octet-stream").decode("latin-1")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._active and end > start:
            self._pending.append(data[start:end])

    def _on_part_end(self) -> None:
        if self._active:
            self._active, self._done = False, True

    def _on_end(self) -> None:
        self._ended = True

    async def _pieces(self) -> AsyncIterator[bytes]:
        async for chunk in self._body:
            try:
                self._parser.write(chunk)
            except MultipartParseError as exc:
                raise UploadError(400, "bad_multipart", f"malformed multipart body: {exc}") from exc
            if self._pending:
                pieces, self._pending = self._pending, []
                for piece in pieces:
                    yield piece
        if not self._found:
            raise UploadError(400, "bad_multipart", f"the multipart body has no `{self.FIELD}` field")
        if not (self._done and self._ended):
            raise UploadError(400, "bad_multipart", "the multipart body is truncated (no closing boundary)")


def open_upload(body: AsyncIterator[bytes], content_type: str | None) -> Upload:
    """Pick the reader for ``content_type``; anything but audio or multipart is a 415."""
    media_type, params = parse_options_header(content_type or "")
    media = media_type.decode("latin-1").lower()
    if media == "multipart/form-data":
        boundary = params.get(b"boundary")
        if not boundary:
            raise UploadError(400, "bad_multipart", "multipart/form-data without a boundary parameter")
        return MultipartUpload(body, boundary)
    if media.startswith(RAW_TYPES):
        return Upload(body, media)
    raise UploadError(
        415,
        "unsupported_media_type",
        f"Content-Type {media or '<missing>'!r} is not accepted: send audio/* (raw body) "
        "or multipart/form-data with a `file` field",
    )


SPOOL_MEMORY_BYTES = 1 << 20
"""Uploads up to 1 MiB are probed from memory (no temp file: most clips are small); larger ones
spill to disk. Eight concurrent uploads thus hold at most 8 MiB for probing."""


class Spool:
    """A copy of the upload, taken while it streams to NATS, for the header probe.

    Small uploads stay in memory; past :data:`SPOOL_MEMORY_BYTES` the copy moves to a temp
    file, which the kernel's page cache (not the process heap) holds, so the RSS stays flat.
    """

    def __init__(self, directory: str | None = None, memory_bytes: int = SPOOL_MEMORY_BYTES) -> None:
        self._directory = directory
        self._memory_bytes = memory_bytes
        self._buffer: bytearray | None = bytearray()
        self._file: io.BufferedWriter | None = None
        self.path: Path | None = None

    def _spill(self) -> None:
        fd, name = tempfile.mkstemp(prefix="kubescribe-upload-", dir=self._directory)
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._file.write(self._buffer or b"")
        self._buffer = None

    def write(self, chunk: bytes) -> None:
        if self._buffer is not None:
            if len(self._buffer) + len(chunk) <= self._memory_bytes:
                self._buffer += chunk
                return
            self._spill()
        assert self._file is not None
        self._file.write(chunk)

    async def tee(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.write(chunk)
            yield chunk
        if self._file is not None:
            self._file.flush()

    def source(self) -> Path | io.BytesIO:
        """What to probe: the temp file, or the bytes in memory."""
        if self.path is not None:
            return self.path
        return io.BytesIO(bytes(self._buffer or b""))

    def close(self) -> None:
        self._buffer = None
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)
