"""The leadflow worker: wires the workflows and activities to a task queue.

    python worker.py            # connects as settings say (TEMPORAL_ADDRESS, ...);
                                # with none, to the embedded server that `make up` runs
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging

from temporalio.client import Client
from temporalio.worker import Worker

from activities.evaluator_pool import EvaluatorPool
from activities.lead import LeadActivities
from activities.outbox import Outbox
from activities.policies import PolicyStore
from service.settings import Settings
from service.temporal import connect, ensure_search_attributes
from workflows.handoff import HandoffWorkflow
from workflows.lead import LeadWorkflow

log = logging.getLogger("leadflow.worker")


def evaluator_pool(settings: Settings) -> EvaluatorPool | None:
    """Evaluator processes as settings ask; None evaluates in the worker (no deadline)."""
    if settings.eval_processes <= 0:
        return None
    return EvaluatorPool(settings.eval_processes, settings.eval_deadline)


def build_worker(client: Client, settings: Settings, store: PolicyStore,
                 executor: concurrent.futures.Executor, evaluators: EvaluatorPool | None = None) -> Worker:
    acts = LeadActivities(store, Outbox(settings.outbox_path), evaluators)
    return Worker(client, task_queue=settings.task_queue,
                  workflows=[LeadWorkflow, HandoffWorkflow],
                  activities=[acts.evaluate_events, acts.deliver, acts.checkpoint],
                  activity_executor=executor)


async def watch_policies(store: PolicyStore, every: float) -> None:
    """Pick up edited policy files; a bad file is refused and logged, the last good stays."""
    while True:
        await asyncio.sleep(every)
        await asyncio.to_thread(store.reload)


async def run_worker(settings: Settings, client: Client | None = None) -> None:
    store = PolicyStore(settings.policy_dir, settings.policy, settings.content_dir)
    store.reload()
    active = store.active()  # refuse to start with no valid policy at all
    log.info("active policy %s v%s (%s)", active.name, active.version, active.ruleset)
    client = client or await connect(settings)
    await ensure_search_attributes(client, settings.namespace)
    evaluators = evaluator_pool(settings)
    if evaluators is not None:
        evaluators.start()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as executor:
        worker = build_worker(client, settings, store, executor, evaluators)
        watcher = asyncio.create_task(watch_policies(store, settings.policy_poll_seconds))
        try:
            log.info("worker on task queue %r, namespace %r; %s", settings.task_queue, settings.namespace,
                     f"{settings.eval_processes} evaluator processes" if evaluators else
                     "evaluating in this process")
            await worker.run()
        finally:
            watcher.cancel()
            if evaluators is not None:
                evaluators.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(run_worker(Settings.from_env()))


if __name__ == "__main__":
    main()
