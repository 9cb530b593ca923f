"""JSON bytes for HTTP bodies: orjson, with an exact fallback for what orjson refuses.

orjson refuses integers beyond 64 bits and strings holding lone UTF-16 surrogates; both can
arrive inside a signed buyer message and must be passed on unchanged (the signature covers
them). ``json.dumps(ensure_ascii=True)`` writes both losslessly.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["json_bytes"]


def json_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode(
            "ascii"
        )
