"""schemathesis hooks (loaded by ``st`` via ``SCHEMATHESIS_HOOKS``; runs in schemathesis' own venv).

A schema-valid upload body is a string of bytes, and almost no string of bytes is audio, so
without help every upload is a 415 and the stateful phase never gets an ``id`` to follow the
upload's links with. Every other *schema-valid* upload of the stateful phase therefore gets a
real WAV as its body (``KUBESCRIBE_FUZZ_WAV``, spoken by espeak-ng in the test); the rest, and every
schema-violating case, stay as generated.
Only the standard library and schemathesis may be imported here.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import schemathesis

_AUDIO = Path(os.environ["KUBESCRIBE_FUZZ_WAV"]).read_bytes()
_turn = itertools.count()


@schemathesis.hook
def map_case(context, case):
    operation = case.operation
    if (operation.method.upper(), operation.path) != ("POST", "/v1/recordings"):
        return case
    meta = getattr(case, "meta", None)
    modes = {meta.generation.mode.value, *(c.mode.value for c in meta.components.values())} if meta else {"?"}
    # Only in the stateful phase (where the links are followed): elsewhere a case's mode can be
    # switched to negative after this hook, and a negative case must keep its generated body.
    # Raw bodies only: a multipart body can carry extra fields that make the case negative.
    if modes != {"positive"} or meta.phase.name != "stateful" or isinstance(case.body, dict) or next(_turn) % 2:
        return case
    case.body = _AUDIO
    return case
