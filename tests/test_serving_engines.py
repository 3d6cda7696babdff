"""Serving settings (SLO presets, load modes, traffic), the SLO cost basis of a variant, and the
``openai`` engine run end to end against a local streaming endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench import plan, record, runner, tco
from bench.config import ConfigError, from_dict, output_tokens
from bench.serve_vllm import section
from tests.test_causal import causal_config, smol_tokenizer_dir, tiny_llama_dir, tok  # noqa: F401 (fixtures)
from tests.test_serving_math import _sse_server


def serving_raw(make_config, **serve):
    raw = make_config(task="causal_lm")
    raw["prompt"] = {"template": "Review: {text}\nPositive or negative?",
                     "label_words": {"fresh": "positive", "rotten": "negative"}}
    raw["serve"] = {"engine": "vllm", "vllm_python": sys.executable, **serve}
    return raw


def test_slo_presets_and_custom_targets(make_config):
    assert from_dict(serving_raw(make_config)).serve.slo == {"preset": "default", "ttft_p99_ms": 2000.0,
                                                             "tpot_p99_ms": 100.0}
    assert from_dict(serving_raw(make_config, slo="interactive")).serve.slo == {
        "preset": "interactive", "ttft_p99_ms": 500.0, "tpot_p99_ms": 30.0}
    custom = from_dict(serving_raw(make_config, slo={"ttft_p99_ms": 800})).serve.slo
    assert custom == {"preset": "custom", "ttft_p99_ms": 800.0, "tpot_p99_ms": 100.0}  # TPOT from the default
    tighter = from_dict(serving_raw(make_config, slo={"preset": "interactive", "tpot_p99_ms": 20})).serve.slo
    assert tighter == {"preset": "interactive", "ttft_p99_ms": 500.0, "tpot_p99_ms": 20.0}  # TTFT from the preset


@pytest.mark.parametrize("serve, message", [
    ({"slo": "interactiv"}, "serve.slo: unknown preset 'interactiv'.*did you mean 'interactive'"),
    ({"slo": {"ttft_p99": 500}}, "serve.slo.ttft_p99: unknown key"),
    ({"slo": {"tpot_p99_ms": -1}}, r"serve.slo.tpot_p99_ms: must be > 0"),
    ({"slo": {"preset": "fast"}}, "serve.slo.preset: unknown preset 'fast'"),
    ({"n_requests": 64}, "serve.n_requests: 64 is under 100 measured requests; set serve.allow_few_requests"),
    ({"load": "burst"}, "serve.load: must be one of concurrency, poisson, offline"),
    ({"rates": [1.0, 0]}, "serve.rates: must be a non-empty list of positive requests/s"),
    ({"burstiness": 0}, "serve.burstiness: must be > 0"),
    ({"variants": ["base", "quantised"]}, "serve.variants: a list of base, unmerged, merged, quantized"),
    ({"engine": "openai"}, "serve.base_url: engine openai needs the endpoint's http"),
    ({"engine": "openai", "base_url": "localhost:8000", "model_name": "m"}, "serve.base_url: engine openai needs"),
    ({"engine": "openai", "base_url": "http://127.0.0.1:8000"}, "serve.model_name: engine openai needs"),
])
def test_serving_config_errors_name_the_key(make_config, serve, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(serving_raw(make_config, **serve))


@pytest.mark.parametrize("traffic, message", [
    ({"requests_per_day": 0}, "traffic.requests_per_day: must be > 0"),
    ({"peak_to_average": 0.5}, r"traffic.peak_to_average: must be >= 1"),
    ({"cached_input_fraction": 1.5}, r"traffic.cached_input_fraction: must be in \[0, 1\]"),
    ({"month": 3}, "traffic.month: unknown key.*did you mean 'months'"),
])
def test_traffic_errors_name_the_key(make_config, traffic, message):
    raw = make_config()
    raw["traffic"] = traffic
    with pytest.raises(ConfigError, match=message):
        from_dict(raw)


def test_load_test_length_defaults_to_the_traffic(make_config):
    raw = serving_raw(make_config)
    raw["traffic"] = {"output_tokens": 24}
    assert output_tokens(from_dict(raw)) == 24
    raw["serve"]["output_tokens"] = 8
    assert output_tokens(from_dict(raw)) == 8


def _point(concurrency, ttft_p99, tpot_p99, tokens_s, rps, failed=0):
    return {"mode": "concurrency", "concurrency": concurrency, "rate": None, "n_requests": 100, "n_failed": failed,
            "ttft_ms": {"p50": ttft_p99 / 2, "p99": ttft_p99}, "tpot_ms": {"p50": tpot_p99 / 2, "p99": tpot_p99},
            "itl_ms": None, "e2e_ms": {"p50": 1.0, "p99": 2.0}, "output_tokens_source": "server usage",
            "throughput_output_tokens_s": tokens_s, "requests_per_s": rps}


def test_cost_basis_is_the_fastest_point_within_the_slo(make_config):
    cfg = from_dict(serving_raw(make_config, slo="interactive"))  # 500 ms TTFT, 30 ms TPOT
    points = [_point(1, 100, 20, 40.0, 2.5), _point(2, 200, 28, 72.0, 4.5),
              _point(4, 300, 45, 120.0, 7.5),           # misses the TPOT target
              _point(8, 250, 25, 150.0, 9.4, failed=1)]  # a failed request: not within the SLO
    out = section("vllm", "merged", points, cfg, usd_per_hour=3.6, devices=1)
    assert out["cost_basis"] == "concurrency=2" and out["cost_basis_meets_slo"]
    assert out["capacity_requests_s"] == 4.5 and out["throughput_output_tokens_s"] == 72.0
    # $3.60/h at 72 tokens/s: 259,200 tokens per $3.60 -> $13.89 per 1M; at 30% utilization 3.33x that
    assert out["usd_per_1m_output_tokens"] == pytest.approx(3.6 / (3600 * 72) * 1e6)
    assert out["usd_per_1m_output_tokens_at_utilization"]["0.3"] == pytest.approx(3.6 / (3600 * 72 * 0.3) * 1e6)
    assert set(out["by_load_point"]) == {"concurrency=1", "concurrency=2", "concurrency=4", "concurrency=8"}
    none_meet = section("vllm", "merged", [_point(1, 900, 20, 40.0, 2.5)], cfg, usd_per_hour=3.6, devices=1)
    assert none_meet["cost_basis"] == "concurrency=1" and not none_meet["cost_basis_meets_slo"]


def test_leaderboard_traffic_flag(tmp_path):
    from bench.cli import parse_traffic

    assert parse_traffic("requests_per_day=5e6, months=24,output_tokens=32") == {
        "requests_per_day": 5e6, "months": 24.0, "output_tokens": 32}
    for bad, message in (("request_per_day=5", "did you mean 'requests_per_day'"),
                         ("months", "is not KEY=VALUE"), ("months=soon", "months must be a number"),
                         ("months=nan", "months must be a finite number"), ("requests_per_day=1e400", "finite"),
                         ("input_tokens=1.5", "input_tokens must be a whole number of tokens"),
                         ("months=1,months=2", "months given twice"),
                         ("peak_to_average=0.5", "--traffic: peak_to_average: must be >= 1")):
        with pytest.raises(ConfigError, match=message):
            parse_traffic(bad)
    (tmp_path / "runs").mkdir()
    out = subprocess.run([sys.executable, "-m", "bench", "leaderboard", "--results", str(tmp_path),
                          "--traffic", "months=-1"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip() == "bench: error: --traffic: months: must be > 0 (got -1.0)"
    assert not (tmp_path / "leaderboard.md").exists()


def test_openai_engine_measures_a_running_endpoint(make_config, tiny_llama_dir, tmp_path, monkeypatch):
    """A tiny run served by an OpenAI-compatible endpoint: the same client, SLO search and TCO."""
    events = [(0.02, {"choices": [{"text": " positive"}]}), (0.01, {"choices": [{"text": " it"}]}),
              (0.01, {"choices": [{"text": " is"}]}), (0.0, {"choices": [], "usage": {"completion_tokens": 3}})]
    server = _sse_server(events)
    seen = server.seen = []
    handler = server.RequestHandlerClass
    original = handler.do_POST

    def recording(self):
        seen.append(self.headers.get("Authorization"))
        original(self)

    handler.do_POST = recording
    monkeypatch.setenv("BENCH_TEST_KEY", "sk-test-123")
    url = f"http://127.0.0.1:{server.server_address[1]}"
    raw = causal_config(make_config, tiny_llama_dir, method={"name": "lora"})
    raw["serve"] = {"engine": "openai", "base_url": url, "model_name": "served", "api_key_env": "BENCH_TEST_KEY",
                    "n_requests": 6, "allow_few_requests": True, "warmup_requests": 1, "concurrency": [1, 2],
                    "output_tokens": 3}
    raw["traffic"] = {"requests_per_day": 86_400, "peak_to_average": 2.0, "months": 1}
    try:
        rec = runner.execute(plan.expand(raw)[0], tmp_path)
    finally:
        server.shutdown()
    assert rec["status"] == "ok", rec.get("error")
    serve = rec["serve"]
    assert serve["engine"] == "openai" and serve["variant"] == "endpoint" and serve["few_requests"]
    assert len(seen) == 2 * (6 + 1) and set(seen) == {"Bearer sk-test-123"}  # 2 load points, warm-up included
    for point in serve["by_load_point"].values():
        assert point["n_requests"] == 6 and point["output_tokens"] == 18 and point["n_failed"] == 0
    assert 0 < serve["ttft_ms"]["p50"] <= serve["ttft_ms"]["p99"] and serve["tpot_ms"]["p50"] > 0
    assert "sk-test-123" not in json.dumps(rec)  # the key is never recorded
    t = rec["tco"]
    expected = tco.self_hosted(rec["config"]["traffic"], serve["capacity_requests_s"], rec["cost"]["usd_per_hour"],
                               rec["cost"]["devices"], rec["cost"]["train_usd"])
    assert t["usd"] == pytest.approx(expected["usd"]) and t["replicas"] == expected["replicas"]
    record.validate(rec)
    assert os.environ["BENCH_TEST_KEY"] == "sk-test-123"


def test_leaderboard_refuses_an_output_path_that_is_not_a_file(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "leaderboard.md").write_text("kept")
    (tmp_path / "leaderboard.png").mkdir()
    out = subprocess.run([sys.executable, "-m", "bench", "leaderboard", "--results", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "leaderboard.png' is not a file" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and (tmp_path / "leaderboard.md").read_text() == "kept"


def test_endpoint_root_accepts_the_v1_convention():
    from bench.serve_vllm import endpoint_root

    assert endpoint_root("http://127.0.0.1:8000/v1/") == endpoint_root("http://127.0.0.1:8000") == "http://127.0.0.1:8000"


def test_an_unreachable_endpoint_fails_the_serve_stage_with_the_reason(make_config, tiny_llama_dir, tmp_path):
    from bench.loadtest import run_load
    from bench.serve_vllm import ServingFailed

    cfg = from_dict(serving_raw(make_config, engine="openai", base_url="http://127.0.0.1:9", model_name="m",
                                n_requests=2, allow_few_requests=True, warmup_requests=0))
    points = [run_load("http://127.0.0.1:9", "m", ["a", "b"], 3, warmup=0)["summary"]]
    assert points[0]["n_failed"] == 2 and "ConnectionError" in points[0]["errors"][0]
    with pytest.raises(ServingFailed, match=r"every request failed at concurrency=1 \(2 of 2\): ConnectionError"):
        section("openai", "endpoint", points, cfg, usd_per_hour=1.0, devices=1)


def test_an_unset_api_key_variable_stops_the_run_before_training(make_config, tiny_llama_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_NO_SUCH_KEY", raising=False)
    raw = causal_config(make_config, tiny_llama_dir)
    raw["serve"] = {"engine": "openai", "base_url": "http://127.0.0.1:9", "model_name": "m",
                    "api_key_env": "BENCH_NO_SUCH_KEY", "n_requests": 100}
    path = tmp_path / "c.yaml"
    path.write_text(__import__("yaml").safe_dump(raw))
    out = subprocess.run([sys.executable, "-m", "bench", "validate", str(path)], capture_output=True, text=True)
    assert out.returncode == 2 and "serve.api_key_env: environment variable BENCH_NO_SUCH_KEY is not set" in out.stderr


@pytest.mark.parametrize("load, labels", [("poisson", ["rate=20/s", "rate=40/s"]), ("offline", ["offline"]),
                                          ("concurrency", ["concurrency=1", "concurrency=3"])])
def test_each_load_mode_against_a_local_stream(make_config, load, labels):
    from bench.serve_vllm import load_points, point_label

    events = [(0.01, {"choices": [{"text": "a"}]}), (0.01, {"choices": [{"text": "b"}]}),
              (0.0, {"choices": [], "usage": {"completion_tokens": 2}})]
    server = _sse_server(events)
    try:
        cfg = from_dict(serving_raw(make_config, engine="openai", base_url="http://127.0.0.1:1", model_name="m",
                                    load=load, rates=[20, 40], concurrency=[1, 3], n_requests=6,
                                    allow_few_requests=True, warmup_requests=1, output_tokens=2))
        points = load_points(f"http://127.0.0.1:{server.server_address[1]}", "m", ["p"] * 6, cfg, ignore_eos=False)
    finally:
        server.shutdown()
    assert [point_label(p) for p in points] == labels
    for p in points:
        assert p["mode"] == load and p["n_requests"] == 6 and p["n_failed"] == 0 and p["output_tokens"] == 12
        assert p["warmup_requests"] == 1 and 0 < p["ttft_ms"]["p50"] <= p["ttft_ms"]["p99"]
    if load == "poisson":  # the window holds every scheduled send: it is at least the last arrival offset
        from bench.loadtest import arrival_offsets

        for p, rate in zip(points, (20.0, 40.0)):
            assert p["rate"] == rate and p["window_s"] >= arrival_offsets(6, rate, 1.0, cfg.train.seed)[-1]
