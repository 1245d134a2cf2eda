"""Activities of the lead lifecycle: the evaluator (run as a local activity over a batch of
queued events, so its Decisions are recorded in history and replay never re-runs rules) and
the checkpoint. Delivery is activities.delivery."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.evaluation import BatchResult, EvaluateBatch, evaluate_batch
from activities.evaluator_pool import EvaluatorPool
from activities.policies import NoPolicy, PolicyStore
from rules.engine import EngineError


class LeadActivities:
    def __init__(self, store: PolicyStore, evaluators: EvaluatorPool | None = None) -> None:
        self.store = store
        self.evaluators = evaluators  # None: evaluate in this process (no deadline)

    @activity.defn(name="evaluate_events")
    async def evaluate_events(self, batch: EvaluateBatch) -> BatchResult:
        """Several queued events of one lead, in order; a policy error rejects only its event.

        Async: it waits for an evaluator process without holding a thread. In-process (no pool)
        it computes on the worker's event loop, with no hop to a thread and back: the engine
        holds the GIL anyway and an evaluation takes well under a millisecond."""
        try:
            catalog = self.store.catalog(batch.version)
        except NoPolicy as err:
            return BatchResult(decisions=[None] * len(batch.events), errors=[str(err)] * len(batch.events))
        try:
            if self.evaluators is not None:
                return await self.evaluators.evaluate(catalog, batch)
            return evaluate_batch(catalog, batch)
        except EngineError as err:  # worth a retry: nothing of the batch was applied
            raise ApplicationError(str(err), type="EngineError") from err

    @activity.defn(name="checkpoint")
    async def checkpoint(self) -> None:
        """Does nothing: the lead workflow calls it to end a long workflow task."""
