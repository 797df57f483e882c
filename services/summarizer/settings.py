"""Settings of the summarizer that only it reads: the prompt templates.

The defaults are measured by ``python bench/summaries.py`` (results, still partial, in
docs/summaries.md): the model is asked for one JSON object (title, key points, decisions,
action items) whose schema the server enforces, and the instructions say what a small model
otherwise gets wrong: restating the transcript sentence by sentence, and rounding or inventing
numbers and owners.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SYSTEM_PROMPT = (
    "You are a meeting assistant. You write short, factual summaries of recorded conversations. "
    "Never invent facts that are not in the transcript."
)
DEFAULT_INSTRUCTIONS = (
    "Summarize the transcript below as one JSON object with these fields: "
    '"title" (one short line naming what it is about), '
    '"key_points" (at most five short points, the most important facts first), '
    '"decisions" (what was decided; empty if nothing), '
    '"action_items" (objects with "task", "owner" and "due"; owner and due only when a speaker said '
    "them, otherwise null). "
    "Write each point in your own words, in at most fifteen words; do not copy greetings or whole "
    "sentences. Keep every number, amount, date and name exactly as written in the transcript and "
    "add none that is not there. Answer in the transcript's language."
)
DEFAULT_MAP_INSTRUCTIONS = (
    "The transcript below is one part of a longer recording. Summarize it as one JSON object with "
    '"title", "key_points" (at most five), "decisions" and "action_items" ("task", "owner", "due"; '
    "null when not said). Keep numbers, dates and names exactly as written; add none."
)
DEFAULT_REDUCE_INSTRUCTIONS = (
    "Below are JSON summaries of consecutive parts of one recording. Merge them into one JSON object "
    'with "title", "key_points" (at most five, most important first), "decisions" and '
    '"action_items" ("task", "owner", "due"; null when not said). Keep numbers, dates and names '
    "exactly as written; add none."
)

DEFAULT_REPAIR_INSTRUCTIONS = (
    'The answer below was meant to be one JSON object with "title", "key_points" (at most five), '
    '"decisions" and "action_items" ("task", "owner", "due"), but it is not valid. Write it again as '
    "valid, complete JSON with the same facts, shorter if it was cut off."
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
    repair_instructions: str = DEFAULT_REPAIR_INSTRUCTIONS
    chars_per_token: float = 3.0
    """Conservative estimate (English BPE averages ~4): overestimating tokens only adds a map step."""
    prompt_overhead_tokens: int = 64
    """Chat-template tokens around the messages, reserved from the context."""
    structured: bool = True
    """Ask for JSON with ``response_format`` (llama.cpp and vLLM enforce the schema while decoding, so
    the answer always parses); a server that ignores it answers prose, which is kept as the text."""
    summary_budget: float = 0.5
    """Words of the summary per word of the transcript, enforced by the JSON schema's item counts and
    lengths (:class:`~services.summarizer.structured.LengthCaps`); 0 keeps only the fixed caps.
    Chosen by ``bench/summaries.py`` (docs/summaries.md): with the 0.5B model it keeps more facts
    than 0.4 (50 % vs 44 %) and its summaries stay at 41 % of the transcript's words on average."""
    focus_words: int = 0
    """Above this many words, only the transcript's most informative sentences, about this many
    words of them, go to the model (:mod:`services.summarizer.focus`); 0 sends it whole. The
    length budget still follows the whole transcript. Whether it helps depends on the model
    (``bench/summaries.py``, docs/summaries.md): on recording-length meetings the bundled 0.5B
    keeps 26 % → 51 % of the key facts with 200, the 1.5B 62 % → 55 %. So 0 here, for the
    gateway's models, and a local stack sets its model's value (``ModelSpec.focus_words``)."""
    repair_attempts: int = 1
    """Extra requests when the answer is broken JSON (cut at ``max_tokens``): one fixes almost all, more
    only costs time."""
