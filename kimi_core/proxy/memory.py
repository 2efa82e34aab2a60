"""Keep what users tell their agents about themselves, off the request path.

Once a request is parsed, the user messages new to Kimi go to a bounded
asyncio queue (never awaited by the request: a full queue drops the message
and counts it). Workers read in batches, after a pause in the traffic. ``kimi_memory_workers`` tasks, started when the proxy starts
and drained when it stops, run the rule-based extraction in a process of
their own at a lower priority (see ``Reader``) and, when ``kimi_memory_llm``
is set, ask an OpenAI-compatible model about the messages the lexical filter
let through. That call goes straight
from this process to the model (``trust_env=False``: not through a proxy set
in the environment, so never through Kimi itself), and its failure falls back
to the rules. Statements go to the ``memories`` table.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import multiprocessing.connection
import os
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from mitmproxy import ctx, exceptions, http

from kimi_core import memory
from kimi_core.analysis import Analysis
from kimi_core.proxy.context import KimiContext, LLMCall
from kimi_core.redact import redact_text
from kimi_core.store import MemoryRecord

logger = logging.getLogger(__name__)

QUEUE_SIZE = 2000  # messages of at most memory.MAX_TEXT characters: 40 MB at worst
BATCH = 32  # messages read in one call to the reader process
QUIET = 0.25  # seconds without a new request before reading: extraction yields to traffic
SEEN_SIZE = 50_000  # user messages remembered as already read (about 5 MB)
DRAIN_SECONDS = 3.0  # what is still queued at shutdown is read for this long, then dropped
START_SECONDS = 120.0  # for the reader process to start, before its first batch is timed
READ_BUDGET = 20.0  # seconds for one batch (they take under a second): past it, the reader is stopped
LLM_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class Job:
    session_id: str | None
    provider: str
    text: str
    call: LLMCall | None = None  # its project is read from the call's conversation once placed

    @property
    def user(self) -> str | None:
        return self.call.user if self.call is not None else None

    @property
    def project(self) -> str | None:
        call = self.call
        if call is None:
            return None
        return (call.conversation.project if call.conversation is not None else None) or call.project


class Abandoned(Exception):
    """The reader took longer than its budget: its process was stopped, the batch dropped."""


class Reader:
    """Where messages are read: a process of its own at a lower priority, stopped at will.

    In a thread of the proxy's process, reading holds the GIL and the event
    loop waits for it (a burst of long messages added 15-40% to p50 latency);
    in a lower-priority process it takes only the CPU the proxy leaves. Unlike
    a thread, a process can be stopped in the middle of its work: a batch
    that takes longer than ``budget`` seconds (a reading gone pathological)
    is given up and the process replaced, and closing never waits for one.

    The process is a plain ``python`` running ``kimi_core.memory.serve`` on a
    pipe (18 MB): ``multiprocessing``'s spawn would load the proxy's main
    script (all of mitmproxy) and start a resource tracker process besides.
    It starts with the first batch; batches go one at a time.
    """

    def __init__(self, budget: float = READ_BUDGET) -> None:
        self.budget = budget
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: _Pipe | None = None
        self._lock = asyncio.Lock()
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None  # where processes cannot start

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def run(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        """``fn(arg)`` in the reader; raises ``Abandoned`` past the budget."""
        async with self._lock:
            if self._process is None and self._thread is None:
                try:
                    await asyncio.to_thread(self._start)
                except OSError as e:
                    logger.warning("kimi: cannot start the memory reader process (%s); reading in a thread", e)
                    self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kimi-memory")
                else:  # a new process starts slowly on a busy machine (and at a low priority): not the batch's time
                    await self._call(abs, 0, START_SECONDS)
            if self._thread is not None:  # a thread cannot be stopped: no budget there
                return await asyncio.get_running_loop().run_in_executor(self._thread, fn, arg)
            return await self._call(fn, arg, self.budget)

    def _start(self) -> None:
        read_end, to_child = os.pipe()
        from_child, write_end = os.pipe()
        root = str(Path(memory.__file__).resolve().parents[1])  # kimi_core's parent: a checkout or site-packages
        code = (f"import sys; sys.path.insert(0, {root!r}); from kimi_core.memory import serve; "
                f"serve({read_end}, {write_end})")
        try:
            self._process = subprocess.Popen([sys.executable, "-I", "-c", code], pass_fds=(read_end, write_end),
                                             stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            os.close(read_end)
            os.close(write_end)
        self._conn = _Pipe(from_child, to_child)

    async def _call(self, fn: Callable[[Any], Any], arg: Any, seconds: float) -> Any:
        conn = self._conn
        assert conn is not None
        ask = asyncio.to_thread(conn.ask, (fn, arg), seconds)
        try:
            ok, value = await ask
        except (TimeoutError, EOFError, OSError):
            await asyncio.to_thread(self.close)  # the next batch starts a new process
            raise Abandoned from None
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """Stop the process now, whatever it is doing."""
        process, self._process = self._process, None
        conn, self._conn = self._conn, None
        if process is not None:
            process.kill()
            process.wait()
        if conn is not None:
            conn.close()
        if self._thread is not None:
            self._thread.shutdown(wait=False, cancel_futures=True)


class _Pipe:
    """Pickled messages to and from the reader process (``multiprocessing.connection``'s framing)."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._in = multiprocessing.connection.Connection(read_fd, writable=False)
        self._out = multiprocessing.connection.Connection(write_fd, readable=False)

    def ask(self, message: Any, seconds: float) -> Any:
        self._out.send(message)
        if not self._in.poll(seconds):
            raise TimeoutError
        return self._in.recv()

    def close(self) -> None:
        self._in.close()
        self._out.close()


class KimiMemory:
    def __init__(self, kimi: KimiContext) -> None:
        self.kimi = kimi
        self.queue: asyncio.Queue[Job] | None = None
        self._workers: list[asyncio.Task] = []
        self._seen: OrderedDict[bytes, None] = OrderedDict()  # digests of (session, index, text)
        self._read: OrderedDict[int, str | None] = OrderedDict()  # analyses read, by number: their session
        self._reader: Reader | None = None
        self._client: httpx.AsyncClient | None = None
        self._last_request = 0.0
        self._draining = False

    def load(self, loader) -> None:
        loader.add_option("kimi_memory", bool, True,
                          "Extract the user's preferences, intentions and constraints into the memories table.")
        loader.add_option("kimi_memory_workers", int, 2, "Background tasks extracting memories.")
        loader.add_option("kimi_memory_llm", str, "",
                          "Base URL of an OpenAI-compatible API (https://host/v1) for a second extraction stage; "
                          "empty: rules only.")
        loader.add_option("kimi_memory_llm_model", str, "", "Model for kimi_memory_llm.")
        loader.add_option("kimi_memory_llm_key_env", str, "KIMI_MEMORY_LLM_API_KEY",
                          "Environment variable holding the API key for kimi_memory_llm.")

    def configure(self, updated: set[str]) -> None:
        if "kimi_memory_workers" in updated and ctx.options.kimi_memory_workers < 1:
            raise exceptions.OptionsError("kimi_memory_workers must be 1 or more")
        url = ctx.options.kimi_memory_llm
        if {"kimi_memory_llm", "kimi_memory_llm_model"} & updated and url:
            if not url.startswith(("http://", "https://")):
                raise exceptions.OptionsError(f"kimi_memory_llm: {url!r} is not an http(s) URL")
            if not ctx.options.kimi_memory_llm_model:
                raise exceptions.OptionsError("kimi_memory_llm is set: set kimi_memory_llm_model too")

    def running(self) -> None:
        if self.queue is not None:
            return
        self.queue = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._reader = Reader()
        self._client = httpx.AsyncClient(trust_env=False, timeout=LLM_TIMEOUT)
        self._workers = [asyncio.create_task(self._work(), name=f"kimi-memory-{i}")
                         for i in range(ctx.options.kimi_memory_workers)]

    async def done(self) -> None:
        """Finish what is queued (for a while), before the recorder closes the database."""
        self._draining = True
        if self.queue is not None and self._workers:
            try:
                await asyncio.wait_for(self.queue.join(), DRAIN_SECONDS)
            except TimeoutError:
                logger.warning("kimi: shutting down with %d user message(s) not read for memories",
                               self.queue.qsize())
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._client is not None:
            await self._client.aclose()
        if self._reader is not None:
            await asyncio.to_thread(self._reader.close)

    # -- collecting ------------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        call = self.kimi.call(flow)
        if call is None or call.parsed is None or not ctx.options.kimi_memory or self.queue is None:
            return
        self._last_request = asyncio.get_running_loop().time()
        call.parsed.add_done_callback(lambda f: self._collect(call, f.result()) if not f.cancelled() else None)

    def _collect(self, call: LLMCall, parsed: Analysis | None) -> None:
        """Queue the request's user messages that were not seen before, without waiting."""
        if parsed is None or parsed.request is None or self.queue is None:
            return
        session = call.session.id if call.session else None
        # What the body repeats of a recent one of the same session was looked at then (a history
        # grows every turn): only the rest is.
        seen = parsed.reused if parsed.prior_seq is not None and self._read.get(parsed.prior_seq, ...) == session \
            else 0
        if call.analysis is not None:  # its number in ``Recent`` comes with its count
            call.analysis.add_done_callback(lambda _: self._was_read(parsed.seq, session))
        for message in parsed.request.messages:
            if message.index < seen or message.role != "user" or not message.text.strip():
                continue
            if not memory.may_state(message.text):  # nothing to read: not worth a trip to the reader
                self.kimi.metrics.memory_filtered.inc()
                continue
            key = hashlib.blake2b(f"{session}\0{message.index}\0{message.text}".encode("utf-8", "surrogatepass"),
                                  digest_size=16).digest()
            if key in self._seen:
                self._seen.move_to_end(key)
                continue
            self._seen[key] = None
            if len(self._seen) > SEEN_SIZE:
                self._seen.popitem(last=False)
            try:
                # Credentials out before anything reads or normalises the text (memories are lower-cased).
                self.queue.put_nowait(Job(session, call.provider, redact_text(message.text[:memory.MAX_TEXT]), call))
            except asyncio.QueueFull:
                self.kimi.metrics.memory_dropped.inc()
        self.kimi.metrics.memory_queue.set(self.queue.qsize())

    def _was_read(self, seq: int, session: str | None) -> None:
        if seq:
            self._read[seq] = session
            while len(self._read) > SEEN_SIZE // 10:
                self._read.popitem(last=False)

    # -- extracting ------------------------------------------------------------------------------

    async def _work(self) -> None:
        assert self.queue is not None
        while True:
            jobs = [await self.queue.get()]
            while len(jobs) < BATCH and not self.queue.empty():
                jobs.append(self.queue.get_nowait())
            try:
                await self._quiet()
                await self._extract(jobs)
            except Exception as e:  # noqa: BLE001 -- odd messages must not stop the worker
                logger.warning("kimi: could not read user messages for memories: %r", e)
            finally:
                for _ in jobs:
                    self.queue.task_done()
                self.kimi.metrics.memory_queue.set(self.queue.qsize())

    async def _quiet(self) -> None:
        """Wait for a pause in the traffic, unless the queue is filling up or the proxy stopping.

        On a busy two-core machine, reading during a burst of requests cost
        them 10-15% of their latency; memories can wait a quarter of a second.
        """
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while not self._draining and self.queue.qsize() < QUEUE_SIZE * 3 // 4:
            idle = loop.time() - self._last_request
            if idle >= QUIET:
                return
            await asyncio.sleep(QUIET - idle)

    async def _extract(self, jobs: list[Job]) -> None:
        metrics = self.kimi.metrics
        texts = [job.text for job in jobs]
        assert self._reader is not None
        try:
            results = await self._reader.run(memory.read_all, texts)
        except Abandoned:
            logger.warning("kimi: reading %d user message(s) for memories took over %.0f s: given up, "
                           "the reader restarted", len(texts), self._reader.budget)
            metrics.memory_abandoned.inc(len(texts))
            return
        for job, (words, passed, found, seconds) in zip(jobs, results, strict=True):
            metrics.memory_duration.observe(seconds)
            if not passed:
                metrics.memory_filtered.inc()
                continue
            if ctx.options.kimi_memory_llm:
                asked = await self._ask(words)
                if asked is not None:
                    found = asked
            store = self.kimi.store
            if store is not None and store.pending >= store.max_pending // 2:
                # The writer is behind: memories wait for nothing, request rows come first.
                metrics.memory_dropped.inc()
                continue
            for m in found:
                metrics.memory_extracted.labels(m.kind).inc()
                metrics.memory_confidence.observe(m.confidence)
                self.kimi.book.add(m.kind, m.content, job.project, job.user)  # for the hints, before its row
                if store is not None:
                    store.submit(MemoryRecord(job.session_id, job.provider, m.kind, m.content,
                                              m.source_text, m.confidence, job.project, job.user))

    async def _ask(self, words: str) -> list[memory.Memory] | None:
        """The language model's reading of ``words``; None (and the rules decide) if it fails."""
        assert self._client is not None
        url = ctx.options.kimi_memory_llm.rstrip("/") + "/chat/completions"
        key = os.environ.get(ctx.options.kimi_memory_llm_key_env, "")
        headers = {"authorization": f"Bearer {key}"} if key else {}
        try:
            response = await self._client.post(url, json=memory.llm_body(ctx.options.kimi_memory_llm_model, words),
                                               headers=headers)
            found = memory.parse_llm_reply(response.json(), words.strip()[:500]) \
                if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as e:
            logger.debug("kimi: memory model unreachable: %r", e)
            found = None
        self.kimi.metrics.memory_llm_calls.labels("ok" if found is not None else "failed").inc()
        return found
