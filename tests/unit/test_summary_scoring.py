"""The summary evaluation's scoring rules (bench/summaries.py): fact recall, compression, invented facts."""

from __future__ import annotations

import pytest

from bench.summaries import (
    DATA_SETS,
    copied_share,
    fact_recall,
    invented_names,
    invented_numbers,
    load_items,
    normalise_number,
    numbers_in,
    score,
    term_kept,
    words_in,
)


def test_numbers_are_normalised_and_spelled_out_ones_count() -> None:
    assert normalise_number("10,000") == "10000" and normalise_number("05") == "5"
    assert normalise_number("14.50") == "14.5" and normalise_number("14:05") == "14:05"
    assert numbers_in("Three centers, 1,800 orders and 14.5 percent at 14:05.") == {"3", "1800", "14.5", "14:05"}


def test_a_numeric_term_matches_a_number_not_a_substring() -> None:
    summary = "Revenue of 412 million, 2 hires"
    numbers = numbers_in(summary)
    assert term_kept("412", summary, numbers)
    assert not term_kept("41", summary, numbers) and not term_kept("4", summary, numbers)
    assert term_kept("two", summary, numbers) is False  # words match as words
    assert term_kept("10,000|10k", "over 10000 lines", numbers_in("over 10000 lines"))


def test_a_fact_is_kept_only_when_every_term_is_there() -> None:
    facts = [
        {"fact": "Julia adds a disk alarm at 80 percent", "terms": ["Julia", "80"]},
        {"fact": "debug flags blocked", "terms": ["debug"]},
    ]
    assert fact_recall(facts, "Julia will add an alarm at 80%. Debug flags blocked.") == (2, [])
    assert fact_recall(facts, "Julia will add an alarm.") == (0, [f["fact"] for f in facts])


def test_invented_numbers_and_names() -> None:
    transcript = "Tom said the outage at 14:05 lasted forty seven minutes; three fixes were agreed."
    assert invented_numbers("Outage at 14:05 lasted 47 minutes, 3 fixes", transcript) == ["47"]
    assert invented_numbers("Outage at 14 o'clock, 3 fixes, in 2024", transcript) == ["2024"]
    assert invented_names("# Outage\n- Tom and Sarah agreed on fixes with Tom", transcript) == ["Sarah"]
    assert invented_names("- Outage lasted long. Fixes agreed", transcript) == []  # sentence starts are not names
    assert invented_names("# Project Update\n- Tom agreed", transcript) == []  # nor Title Case headings


def test_copied_counts_the_words_of_verbatim_runs_of_eight_or_more() -> None:
    transcript = "Um, so basically the board approved a quarterly dividend of 22 cents per share, payable in November."
    restated = "# Dividend\n\n- The board approved a quarterly dividend of 22 cents per share"
    assert copied_share(restated, transcript) == 1.0
    summarized = "# Dividend\n\n- Quarterly dividend of 22 cents approved, paid in November"
    assert copied_share(summarized, transcript) == 0.0  # shared words, but no run of eight
    half = "- The board approved a quarterly dividend of 22 cents\n- Paid out next month to every holder of shares"
    assert copied_share(half, transcript) == pytest.approx(9 / 18)
    assert copied_share("- [ ] Pay the dividend of 22 cents per share (**the board**, due November)", transcript) == 0.0


def test_compression_counts_words_without_markdown() -> None:
    assert words_in("# Title here\n\n## Key points\n\n- one two\n- [ ] task (**Tom**, due Friday)") == 10
    item = {"text": " ".join(["word"] * 100), "facts": [{"fact": "f", "terms": ["word"]}]}
    result = score(item, "word " * 20)
    assert result.compression == 0.2 and result.recall == 1.0 and result.invented_numbers == []


@pytest.mark.parametrize("data", DATA_SETS.values(), ids=DATA_SETS.keys())
def test_the_data_set_is_at_least_twelve_transcripts_whose_facts_are_in_them(data) -> None:
    items = load_items(data=data)
    assert len(items) >= 12 and len({i["id"] for i in items}) == len(items)
    for item in items:
        # every key fact is kept by the transcript itself, so a perfect summary can keep it
        _, lost = fact_recall(item["facts"], item["text"])
        assert not lost, (item["id"], lost)
        assert invented_numbers(item["text"], item["text"]) == []


def test_the_conversations_are_the_dense_meetings_with_the_same_facts_at_a_recordings_length() -> None:
    dense, long = (load_items(data=path) for path in DATA_SETS.values())
    assert [(i["id"], i["facts"]) for i in dense] == [(i["id"], i["facts"]) for i in long]
    assert all(3 * words_in(d["text"]) < words_in(c["text"]) for d, c in zip(dense, long, strict=True))
