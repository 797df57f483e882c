"""The focus pre-pass keeps a long transcript's informative sentences, in order, and leaves a
short one alone."""

from __future__ import annotations

from services.summarizer.focus import focus, information

SMALL_TALK = "Good morning everyone, can you all see my screen? Yeah, thanks. Um, okay, great. "
FACTS = (
    "We decided to move the release to Wednesday the 14th. "
    "Priya will fix the billing export by Friday. "
    "The refund budget is 12,000 euros this quarter. "
)


def test_small_talk_scores_below_a_sentence_with_a_decision_a_name_and_a_date() -> None:
    assert information("Priya will fix the billing export by Friday.") > information("Yeah, thanks, great.") + 1


def test_a_long_transcript_keeps_its_facts_in_their_order_and_drops_the_small_talk() -> None:
    text = SMALL_TALK * 4 + FACTS + SMALL_TALK * 4
    focused = focus(text, 30)
    assert focused == " ".join(FACTS.split())
    assert len(focused.split()) <= 30 < len(text.split())


def test_a_transcript_within_the_budget_or_a_budget_of_zero_comes_back_whole() -> None:
    assert focus(FACTS, 200) == FACTS
    long = SMALL_TALK * 10 + FACTS
    assert focus(long, 0) == long
