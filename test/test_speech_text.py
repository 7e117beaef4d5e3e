"""Text -> the pieces a speech engine synthesises one at a time (media/speech_text.py)."""
from avatar_forcing_ros.media.speech_text import (CLAUSE_PAUSE_S, MIN_CLAUSE_WORDS, SENTENCE_PAUSE_S,
                                                  split_clauses)


def test_clauses_keep_their_pauses_and_the_last_has_none():
    assert split_clauses("Hello there, my friend. How are you today?") == [
        ("Hello there, my friend.", SENTENCE_PAUSE_S), ("How are you today?", 0.0)]
    assert split_clauses("One two three, four five six") == [
        ("One two three,", CLAUSE_PAUSE_S), ("four five six", 0.0)]


def test_a_short_piece_joins_the_next_one():
    assert split_clauses("Well, I think so") == [("Well, I think so", 0.0)]


def test_the_first_long_clause_is_cut_after_the_first_words_and_nothing_is_lost():
    text = "The quick brown fox jumps over the lazy dog near the river. It is late."
    pieces = split_clauses(text, first_piece_words=4)
    assert pieces[0] == ("The quick brown fox", 0.0)          # no pause inside the clause
    assert pieces[1] == ("jumps over the lazy dog near the river.", SENTENCE_PAUSE_S)
    assert " ".join(p for p, _ in pieces) == text             # every word once, in order


def test_a_first_clause_too_short_to_cut_stays_whole():
    short = "Hello to you all."                               # 4 + fewer than MIN_CLAUSE_WORDS words
    assert len(short.split()) < 4 + MIN_CLAUSE_WORDS
    assert split_clauses(short, first_piece_words=4) == [(short, 0.0)]
