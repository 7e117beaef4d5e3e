"""Counts of messages that were read but left out, per topic and cause, and their report lines.

Shared by the evaluation and the MP4 export, so both report unusable messages the same way.
"""
from __future__ import annotations


class LeftOut:
    """Messages left out: ``counts[topic][cause]``."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}

    def add(self, topic: str, cause: str, count: int = 1) -> None:
        """Count ``count`` messages of ``topic`` left out for ``cause``."""
        causes = self.counts.setdefault(topic, {})
        causes[cause] = causes.get(cause, 0) + count

    def lines(self, totals: dict[str, int]) -> list[str]:
        """One line per topic and cause, with the topic's message total from ``totals``."""
        return [f'{topic}: {count} of {totals.get(topic, count)} messages left out: {cause}'
                for topic, causes in self.counts.items() for cause, count in causes.items()]
