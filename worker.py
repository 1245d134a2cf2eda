"""The leadflow worker: wires the workflows and activities to a task queue.

    python worker.py            # connects as settings say (TEMPORAL_ADDRESS, ...);
                                # with none, to the embedded server that `make up` runs
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.delivery import Delivery, DeliveryActivities
from activities.evaluator_pool import EvaluatorPool
from activities.lead import LeadActivities
from activities.legacy import LegacyDelivery
from activities.policies import PolicyStore
from activities.prune import PruneActivities
from activities.routing import RoutingActivities
from leadflow.archive.endings import Endings
from leadflow.archive.events import EventArchive
from leadflow.archive.writer import ArchiveWriter
from leadflow.db.database import Database
from leadflow.delivery.pool import MailPool
from leadflow.delivery.smtp import Mailer, SmtpConfig
from leadflow.delivery.webhook import Poster
from leadflow.governance.registry import Registry
from leadflow.identity.aliases import Aliases
from leadflow.operations.pruning import schedule_pruning
from leadflow.ops import logs, metrics, tracing
from leadflow.routing.desk import Desk
from leadflow.settings import Settings
from leadflow.signing import links_of
from leadflow.temporal import connect, ensure_search_attributes
from workflows.handoff import HandoffWorkflow
from workflows.lead import LeadWorkflow
from workflows.prune import PruneWorkflow

log = logging.getLogger("leadflow.worker")


def evaluator_pool(settings: Settings) -> EvaluatorPool | None:
    """Evaluator processes as settings ask; None evaluates in the worker (no deadline)."""
    if settings.eval_processes <= 0:
        return None
    return EvaluatorPool(settings.eval_processes, settings.eval_deadline)


def delivery_for(settings: Settings, store: PolicyStore, ledger: Database | None = None) -> Delivery:
    """The ledger, the SMTP server and the CRM webhooks as settings name them; refuses at start
    what would fail every delivery later."""
    settings.check_delivery()
    mailer, pool, links = None, None, links_of(settings)
    dkim = settings.dkim()  # the key read and tried here, at start
    if settings.smtp_host:
        smtp = SmtpConfig(settings.smtp_host, settings.smtp_port, settings.smtp_user, settings.smtp_password,
                          settings.smtp_tls, settings.delivery_timeout)  # type: ignore[arg-type]
        mailer = Mailer(smtp)
        if settings.delivery_processes > 0:  # run_worker starts them; else the first e-mail does
            pool = MailPool(smtp, settings.mail_from, links, settings.delivery_processes, dkim=dkim)
    return Delivery(ledger=ledger or Database.of(settings), content=store.content,
                    links=links, sender=settings.mail_from,
                    mailer=mailer, poster=Poster(settings.delivery_timeout), webhook_for=settings.webhook_for,
                    webhook_secret=settings.webhook_secret, public_url=settings.public, pool=pool,
                    dkim=dkim)


def build_worker(client: Client, settings: Settings, store: PolicyStore,
                 executor: concurrent.futures.Executor, evaluators: EvaluatorPool | None = None,
                 delivery: Delivery | None = None, archive: ArchiveWriter | None = None) -> Worker:
    delivery = delivery or delivery_for(settings, store)
    # the events go to the ledger's database: one archive for every worker that shares it
    acts = LeadActivities(store, evaluators, archive or ArchiveWriter(EventArchive(delivery.ledger)),
                          Endings(delivery.ledger), settings.final_retention, Aliases(delivery.ledger))
    sends = DeliveryActivities(delivery)
    routes = RoutingActivities(Desk(delivery.ledger, settings.roster_file))
    legacy = LegacyDelivery(sends)  # runs begun before deliveries were real call it until they continue
    prune = PruneActivities(delivery.ledger)
    return Worker(client, task_queue=settings.task_queue,
                  workflows=[LeadWorkflow, HandoffWorkflow, PruneWorkflow],
                  activities=[acts.evaluate_events, acts.checkpoint, acts.record_ending, sends.send_email,
                              sends.post_webhook, legacy.deliver, routes.assign_rep, routes.release_rep,
                              acts.link_alias, acts.merge_leads, prune.prune_archive, prune.prune_ledger],
                  activity_executor=executor,
                  # an e-mail or webhook under way when the worker stops gets to finish and be
                  # marked, rather than be cut off and sent again by the next worker
                  graceful_shutdown_timeout=timedelta(seconds=settings.delivery_timeout))


async def watch_policies(store: PolicyStore, every: float) -> None:
    """Pick up edited policy files; a bad file is refused and logged, the last good stays."""
    while True:
        await asyncio.sleep(every)
        await asyncio.to_thread(store.reload)


async def count_leads(client: Client, store: PolicyStore, every: float = 60.0) -> None:
    """Running leads by state, from the search attributes: counted now and then, not per scrape
    (a count is a visibility query on the server)."""
    while True:
        try:
            for state in store.active().policy.states:
                found = await client.count_workflows(
                    "WorkflowType = 'LeadWorkflow' AND ExecutionStatus = 'Running' "
                    f"AND LeadflowState = '{state}'")
                metrics.gauge("leadflow_leads", "Running leads by state (counted every minute)", found.count,
                              {"state": state})
        except Exception as err:  # noqa: BLE001 - a count that fails now is tried again later
            log.warning("counting leads by state: %s", err)
        await asyncio.sleep(every)


async def run_worker(settings: Settings, client: Client | None = None) -> None:
    settings.check_delivery()  # before anything starts: a setting every delivery would fail on
    if (problem := settings.check_secret()) is not None:  # refused outside the embedded setup
        log.warning("%s", problem)
    ledger = await asyncio.to_thread(Database.of, settings)
    # the shared database decides the active version; the folder is only read on first start
    store = PolicyStore(settings.policy_dir, settings.policy, settings.content_dir, Registry(ledger))
    await asyncio.to_thread(store.reload)
    active = store.active()  # refuse to start with no valid policy at all
    log.info("active policy %s v%s (%s, sha256 %s, rollout %s)", active.name, active.version, active.ruleset,
             active.sha[:12], store.rollout())
    keyring, where = settings.keyring()
    log.info("payloads to Temporal encrypted with codec key %s (from %s)", keyring.current[0], where)
    if not settings.embedded and where != "LEADFLOW_CODEC_KEYS":
        log.warning("LEADFLOW_CODEC_KEYS is not set: this worker made its own key under %s; workers, the "
                    "API and the CLI on other machines cannot read its leads unless given the same keys",
                    settings.home)
    if client is None:
        runtime = metrics.try_runtime(settings.metrics_addr)
        if runtime is not None:
            log.info("metrics: http://%s/metrics", settings.metrics_addr)
        client = await connect(settings, runtime)
    await ensure_search_attributes(client, settings.namespace)
    await schedule_pruning(client, settings)  # LEADFLOW_RETENTION_*: on, changed or off
    evaluators = evaluator_pool(settings)
    if evaluators is not None:
        evaluators.start()
    delivery = delivery_for(settings, store, ledger)
    if delivery.pool is not None:
        delivery.pool.start()
    if delivery.mailer is not None and not settings.public.startswith("https://"):
        log.warning("links in e-mail start %s: mail clients offer one-click unsubscribe (RFC 8058) only for "
                    "https links; set LEADFLOW_PUBLIC_URL to where people reach the API over https",
                    settings.public)
    mail = f"via {settings.smtp_host}"
    if delivery.pool is not None:
        mail += f" from {delivery.pool.size} delivery processes"
    log.info("deliveries: ledger %s; e-mail %s; hand-off webhooks %s", _redact(settings.shared_db_url),
             mail if delivery.mailer else "not sent (no LEADFLOW_SMTP_HOST)",
             "configured" if settings.webhook_for("") or settings.handoff_webhook_urls else "none")
    archive = ArchiveWriter(EventArchive(delivery.ledger))
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as executor:
        worker = build_worker(client, settings, store, executor, evaluators, delivery, archive)
        watcher = asyncio.create_task(watch_policies(store, settings.policy_poll_seconds))
        counter = asyncio.create_task(count_leads(client, store)) if metrics.meter() is not None else None
        try:
            log.info("worker on task queue %r, namespace %r; %s", settings.task_queue, settings.namespace,
                     f"{settings.eval_processes} evaluator processes" if evaluators else
                     "evaluating in this process")
            await worker.run()
        finally:
            watcher.cancel()
            if counter is not None:
                counter.cancel()
            archive.close()
            delivery.close()
            if evaluators is not None:
                evaluators.close()


def _redact(url: str) -> str:
    """A database URL without its password, for the log."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, userinfo = head.partition("://")
    return f"{scheme}://{userinfo.split(':')[0]}:***@{tail}"


def main() -> None:
    settings = Settings.from_env()
    logs.configure(log_format=settings.log_format, log_level=settings.log_level)
    tracing.configure("leadflow-worker")
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()
