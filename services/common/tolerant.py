"""The tolerant reader (CloudEvents): read a contract, dropping the fields its model does not declare.

A consumer that is older than its producer must keep working when the producer adds an optional
field: that is what keeps an event at ``v1``. Our models forbid unknown fields so that *our*
producers stay strict (and the committed schemas say ``additionalProperties: false``); on the
read side, :func:`validate_tolerant` removes what the model does not know before validating, and
:func:`report_unknown_fields` makes the drift visible: one log line per (contract, field) per
process, and every occurrence counted in ``kubescribe_event_unknown_fields_total``.

Used by :func:`services.common.events.parse_event` (every event consumer) and
:func:`services.common.jobspec.parse_job` (the transcriber reading its job spec).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, TypeVar, get_args

from pydantic import BaseModel

from services.common.metrics import EVENT_UNKNOWN_FIELDS

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

_REPORTED: set[tuple[str, str]] = set()
"""(contract, field) pairs this process has logged: the log says it once, the counter counts all."""


def validate_tolerant(model: type[M], body: Any) -> tuple[M, list[str]]:
    """``model`` validated from ``body`` without its unknown fields, and their dotted paths.

    Raises pydantic's ``ValidationError`` for anything else that does not match: unknown
    *values* of known fields (a ``type`` or ``schema_version`` from another contract) still fail.
    """
    known, unknown = split_unknown(model, body)
    return model.model_validate(known), unknown


def split_unknown(model: type[BaseModel], body: Any) -> tuple[Any, list[str]]:
    """``body`` without the fields ``model`` does not declare, and the dotted paths of those fields."""
    unknown: list[str] = []
    if isinstance(body, dict):
        body = _known_fields(model, body, "", unknown)
    return body, unknown


def report_unknown_fields(contract: str, fields: Iterable[str], source: str) -> None:
    """Count every dropped field; log each (contract, field) the first time this process sees it."""
    for name in fields:
        EVENT_UNKNOWN_FIELDS.labels(event_type=contract, field=name).inc()
        if (contract, name) in _REPORTED:
            continue
        _REPORTED.add((contract, name))
        logger.warning(
            "ignoring field %r of %s (first seen from %s): this consumer's model does not declare it; "
            "a newer producer added it, upgrade this consumer to use it (logged once per process)",
            name,
            contract,
            source,
        )


def _known_fields(model: type[BaseModel], body: dict[str, Any], prefix: str, unknown: list[str]) -> dict[str, Any]:
    """``body`` without the keys ``model`` does not declare, recursing into nested models and lists of them."""
    kept: dict[str, Any] = {}
    for key, value in body.items():
        field = model.model_fields.get(key)
        if field is None:
            unknown.append(f"{prefix}{key}")
            continue
        nested = _model_in(field.annotation)
        if nested is not None and isinstance(value, dict):
            value = _known_fields(nested, value, f"{prefix}{key}.", unknown)
        elif nested is not None and isinstance(value, list):
            value = [
                _known_fields(nested, item, f"{prefix}{key}[].", unknown) if isinstance(item, dict) else item
                for item in value
            ]
        kept[key] = value
    return kept


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (``ObjectRef``, ``ObjectRef | None``, ``list[JobRecording]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (found := _model_in(arg)) is not None:
            return found
    return None
