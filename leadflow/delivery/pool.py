"""E-mail written and sent in processes of their own, so that a worker's e-mail is bounded by
the SMTP server and not by one process's GIL.

The delivery activity keeps the ledger: it claims the key before it hands a message here and
marks it with what came back, so the claim and the mark stay the only way a message leaves
(activities.delivery). A pool process does the rest of the per-message work: the template
rendered, the links signed, the message written, the SMTP exchange on a connection it keeps.

Each process serves `lanes` pipes, a thread and an SMTP connection each; an activity thread takes
a free lane, sends the job, and waits on that lane for the answer (one pipe write and one read a
message on either side, nothing to dispatch). A lane also shares a byte with its process that
says how far the exchange got: set just before the message itself goes to the SMTP server.

A process that dies (or hangs past the deadline and is killed) is replaced. What that means for
the messages it had in hand, one by one:
- not yet committed (render, MAIL, RCPT): the server has nothing; the message is sent again on
  a fresh process (twice at most), then the activity retries it (`Lost(maybe_sent=False)`);
- committed: the server may have it, and nobody can tell. The activity leaves its claim as a
  crashed worker would (`Lost(maybe_sent=True)`): the lease runs out, the next attempt takes the
  claim over, counts a reclaim and sends again with the same Message-ID (docs/delivery.md).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import pickle
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from leadflow.delivery import message, mime
from leadflow.delivery.content import Template, parse_template
from leadflow.delivery.dkim_sign import DkimSigner
from leadflow.delivery.links import Links, Mail, delivery_digest
from leadflow.delivery.smtp import Mailer, SendError, SmtpConfig

log = logging.getLogger("leadflow.delivery.pool")

LANES = 16  # messages in flight per process (the worker runs 32 activity threads)
TRIES = 3  # processes a message that never reached the server is tried on before the activity retries
# a lane's byte: what its process is doing with the job in hand
WRITING, COMMITTED = 0, 1


def mail_of(key: str, lead: str, content: str, address_hash: str) -> Mail:
    """What the links of delivery `key` say, signed now."""
    return Mail(lead=lead, delivery=delivery_digest(key), content=content, sent=int(time.time()),
                address=address_hash)


def compose_and_send(mailer: Mailer, links: Links, sender: str, template: Template, mail: Mail, *, key: str,
                     to: str, profile: dict[str, Any], committing: Callable[[], None] | None = None,
                     dkim: DkimSigner | None = None) -> None:
    """One e-mail: rendered, its links signed, written, DKIM-signed (with `dkim`), sent. Raises
    SendError as Mailer.send, or what the template raised."""
    unsubscribe = links.unsubscribe(mail)
    rendered = template.render(profile, unsubscribe)
    msg = message.build(rendered, key=key, sender=sender, to=to, mail=mail, links=links,
                        unsubscribe_url=unsubscribe)
    if dkim is not None:
        msg = dkim.sign(msg)
    mailer.send(msg, mime.mailbox(sender) or sender, to, committing)


class Lost(Exception):
    """The process sending this message went away; `maybe_sent` when the server may have it."""

    def __init__(self, detail: str, *, maybe_sent: bool) -> None:
        super().__init__(detail)
        self.maybe_sent = maybe_sent


# -- a pool process ------------------------------------------------------------------------------

def _put(sock: socket.socket, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(len(data).to_bytes(4, "big") + data)


def _get(sock: socket.socket) -> Any:
    """One message (raises EOFError when the other side is gone). A lane carries one message each
    way at a time, so one read usually holds all of it: a socket pair and this framing cost a
    third of multiprocessing.Connection's poll, send and recv."""
    data = sock.recv(65536)
    while True:
        if not data:
            raise EOFError("the other side closed the lane")
        size = 4 + int.from_bytes(data[:4], "big") if len(data) >= 4 else 5
        if len(data) >= size:
            return pickle.loads(memoryview(data)[4:size])
        data += sock.recv(size - len(data))


def _serve(lanes: list[tuple[socket.socket, Any]], smtp: SmtpConfig, sender: str,
           links: Links, dkim: DkimSigner | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to handle
    mailer = Mailer(smtp, pool=len(lanes))
    templates: dict[str, Template] = {}
    compiling = threading.Lock()

    def template_of(content: str, sha: str, file: str, source: bytes | None) -> Template:
        with compiling:
            if sha not in templates:
                if source is None:  # never: a job comes without it only once this process answered one
                    raise RuntimeError(f"the delivery process has no template {content!r} ({sha[:12]})")
                templates[sha] = parse_template(source, file, content)
            return templates[sha]

    def lane(conn: socket.socket, stage: Any) -> None:
        def committing() -> None:
            stage.value = COMMITTED

        while True:
            try:
                key, mail, sha, file, source, to, profile = _get(conn)
            except (EOFError, OSError):  # the worker went away (or closed the pool)
                return
            try:
                template = template_of(mail.content, sha, file, source)
                compose_and_send(mailer, links, sender, template, mail, key=key, to=to, profile=profile,
                                 committing=committing, dkim=dkim)
                answer: tuple[Any, ...] = ("sent",)
            except SendError as err:
                answer = ("refused", err.detail, err.permanent, err.bounce)
            except Exception as err:  # noqa: BLE001 - the activity raises it, as it would have
                answer = ("raised", _portable(err))
            try:
                _put(conn, answer)
            except OSError:
                return

    threads = [threading.Thread(target=lane, args=pair, daemon=True) for pair in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    mailer.close()


def _portable(err: Exception) -> Exception:
    """The exception itself when it crosses a pipe whole, else a RuntimeError that says it."""
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:  # noqa: BLE001 - anything that does not survive pickling
        return RuntimeError(f"{type(err).__name__}: {err}")
    return err


# -- the worker's side ---------------------------------------------------------------------------

@dataclass(eq=False)
class _Process:
    process: Any
    lanes: list[_Lane] = field(default_factory=list)
    has: set[str] = field(default_factory=set)  # template shas it answered a message with
    gone: bool = False


@dataclass(eq=False)
class _Lane:
    owner: _Process
    conn: socket.socket  # ours of the pair; the process has the other
    stage: Any  # shared byte: WRITING or COMMITTED
    owed: bool = False  # a job's answer nobody read yet (its activity was cancelled)


class MailPool:
    def __init__(self, smtp: SmtpConfig, sender: str, links: Links, processes: int = 2,
                 lanes: int = LANES, dkim: DkimSigner | None = None) -> None:
        self.smtp, self.sender, self.links, self.dkim = smtp, sender, links, dkim
        self.size = max(1, processes)
        self.lanes = max(1, lanes)
        # the longest an answer can take: every step of an SMTP exchange on its own timeout
        self.deadline = 8 * smtp.timeout + 5
        self._context = multiprocessing.get_context("spawn")  # the worker has threads: no fork
        self._processes: list[_Process] = []
        self._idle: list[_Lane] = []
        self._free = threading.Condition()
        self._closed = False
        self.restarts = 0

    def start(self) -> None:
        """Start the processes now rather than at the first e-mail (each imports for a moment)."""
        with self._free:
            while len(self._processes) < self.size:
                self._spawn()

    def pids(self) -> list[int]:
        with self._free:
            return [p.process.pid for p in self._processes]

    def close(self) -> None:
        """Ends every process: each finishes the messages it has in hand, then reads the end (a
        lane in use is closed by its user, _give)."""
        with self._free:
            self._closed = True
            processes, self._processes, idle, self._idle = self._processes, [], self._idle, []
            self._free.notify_all()
        for lane in idle:
            lane.conn.close()
        for p in processes:
            p.process.join(timeout=self.smtp.timeout + 5)
            if p.process.is_alive():
                p.process.kill()
                p.process.join(timeout=5)

    def send(self, template: Template, mail: Mail, *, key: str, to: str, profile: dict[str, Any]) -> None:
        """compose_and_send in a pool process. Raises SendError as Mailer.send does, what the
        template raised, or Lost."""
        died = ""
        for _ in range(TRIES):
            lane = self._take()
            owner = lane.owner
            # the template's bytes go along until this process has answered with it
            source = None if template.sha in owner.has else template.source
            try:
                answer = self._ask(lane, (key, mail, template.sha, template.file, source, to, profile))
            except Lost as lost:
                died = str(lost)
                if lost.maybe_sent:
                    raise
                continue
            finally:
                self._give(lane)
            if answer[0] == "sent":
                owner.has.add(template.sha)
                return
            if answer[0] == "refused":
                owner.has.add(template.sha)
                _, detail, permanent, bounce = answer
                raise SendError(detail, permanent=permanent, bounce=bounce)
            raise answer[1]
        raise Lost(f"the delivery process exited before sending, {TRIES} times ({died})", maybe_sent=False)

    # -- lanes ---------------------------------------------------------------------------------

    def _ask(self, lane: _Lane, job: tuple[Any, ...]) -> tuple[Any, ...]:
        """One job on one lane: its answer, or Lost when the process went away (or hung)."""
        if lane.owed:  # an answer left by a cancelled activity comes first
            try:
                self._read(lane)
            except Lost as lost:  # about that job: this one was not sent at all
                raise Lost(str(lost), maybe_sent=False) from None
            lane.owed = False
        lane.stage.value = WRITING
        try:
            lane.owed = True
            try:
                _put(lane.conn, job)
            except OSError as err:  # it died while idle: nothing of this job reached it
                self._replace(lane.owner, str(err))
                raise Lost(f"the delivery process went away ({err})", maybe_sent=False) from None
            answer = self._read(lane)
            lane.owed = False
            return answer
        except Lost:
            lane.owed = False
            raise

    def _read(self, lane: _Lane) -> tuple[Any, ...]:
        try:
            answer: tuple[Any, ...] = _get(lane.conn)
            return answer
        except TimeoutError:
            why = f"no answer within {self.deadline:g} s; the process was stopped"
        except (EOFError, OSError) as err:
            process = lane.owner.process
            why = str(err) if process.is_alive() else f"exit code {process.exitcode}"
        self._replace(lane.owner, why)
        return self._lost(lane, why)

    @staticmethod
    def _lost(lane: _Lane, why: str) -> tuple[Any, ...]:
        raise Lost(f"the delivery process went away ({why})", maybe_sent=lane.stage.value == COMMITTED)

    def _take(self) -> _Lane:
        with self._free:
            if not self._processes and not self._closed:
                while len(self._processes) < self.size:
                    self._spawn()
            while not self._idle:
                if self._closed:
                    raise Lost("the delivery pool is closed", maybe_sent=False)
                self._free.wait()
            return self._idle.pop()

    def _give(self, lane: _Lane) -> None:
        with self._free:
            if not lane.owner.gone and not self._closed:
                self._idle.append(lane)
                self._free.notify()
                return
        lane.conn.close()  # its process is gone, or the pool closed; nobody else holds it

    def _spawn(self) -> None:
        """A process and its lanes, interleaved with the others' in the idle list so that the
        messages in flight spread over every process. (Under self._free.)"""
        pairs, ends = [], []
        for _ in range(self.lanes):
            ours, theirs = socket.socketpair()
            ours.settimeout(self.deadline)
            pairs.append((ours, self._context.RawValue("b", WRITING)))
            ends.append((theirs, pairs[-1][1]))
        process = self._context.Process(target=_serve, daemon=True, name="leadflow-delivery",
                                        args=(ends, self.smtp, self.sender, self.links, self.dkim))
        process.start()
        for theirs, _ in ends:
            theirs.close()  # the process's alone: when it dies, our end reads EOF
        spawned = _Process(process)
        spawned.lanes = [_Lane(spawned, conn, stage) for conn, stage in pairs]
        self._processes.append(spawned)
        # every process's first lanes last in the list: they are taken first (and kept warm)
        mixed = [lane for group in zip(*(p.lanes for p in self._processes), strict=False) for lane in group]
        idle = set(map(id, self._idle))
        self._idle = [lane for lane in reversed(mixed) if id(lane) in idle or lane.owner is spawned]

    def _replace(self, dead: _Process, why: str) -> None:
        with self._free:
            if dead.gone:  # another lane of it found out first
                return
            dead.gone = True
            self._processes.remove(dead)
            idle = [lane for lane in self._idle if lane.owner is dead]
            self._idle = [lane for lane in self._idle if lane.owner is not dead]
            log.warning("a delivery process went away (%s); starting another", why)
            self.restarts += 1
            if not self._closed:
                self._spawn()
            self._free.notify_all()
        with contextlib.suppress(Exception):
            dead.process.kill()
            dead.process.join(timeout=5)
        for lane in idle:  # a lane in use is closed by its user (_give): its end is still read
            lane.conn.close()
