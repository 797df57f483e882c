"""Focus: the sentences of a long transcript most likely to carry its facts, in their order.

A small model asked to summarize a 500-word recording summarizes its first minute: the bundled
0.5B restated the greetings and the first speaker ("I'm Sam from technical support") and kept
26 % of the key facts of recording-length meetings, against 50 % of the same facts written as
dense 120-word transcripts (docs/summaries.md). Handing it the informative sentences only turns
the hard problem (find the facts in filler) into the one it handles (say a dense text shorter).

The score is deliberately plain and generic, written for spoken English meetings and calls
without looking at any evaluation fact: numbers and named things count, words that mark a
decision, a commitment, a date or a quantity count, and small talk ("can you see my screen?",
"thanks", "um") counts against. Longer sentences are not favoured: the score is per square root
of a sentence's words, so a rambling sentence needs more signals than a short one.
"""

from __future__ import annotations

import re

from services.summarizer.prompts import split_sentences

_NUMBER_RE = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|"
    r"hundred|thousand|million|billion|half|percent)\b",
    re.IGNORECASE,
)
_NAME_RE = re.compile(r"(?<=\s)[A-Z][a-z]+")
"""A capitalised word after the first of its sentence: a person, a product, a place, a weekday."""
_CUE_RE = re.compile(
    r"\b(decid\w*|agree\w*|approv\w*|will|won't|deadline|due|by (monday|tuesday|wednesday|thursday|friday|"
    r"tomorrow|next week|the end of)|action|owner|need to|going to|plan\w*|launch\w*|budget|cost\w*|revenue|"
    r"price\w*|increas\w*|decreas\w*|risk\w*|problem\w*|issue\w*|fix\w*|because|caus\w*|moved?|schedul\w*|"
    r"hir\w*|ship\w*|releas\w*|cancel\w*|refund\w*|order\w*|deliver\w*|sign\w*|contract\w*)\b",
    re.IGNORECASE,
)
_FILLER_RE = re.compile(
    r"\b(thanks?|thank you|hello|hi|hey|good (morning|afternoon|evening)|can you (see|hear)|hear me|screen|"
    r"mute\w*|um+|uh+|you know|i mean|sorry|bye|welcome|okay|ok|alright|great|cool|sure|yeah|right)\b",
    re.IGNORECASE,
)


def information(sentence: str) -> float:
    """How likely ``sentence`` is to carry a fact, per square root of its length."""
    signals = (
        2.0 * len(_NUMBER_RE.findall(sentence))
        + 1.0 * len(_NAME_RE.findall(sentence))
        + 1.5 * len(_CUE_RE.findall(sentence))
        - 1.5 * len(_FILLER_RE.findall(sentence))
    )
    return signals / max(1, len(sentence.split())) ** 0.5


def focus(text: str, words: int) -> str:
    """The most informative sentences of ``text``, about ``words`` words of them, in their order.

    A text no longer than ``words`` (or ``words`` of 0) comes back whole: the dense transcripts
    and the short demo samples are already all signal."""
    sentences = split_sentences(text)
    if words <= 0 or sum(len(s.split()) for s in sentences) <= words:
        return text
    scores = [information(s) for s in sentences]
    chosen: set[int] = set()
    used = 0
    for index in sorted(range(len(sentences)), key=lambda i: -scores[i]):
        if chosen and scores[index] <= 0:
            break  # small talk does not fill a budget that facts did not
        length = len(sentences[index].split())
        if chosen and used + length > words:
            continue
        chosen.add(index)
        used += length
        if used >= words:
            break
    return " ".join(sentences[i] for i in sorted(chosen))
