"""A summary document as Markdown (``GET /v1/recordings/{id}/summary?format=md``).

Pure (documents in, text out) so the ingest API renders stored summaries without importing the
summarizer's client; the summarizer uses the same rendering as the summary's ``text``.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.common.documents import ActionItem, Summary, SummaryContent


def _bullets(items: Sequence[str]) -> list[str]:
    return [f"- {item}" for item in items]


def _action_line(item: ActionItem) -> str:
    extra = [part for part in (item.owner and f"**{item.owner}**", item.due and f"due {item.due}") if part]
    return f"- [ ] {item.task}" + (f" ({', '.join(extra)})" if extra else "")


def render_markdown(summary: Summary | SummaryContent) -> str:
    """The summary as Markdown; an unstructured (older or prose) summary is its text under a heading."""
    title = summary.title
    if title is None:
        return f"# Summary\n\n{summary.text.strip()}\n"  # type: ignore[union-attr]
    lines = [f"# {title}", ""]
    sections = (
        ("Key points", _bullets(summary.key_points or [])),
        ("Decisions", _bullets(summary.decisions or [])),
        ("Action items", [_action_line(item) for item in summary.action_items or []]),
    )
    for heading, body in sections:
        if body:
            lines += [f"## {heading}", "", *body, ""]
    return "\n".join(lines).rstrip() + "\n"
