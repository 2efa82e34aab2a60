"""Compact oversized tool results before the request leaves the machine.

A request waits for its analysis only when it could hold a tool result over
``kimi_tool_budget``: a body smaller than the budget in bytes or without a
tool result goes on at once; then the parse shows each result: one known
from an earlier turn, or far from the budget by a quick estimate, decides at
once; one near the budget waits for the count. Compaction runs beside the
count when it need not wait for it. The results over budget are compacted (``kimi_core.compaction``)
and spliced into the body in place (``kimi_core.toolresults``), in the
analysis thread; the new body is analysed again so that the guard judges,
and the row records, what is really sent. Originals go to the ``archives``
table. The guard calls ``rewrite`` too, to rescue a request it would refuse.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections import OrderedDict
from collections.abc import Coroutine

from mitmproxy import ctx, exceptions, http

from kimi_core import tokens
from kimi_core.analysis import Analysis, analyse
from kimi_core.compaction import MIN_BUDGET, Compactor
from kimi_core.providers import Route
from kimi_core.proxy.context import KimiContext, LLMCall
from kimi_core.store import ArchiveRecord
from kimi_core.tokens import estimate_text
from kimi_core.toolresults import Plan, Rewritten, result_key

logger = logging.getLogger(__name__)


# What a body holding a tool result has, in every dialect (OpenAI's "role": "tool", Anthropic's
# tool_result, Responses' *_output items, Gemini's functionResponse, Bedrock's toolResult).
_TOOL_RESULT = re.compile(rb'"(?:tool|tool_result|toolResult|functionResponse|function_response|[a-z_]*_output)"')


ARCHIVED = 10_000  # originals remembered as archived (their sha256)
NEAR, OVER = 1, 2  # what ``oversized`` may say besides 0 (no result over the budget)
# The tool budget is a soft target, unlike a window: a result estimated under it by more than the
# estimate's usual error (1-3%) goes on uncounted (the worst it costs is a result a few % over it).
BUDGET_MARGIN = 1.05


def oversized(analysis: Analysis, budget: int, compactor: Compactor, memo: OrderedDict[bytes, int] | None = None
              ) -> int:
    """Could a tool result of this parsed request be over ``budget`` tokens? ``OVER``: one is (known
    from an earlier turn, or over twice the budget by its estimate); ``NEAR``: one may be (within
    the estimate's margin); 0: none. A result not counted before is estimated from a sample
    (``tokens.estimate_text``), remembered in ``memo`` by its history item's digest."""
    request = analysis.request
    if request is None:
        return 0
    digests = analysis.digests or []
    encoding = encoding_of(analysis)
    found = 0
    for m in request.messages:
        for r in m.tool_results:
            if len(r.content) * 4 <= budget:  # tokens never outnumber UTF-8 bytes
                continue
            item = digests[m.index] if 0 <= m.index < len(digests) else None
            known = compactor.known(result_key(digests, m.index, r, encoding))
            if known is not None:
                if known > budget:
                    return OVER
                continue
            estimate = memo.get(item) if memo is not None and item is not None else None
            if estimate is None:
                estimate = estimate_text(r.content)
                if memo is not None and item is not None:
                    memo[item] = estimate
                    while len(memo) > 10_000:
                        memo.popitem(last=False)
            if estimate > 2 * budget:
                return OVER
            if estimate * BUDGET_MARGIN >= budget:
                found = NEAR
    return found


def encoding_of(analysis: Analysis) -> str:
    """The encoding the request is counted in (its count's, or its model's while it is being counted)."""
    if analysis.count is not None:
        return analysis.count.encoding
    model = analysis.request.model if analysis.request is not None else None
    return tokens.encoding(tokens.wanted_encoding(model)[0])[1]


def rescue_budget(budget: int) -> int:
    """The budget older results are compacted to when a request must shrink to be sent."""
    return min(budget, max(500, budget // 10))


def _rewrite(kimi: KimiContext, analysis: Analysis, path: str, max_bytes: int, budget: int,
             need: int) -> tuple[Analysis, Rewritten] | None:
    """In a worker thread: compact, splice, analyse the new body. ``need``: tokens to save by rescue.

    ``analysis`` may not be counted yet (its count runs meanwhile in the other thread): then its
    results are counted one by one, and the encoding is the model's.
    """
    if (analysis.text is None or analysis.parsed is None or analysis.request is None
            or analysis.dialect is None or not isinstance(analysis.body, dict)):
        return None
    counted = analysis.count
    plan = Plan(analysis.text, analysis.parsed, analysis.body, analysis.request, kimi.compactor,
                encoding_of(analysis), counted.per_message if counted is not None else (), analysis.digests)
    plan.over_budget(budget)
    if need > 0:
        plan.rescue(need, rescue_budget(budget))
    rewritten = plan.apply()
    if rewritten is None:
        return None
    route = Route(analysis.dialect, analysis.request.model)  # the request alone, out of any envelope
    new = analyse(rewritten.text.encode("utf-8"), "", route, path, kimi.counter, max_bytes, kimi.recent)
    new.envelope = analysis.envelope
    if new.count is None:  # cannot happen for a body spliced from a parsed one; never send what was not checked
        logger.warning("kimi: a compacted body did not parse again (%s); sending the original", new.error)
        return None
    return new, rewritten


async def rewrite(kimi: KimiContext, flow: http.HTTPFlow, call: LLMCall, need: int = 0,
                  source: Analysis | None = None) -> tuple[Analysis, Rewritten] | None:
    """The request compacted, from the body the client sent: results over budget, and
    older ones until ``need`` more tokens are saved. Not applied yet: see ``apply``.

    ``source``: the body's analysis, when it is parsed but not counted yet (the
    compaction then runs in the parse thread, beside the count).
    """
    source = call.original or call.result() or source
    budget = ctx.options.kimi_tool_budget
    if source is None or budget <= 0:
        return None
    job = functools.partial(_rewrite, kimi, source, flow.request.path, ctx.options.kimi_max_body_mb * 1024 * 1024,
                            budget, need)
    worker = kimi.analyser if source.count is not None else kimi.parser
    future = asyncio.get_running_loop().run_in_executor(worker, job)
    if not await call.settled(future):
        return None
    try:
        return future.result()
    except Exception as e:  # noqa: BLE001 -- a compaction bug must not break the request: it goes on as sent
        logger.warning("kimi: could not compact tool results: %r; the request goes on unchanged", e)
        call.errors.append(f"internal error while compacting: {e!r}")
        return None


def apply(kimi: KimiContext, flow: http.HTTPFlow, call: LLMCall, new: Analysis, rewritten: Rewritten,
          source: Analysis | None = None) -> None:
    """Send the compacted body on, and keep the originals. ``source``: the analysis compacted from
    (counted in place, if its count is still running)."""
    if call.original is None:
        call.original = call.result() or source
    flow.request.content = new.wire(rewritten.text)  # re-encoded if the client compressed it
    call.replace_analysis(new)
    call.compaction = rewritten
    call.action = "compacted"
    names = ", ".join(f"{d.name or 'tool'} {d.compacted.original_tokens:,} → {d.compacted.kept_tokens:,}"
                      for d in rewritten.done)
    original = call.original

    def log() -> None:  # once the original is counted too
        before = original.count.tokens if original is not None and original.count else None
        after = new.count.tokens if new.count else 0
        logger.info("kimi: %s: compacted %d tool result(s) (%s); prompt %s → %s tokens; originals: kimi-proxy "
                    "restore %s", call.provider, len(rewritten.done), names,
                    f"{before:,}" if before is not None else "?", f"{after:,}",
                    " ".join(d.compacted.sha256[:12] for d in rewritten.done))
    call.when_analysed(log)
    if kimi.store is not None:
        for d in rewritten.done:
            # A result resent every turn is archived once (redacting and compressing 1 MB every turn
            # cost more than the rest of the turn); the archive names the first request that sent it.
            if kimi.archived.get(d.compacted.sha256) == kimi.store.generation:
                kimi.archived.move_to_end(d.compacted.sha256)
                continue
            kimi.archived[d.compacted.sha256] = kimi.store.generation
            while len(kimi.archived) > ARCHIVED:
                kimi.archived.popitem(last=False)
            kimi.store.submit(ArchiveRecord(d.original, d.compacted.original_tokens, d.compacted.kept_tokens,
                                            flow.id, d.name))


class KimiCompactor:
    def __init__(self, kimi: KimiContext) -> None:
        self.kimi = kimi
        self._estimates: OrderedDict[bytes, int] = OrderedDict()  # of tool results, by history item

    def load(self, loader) -> None:
        loader.add_option(
            "kimi_tool_budget", int, 50_000,
            "Tool results larger than this many tokens are compacted to it before they are sent; "
            "the originals are kept (kimi-proxy restore). 0 turns compaction off.",
        )

    def configure(self, updated: set[str]) -> None:
        budget = ctx.options.kimi_tool_budget
        if "kimi_tool_budget" in updated and (budget < 0 or 0 < budget < MIN_BUDGET):
            raise exceptions.OptionsError(
                f"kimi_tool_budget must be 0 (off) or at least {MIN_BUDGET} tokens (a marker takes about 40)")

    def request(self, flow: http.HTTPFlow) -> Coroutine[None, None, None] | None:
        """Hold the request for compaction only if it could hold a tool result over budget."""
        call = self.kimi.call(flow)
        budget = ctx.options.kimi_tool_budget
        if call is None or call.parsed is None or flow.response is not None or budget <= 0:
            return None
        raw = flow.request.raw_content or b""
        if len(raw) <= budget:
            return None
        if "content-encoding" not in flow.request.headers and _TOOL_RESULT.search(raw) is None:
            return None
        return self._compact(flow, call)

    async def _compact(self, flow: http.HTTPFlow, call: LLMCall) -> None:
        assert call.analysis is not None and call.parsed is not None
        budget = ctx.options.kimi_tool_budget
        # Parsing is quick; counting the whole body is not, and is waited for only when a result
        # is near the budget (its message's count then says); one clearly over it is compacted
        # at once, beside the count.
        if not await call.settled(call.parsed):
            return
        parsed = call.parsed.result()
        if parsed is None:
            return
        level = await asyncio.to_thread(oversized, parsed, budget, self.kimi.compactor, self._estimates)
        if level == 0:
            return
        if level == NEAR and not await call.settled(call.analysis):
            return
        done = await rewrite(self.kimi, flow, call, source=parsed)
        if done is not None:
            apply(self.kimi, flow, call, *done, source=parsed)
