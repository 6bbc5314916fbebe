"""Reading request bodies: every handler that reads a body reads it through here, so what a
body's Content-Encoding may be, and what a body that cannot be decoded gets, is decided once.

- Content-Encoding (RFC 9110 §8.4): none, `identity`, `gzip` or `deflate`, which aiohttp decodes
  as the body arrives. Anything else, a list of codings, or the header sent twice is a 415 with
  `Accept-Encoding: gzip, deflate` (§15.5.16, §12.5.3). Without this, aiohttp would hand a
  coding it does not know (`x-gzip`, `gzip, gzip`) to the parsers as if it were plain bytes.
  `br` and `zstd` would need extra packages (Brotli, backports.zstd) that are not dependencies;
  aiohttp itself refuses them with a 400 before any handler runs.
- A body that is not valid under its coding (not gzip at all, a corrupt or truncated stream),
  or that ended before its Content-Length or chunked framing said, is a 400 `undecodable-body`:
  aiohttp raises `RequestPayloadError` from the read, which used to be a 500.
- Size: a declared Content-Length above the limit is refused before reading; the decoded size is
  bounded by aiohttp's `client_max_size` (the app is built with `max_body_bytes`), so a small
  compressed body cannot expand past it (413).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from gateway.errors import (
    BadRequest,
    ControlCharacter,
    PayloadTooLarge,
    UndecodableBody,
    UnsupportedContentEncoding,
)
from gateway.lexical import is_fhir_string

ACCEPTED_CODINGS = frozenset({"gzip", "deflate"})
ACCEPT_ENCODING = "gzip, deflate"
_UNDECODABLE = (
    "the request body could not be decoded: it is not valid under its Content-Encoding, "
    "or it ended before its declared length"
)


def check_content_encoding(request: web.Request) -> None:
    """Refuse (415) a body in a content coding this gateway does not decode."""
    codings = request.headers.getall(hdrs.CONTENT_ENCODING, [])
    if not codings:
        return
    coding = codings[0].strip().lower() if len(codings) == 1 else ""
    if coding not in ACCEPTED_CODINGS | {"identity", ""}:
        raise UnsupportedContentEncoding(
            f"a request body may be sent as {ACCEPT_ENCODING} or without Content-Encoding",
            accepted=ACCEPT_ENCODING,
        )


def _check_declared_size(request: web.Request, limit: int) -> None:
    if (request.content_length or 0) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")


async def read_body(request: web.Request, *, limit: int | None = None) -> bytes:
    """The whole decoded body, at most `limit` (default: the app's `client_max_size`) bytes."""
    check_content_encoding(request)
    _check_declared_size(request, request.client_max_size if limit is None else limit)
    try:
        return await request.read()
    except web.RequestPayloadError:
        raise UndecodableBody(_UNDECODABLE) from None


async def read_form(
    request: web.Request,
) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """A form body (urlencoded or multipart). Undecodable percent-escapes, an unknown charset,
    broken multipart framing or part headers are a 400 `invalid-body`; a control character in a
    field name or text value a 400 `control-character` (no form this gateway reads has one)."""
    check_content_encoding(request)
    _check_declared_size(request, request.client_max_size)
    try:
        form = await request.post()
    except web.RequestPayloadError:
        raise UndecodableBody(_UNDECODABLE) from None
    except (ValueError, LookupError, HttpProcessingError) as exc:
        raise BadRequest("the body is not a readable form") from exc
    for name, value in form.items():
        if not is_fhir_string(name) or (isinstance(value, str) and not is_fhir_string(value)):
            raise ControlCharacter("a form field contains a control character")
    return form


def stream_body(request: web.Request, *, limit: int, chunk_bytes: int) -> AsyncIterator[bytes]:
    """The decoded body in chunks as it arrives, for bodies larger than memory; at most `limit`
    decoded bytes (PayloadTooLarge once more have arrived). The coding and declared size are
    checked now, before the first chunk is asked for."""
    check_content_encoding(request)
    _check_declared_size(request, limit)
    return _chunks(request, limit, chunk_bytes)


async def _chunks(request: web.Request, limit: int, chunk_bytes: int) -> AsyncIterator[bytes]:
    received = 0
    chunks = request.content.iter_chunked(chunk_bytes)
    while True:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except web.RequestPayloadError:
            raise UndecodableBody(_UNDECODABLE) from None
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        yield chunk
