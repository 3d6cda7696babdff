"""Streaming latency definitions, SLO search and TCO arithmetic on hand-computed cases."""

from __future__ import annotations

import pytest

from bench import tco
from bench.measure.streaming import RequestTiming, best_at_slo, meets_slo, summarize_requests


def test_request_metrics_from_a_hand_made_stream():
    # sent at 10.0; chunks at 10.2, 10.25, 10.35, 10.40; stream ends at 10.40; 4 tokens
    t = RequestTiming(send_s=10.0, chunk_s=[10.2, 10.25, 10.35, 10.40], end_s=10.40, output_tokens=4)
    assert t.ttft_s() == pytest.approx(0.2)
    assert t.e2e_s() == pytest.approx(0.4)
    assert t.tpot_s() == pytest.approx((0.4 - 0.2) / 3)
    assert t.itl_s() == pytest.approx([0.05, 0.10, 0.05])
    assert RequestTiming(0.0, [0.1], 0.1, output_tokens=1).tpot_s() is None  # one token: no TPOT


def test_summary_pools_itl_and_counts_failures_apart():
    a = RequestTiming(0.0, [0.1, 0.2, 0.4], 0.4, output_tokens=3)    # ttft 100, tpot 150, itl 100, 200
    b = RequestTiming(0.5, [0.8, 0.9], 1.0, output_tokens=2)         # ttft 300, tpot 200, itl 100
    failed = RequestTiming(0.2, [], None, error="HTTP 500")
    s = summarize_requests([a, b, failed], window_s=1.0)
    assert s["n_requests"] == 2 and s["n_failed"] == 1
    assert s["ttft_ms"]["n"] == 2 and s["ttft_ms"]["p50"] == pytest.approx(200.0)
    assert s["tpot_ms"]["p50"] == pytest.approx(175.0)
    assert s["itl_ms"]["n"] == 3 and s["itl_ms"]["p50"] == pytest.approx(100.0)
    assert s["e2e_ms"]["p99"] == pytest.approx(400 + (500 - 400) * 0.99)  # e2e 400 and 500 ms
    assert s["output_tokens"] == 5 and s["throughput_output_tokens_s"] == pytest.approx(5.0)
    assert s["output_tokens_source"] == "server usage"
    b.tokens_from_usage = False
    assert summarize_requests([a, b], 1.0)["output_tokens_source"] == "tokenizer (estimated)"


def test_slo_search_picks_the_fastest_point_that_meets_both_targets():
    def point(ttft_p99, tpot_p99, tps, failed=0):
        return {"ttft_ms": {"p99": ttft_p99}, "tpot_ms": {"p99": tpot_p99}, "throughput_output_tokens_s": tps,
                "n_failed": failed}

    points = [point(300, 40, 50), point(900, 80, 120), point(2500, 90, 200), point(800, 150, 180),
              point(500, 50, 150, failed=1)]
    assert meets_slo(points[1], 2000, 100) and not meets_slo(points[2], 2000, 100)
    assert not meets_slo(points[3], 2000, 100) and not meets_slo(points[4], 2000, 100)
    assert best_at_slo(points, 2000, 100)["throughput_output_tokens_s"] == 120
    assert best_at_slo(points, 500, 30) is None


def test_usd_per_1m_output_tokens():
    # $3.60/h on 1 device at 100 tokens/s: 360,000 tokens per $3.60 -> $10 per 1M tokens
    assert tco.usd_per_1m_output_tokens(3.6, 1, 100.0) == pytest.approx(10.0)
    assert tco.usd_per_1m_output_tokens(3.6, 2, 100.0, utilization=0.5) == pytest.approx(40.0)
    with pytest.raises(ValueError):
        tco.usd_per_1m_output_tokens(3.6, 1, 0.0)


TRAFFIC = {"requests_per_day": 864_000, "input_tokens": 200, "output_tokens": 50, "peak_to_average": 3.0,
           "months": 12}


def test_self_hosted_tco():
    # avg = 864,000 / 86,400 = 10 requests/s; peak 30; capacity 8 per replica -> 4 replicas (32 provisioned)
    out = tco.self_hosted(TRAFFIC, capacity_requests_s=8.0, usd_per_hour=2.0, devices=1, train_usd=100.0)
    assert out["avg_requests_s"] == pytest.approx(10.0) and out["peak_requests_s"] == pytest.approx(30.0)
    assert out["replicas"] == 4
    assert out["utilization"] == pytest.approx(10 / 32)
    assert out["serve_usd_per_month"] == pytest.approx(4 * 2.0 * 730)
    assert out["usd"] == pytest.approx(100 + 4 * 2.0 * 730 * 12)
    exact = tco.self_hosted(TRAFFIC, capacity_requests_s=30.0, usd_per_hour=2.0, devices=2, train_usd=0.0)
    assert exact["replicas"] == 1  # peak exactly at capacity needs no second replica
    assert exact["serve_usd_per_month"] == pytest.approx(2 * 2.0 * 730)  # 2 devices per replica


def test_api_cost_and_break_even():
    bill = tco.api(TRAFFIC, {"usd_per_1m_input": 1.0, "usd_per_1m_output": 4.0})
    assert bill["usd_per_request"] == pytest.approx((200 * 1 + 50 * 4) / 1e6)
    assert bill["serve_usd_per_month"] == pytest.approx(400e-6 * 864_000 * 365 / 12)
    # half the input billed at the cached price: 100 x 1.0 + 100 x 0.25 + 50 x 4 = 325 per 1M
    cached = tco.api({**TRAFFIC, "cached_input_fraction": 0.5},
                     {"usd_per_1m_input": 1.0, "usd_per_1m_cached_input": 0.25, "usd_per_1m_output": 4.0})
    assert cached["usd_per_request"] == pytest.approx(325e-6)
    no_cache_price = tco.api({**TRAFFIC, "cached_input_fraction": 0.5}, {"usd_per_1m_input": 1.0, "usd_per_1m_output": 4.0})
    assert no_cache_price["usd_per_request"] == pytest.approx(400e-6)  # no cached price: full input price
    a = {"train_usd": 1000.0, "serve_usd_per_month": 100.0}   # dear to train, cheap to serve
    b = {"train_usd": 100.0, "serve_usd_per_month": 400.0}
    assert tco.break_even_months(a, b) == pytest.approx(3.0)  # 1000 + 100m = 100 + 400m at m = 3
    assert tco.break_even_months(b, a) == pytest.approx(3.0)
    assert tco.break_even_months(a, {"train_usd": 2000.0, "serve_usd_per_month": 100.0}) is None


def test_poisson_arrivals_have_the_asked_rate():
    from bench.loadtest import arrival_offsets

    offsets = arrival_offsets(4000, rate=5.0, burstiness=1.0, seed=1)
    gaps = [b - a for a, b in zip(offsets, offsets[1:])]
    assert offsets[0] == 0.0 and all(g > 0 for g in gaps)
    assert sum(gaps) / len(gaps) == pytest.approx(0.2, rel=0.05)  # mean gap = 1 / rate
    bursty = arrival_offsets(4000, rate=5.0, burstiness=0.25, seed=1)
    bgaps = [b - a for a, b in zip(bursty, bursty[1:])]
    assert sum(bgaps) / len(bgaps) == pytest.approx(0.2, rel=0.15)  # same rate...
    var = lambda xs: sum((x - sum(xs) / len(xs)) ** 2 for x in xs) / len(xs)  # noqa: E731
    assert var(bgaps) > 2 * var(gaps)  # ...but burstier: gamma variance = mean^2 / shape


def _sse_server(events: list[tuple[float, dict]], status: int = 200):
    """A local HTTP server that streams the given (delay_s, event) pairs as server-sent events."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # chunked transfer encoding, as streaming servers send

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            import time as _t

            for delay, event in events:
                _t.sleep(delay)
                self._chunk(b"data: " + json.dumps(event).encode() + b"\n\n")
            self._chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


import json  # noqa: E402


def test_streaming_client_times_chunks_and_reads_usage():
    import requests

    from bench.loadtest import stream_completion

    events = [(0.10, {"choices": [{"text": "Hel"}]}), (0.05, {"choices": [{"text": ""}]}),  # empty: not a token
              (0.05, {"choices": [{"text": "lo"}]}), (0.05, {"choices": [{"text": "!"}]}),
              (0.0, {"choices": [], "usage": {"completion_tokens": 3, "prompt_tokens": 5}})]
    server = _sse_server(events)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        t = stream_completion(requests.Session(), url, "m", "hi", 8)
        assert t.ok and t.output_tokens == 3 and t.tokens_from_usage and len(t.chunk_s) == 3
        assert 0.09 <= t.ttft_s() < 0.5
        assert t.itl_s()[0] >= 0.09  # the empty chunk in between is not a token
        assert t.tpot_s() == pytest.approx((t.e2e_s() - t.ttft_s()) / 2)
    finally:
        server.shutdown()
    failing = _sse_server([], status=500)
    try:
        t = stream_completion(requests.Session(), f"http://127.0.0.1:{failing.server_address[1]}", "m", "hi", 8)
        assert not t.ok and t.error.startswith("HTTP 500")
    finally:
        failing.shutdown()
