"""Smooth weighted round robin (the one nginx uses): each pick, every free rep of the queue gains
its weight in credit, the richest takes the task and pays back the sum of the weights. Over any
run of picks among the same free reps each gets its share to within one task, and no rep gets
two in a row when others are owed. A rep who is away or full gains nothing meanwhile, so coming
back does not bring a burst of tasks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def pick(free: Sequence[tuple[str, int]], credits: Mapping[str, float]
         ) -> tuple[str | None, dict[str, float]]:
    """The rep who takes the next task among the free ones (id, weight), in roster order for
    ties, and every free rep's credit after the pick."""
    weighted = [(rep, weight) for rep, weight in free if weight > 0]
    if not weighted:
        return None, {}
    total = sum(weight for _, weight in weighted)
    after = {rep: credits.get(rep, 0.0) + weight for rep, weight in weighted}
    chosen = max(weighted, key=lambda item: after[item[0]])[0]  # max keeps the first of equals
    after[chosen] -= total
    return chosen, after
