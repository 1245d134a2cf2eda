"""The archive's door for the worker's event loop: the lead's evaluation (a local activity on the
loop) hands its batch over and waits, while one thread writes what has queued up in one
transaction. Under load many leads' batches share one commit, and the loop never blocks on the
database. The evaluation waits for the write: a batch it answered for is in the archive, so a
replay, which does not run the local activity again, loses nothing."""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any

from leadflow.archive.events import EventArchive, Taken

MAX_BATCHES = 500  # batches written in one transaction at most


class ArchiveWriter:
    def __init__(self, archive: EventArchive) -> None:
        self.archive = archive
        self._queue: queue.SimpleQueue[tuple[Taken, asyncio.AbstractEventLoop, asyncio.Future[None]] | None]
        self._queue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def add(self, taken: Taken) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._start()
        self._queue.put((taken, loop, done))
        await done

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)

    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._write, name="event-archive", daemon=True)
                    self._thread.start()

    def _write(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items = [first]
            while len(items) < MAX_BATCHES:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this round
                    break
                items.append(item)
            error: BaseException | None = None
            try:
                self.archive.add(taken for taken, _, _ in items)
            except Exception as err:  # the evaluations fail and Temporal retries them
                error = err
            for _, loop, done in items:
                loop.call_soon_threadsafe(_settle, done, error)


def _settle(done: asyncio.Future[Any], error: BaseException | None) -> None:
    if done.done():  # the evaluation was cancelled meanwhile
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
