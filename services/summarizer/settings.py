"""Settings of the summarizer that only it reads: the prompt templates."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SYSTEM_PROMPT = (
    "You are a meeting assistant. You write short, factual summaries of recorded conversations. "
    "Never invent facts that are not in the transcript."
)
DEFAULT_INSTRUCTIONS = (
    "Summarize the transcript below in at most five bullet points. Name the main topics, the "
    "decisions taken and any action items with their owners. Answer in the transcript's language."
)
DEFAULT_MAP_INSTRUCTIONS = (
    "The transcript below is one part of a longer recording. List its main topics, decisions "
    "and action items in at most five short bullet points."
)
DEFAULT_REDUCE_INSTRUCTIONS = (
    "Below are summaries of consecutive parts of one recording. Merge them into one summary of "
    "at most five bullet points: main topics, decisions and action items with their owners."
)


class PromptSettings(BaseSettings):
    """Prompt templates (``KUBESCRIBE_PROMPT_*``).

    The system prompt and the instructions come first and never vary per recording, so every
    request shares a long identical prefix: the replicas' prefix caches (and GAIE's
    prefix-aware routing) reuse it, and only the transcript at the end is new prefill work.
    """

    model_config = SettingsConfigDict(env_prefix="KUBESCRIBE_PROMPT_", extra="ignore", frozen=True)

    system: str = DEFAULT_SYSTEM_PROMPT
    instructions: str = DEFAULT_INSTRUCTIONS
    """Followed by the transcript; ``{language}`` is replaced by the transcript's language or ``unknown``."""
    map_instructions: str = DEFAULT_MAP_INSTRUCTIONS
    reduce_instructions: str = DEFAULT_REDUCE_INSTRUCTIONS
    chars_per_token: float = 3.0
    """Conservative estimate (English BPE averages ~4): overestimating tokens only adds a map step."""
    prompt_overhead_tokens: int = 64
    """Chat-template tokens around the messages, reserved from the context."""
