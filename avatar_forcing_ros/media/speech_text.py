"""Text to the clauses a speech engine synthesises one at a time, ROS-free.

Synthesising clause by clause lets the first audio go out after the first clause instead of the
whole text; the pause a comma or a sentence end would have had is put back after each clause.
"""
from __future__ import annotations

import re

SENTENCE_PAUSE_S = 0.25   # after . ! ? (about what Piper and espeak-ng leave between sentences)
CLAUSE_PAUSE_S = 0.1      # after , ; :
MIN_CLAUSE_WORDS = 3      # a shorter clause joins the next one (a lone word sounds clipped)
FIRST_PIECE_WORDS = 3     # the first words alone: the first audio waits for under a second of speech
_BOUNDARY = re.compile(r'(?<=[.!?,;:])\s+')


def split_clauses(text: str, first_piece_words: int | None = None) -> list[tuple[str, float]]:
    """``text`` as (clause, pause after it in s) in order; one line each, never empty.

    With ``first_piece_words`` a long first clause is cut after that many words (no pause at the
    cut): an engine that synthesises a piece at a time then starts speaking after those words,
    at the cost of the first clause's intonation across the cut."""
    pieces = [p for p in _BOUNDARY.split(' '.join(text.split())) if p]
    clauses: list[tuple[str, float]] = []
    pending = ''
    for piece in pieces:
        pending = f'{pending} {piece}'.strip()
        sentence_end = pending[-1] in '.!?'
        if len(pending.split()) >= MIN_CLAUSE_WORDS or sentence_end:
            clauses.append((pending, SENTENCE_PAUSE_S if sentence_end else CLAUSE_PAUSE_S))
            pending = ''
    if pending:
        clauses.append((pending, 0.0))
    if clauses:   # no pause after the last clause: the speech ends with its last sound
        clauses[-1] = (clauses[-1][0], 0.0)
    if first_piece_words and clauses:
        words = clauses[0][0].split()
        if len(words) >= first_piece_words + MIN_CLAUSE_WORDS:
            clauses[:1] = [(' '.join(words[:first_piece_words]), 0.0),
                           (' '.join(words[first_piece_words:]), clauses[0][1])]
    return clauses
