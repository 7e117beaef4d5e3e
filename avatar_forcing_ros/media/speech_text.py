"""Text to the clauses a speech engine synthesises one at a time, ROS-free.

Synthesising clause by clause lets the first audio go out after the first clause instead of the
whole text; the pause a comma or a sentence end would have had is put back after each clause.
"""
from __future__ import annotations

import re

SENTENCE_PAUSE_S = 0.25   # after . ! ? (about what Piper and espeak-ng leave between sentences)
CLAUSE_PAUSE_S = 0.1      # after , ; :
MIN_CLAUSE_WORDS = 3      # a shorter clause joins the next one (a lone word sounds clipped)
_BOUNDARY = re.compile(r'(?<=[.!?,;:])\s+')


def split_clauses(text: str) -> list[tuple[str, float]]:
    """``text`` as (clause, pause after it in s) in order; one line each, never empty."""
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
    return clauses
