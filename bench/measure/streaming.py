"""Per-request latency of a streamed generation, and load-test summaries.

Definitions (times in seconds from one monotonic clock, reported in ms):
  TTFT = first non-empty output chunk - send
  E2E  = last chunk (end of stream) - send
  TPOT = (E2E - TTFT) / (output_tokens - 1), only when output_tokens > 1
  ITL  = every gap between consecutive non-empty chunks, pooled across requests
Output tokens come from the server's ``usage`` where it reports it; a count made with the
tokenizer is marked estimated. Throughput = output tokens of successful requests / the
measurement window; failed requests are counted apart and excluded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.measure.stats import summarize


@dataclass
class RequestTiming:
    send_s: float
    chunk_s: list = field(default_factory=list)  # arrival time of each non-empty output chunk
    end_s: float | None = None
    output_tokens: int = 0
    tokens_from_usage: bool = True  # False: counted with the tokenizer (estimated)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.chunk_s) and self.end_s is not None

    def ttft_s(self) -> float:
        return self.chunk_s[0] - self.send_s

    def e2e_s(self) -> float:
        return self.end_s - self.send_s

    def tpot_s(self) -> float | None:
        if self.output_tokens <= 1:
            return None
        return (self.e2e_s() - self.ttft_s()) / (self.output_tokens - 1)

    def itl_s(self) -> list[float]:
        return [b - a for a, b in zip(self.chunk_s, self.chunk_s[1:])]


def _ms(values: list[float]) -> dict | None:
    return summarize([v * 1000.0 for v in values]) if values else None


def summarize_requests(timings: list[RequestTiming], window_s: float) -> dict:
    """Percentiles (ms, with n) of TTFT, TPOT, ITL and E2E over the successful requests."""
    ok = [t for t in timings if t.ok]
    tokens = sum(t.output_tokens for t in ok)
    return {
        "n_requests": len(ok),
        "n_failed": len(timings) - len(ok),
        "ttft_ms": _ms([t.ttft_s() for t in ok]),
        "tpot_ms": _ms([x for x in (t.tpot_s() for t in ok) if x is not None]),
        "itl_ms": _ms([gap for t in ok for gap in t.itl_s()]),
        "e2e_ms": _ms([t.e2e_s() for t in ok]),
        "output_tokens": tokens,
        "output_tokens_source": "server usage" if all(t.tokens_from_usage for t in ok) else "tokenizer (estimated)",
        "window_s": window_s,
        "throughput_output_tokens_s": tokens / window_s if window_s > 0 else 0.0,
        "requests_per_s": len(ok) / window_s if window_s > 0 else 0.0,
        "errors": sorted({t.error for t in timings if t.error})[:3],  # a sample of why requests failed
    }


def meets_slo(summary: dict, ttft_p99_ms: float, tpot_p99_ms: float) -> bool:
    """p99 TTFT and p99 TPOT within the targets, and no failed request."""
    ttft, tpot = summary.get("ttft_ms"), summary.get("tpot_ms")
    if not ttft or summary.get("n_failed", 0):
        return False
    return ttft["p99"] <= ttft_p99_ms and (tpot is None or tpot["p99"] <= tpot_p99_ms)


def best_at_slo(points: list[dict], ttft_p99_ms: float, tpot_p99_ms: float) -> dict | None:
    """The load point with the highest output-token throughput that meets the SLO, or None."""
    meeting = [p for p in points if meets_slo(p, ttft_p99_ms, tpot_p99_ms)]
    return max(meeting, key=lambda p: p["throughput_output_tokens_s"]) if meeting else None
