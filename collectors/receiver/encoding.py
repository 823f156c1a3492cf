"""Request bodies sent with a ``Content-Encoding``, inflated by the receiver itself.

aiohttp's own inflation (its server's ``auto_decompress``) answers a corrupt gzip body only with
"Can not decode content-encoding", then logs an unhandled-exception traceback and drops the
connection, and it takes a gzip stream cut off before its checksum as whole. Inflating here lets
the answer say what is wrong with the body, checks the gzip trailer, and holds the inflated body
to the same size limit as a plain one (OTLP/HTTP asks for the limit after decompression).
"""

from __future__ import annotations

import zlib

#: zlib window bits per HTTP content coding: gzip with its header and CRC-32 trailer, deflate
#: in the zlib format HTTP names "deflate".
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class UndecodableBody(ValueError):
    """The body is not valid in the Content-Encoding it was sent with (answer 400)."""


class UnsupportedEncoding(ValueError):
    """A Content-Encoding the receiver does not inflate (answer 415)."""


class InflatedTooLarge(ValueError):
    """The body inflates past the size limit (answer 413)."""


def inflate(body: bytes, content_encoding: str, limit: int) -> bytes:
    """``body`` decoded from ``content_encoding`` (empty or ``identity``: as it is), at most ``limit`` bytes."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise UnsupportedEncoding(f"Content-Encoding {content_encoding!r} is not supported: send gzip, deflate or none")
    inflater = zlib.decompressobj(wbits)
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise UndecodableBody(f"the {encoding} body could not be decompressed: {exc}") from exc
    if len(inflated) > limit:
        raise InflatedTooLarge(f"the {encoding} body inflates to more than {limit} bytes (SPANLINE_MAX_BODY_BYTES)")
    if not inflater.eof:
        raise UndecodableBody(f"the {encoding} body could not be decompressed: the compressed stream is cut short")
    if inflater.unused_data:
        raise UndecodableBody(
            f"the {encoding} body could not be decompressed: {len(inflater.unused_data)} bytes follow the compressed stream"
        )
    return inflated
