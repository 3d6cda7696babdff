"""bench.vllm_compare: the workload, the verdicts and the reading of vLLM's result JSON (no vLLM needed)."""

from __future__ import annotations

import math

import pytest

from bench import vllm_compare as vc


def test_random_token_prompts_are_deterministic_and_exact_length():
    a = vc.random_token_prompts(1000, 5, 64, seed=3, exclude_ids={0, 1, 2})
    assert a == vc.random_token_prompts(1000, 5, 64, seed=3, exclude_ids={0, 1, 2})
    assert a != vc.random_token_prompts(1000, 5, 64, seed=4, exclude_ids={0, 1, 2})
    assert len(a) == 5 and all(len(p) == 64 for p in a)
    assert all(isinstance(t, int) and 0 <= t < 1000 for p in a for t in p)
    assert len({tuple(p) for p in a}) == 5  # distinct prompts


def test_random_token_prompts_never_use_excluded_ids():
    excluded = set(range(0, 10)) | {500}
    prompts = vc.random_token_prompts(20, 50, 40, seed=0, exclude_ids=excluded)
    used = {t for p in prompts for t in p}
    assert not used & excluded
    assert used == set(range(10, 20))  # 2,000 draws over 10 allowed ids reach every one


def test_random_token_prompts_bad_input():
    with pytest.raises(ValueError):
        vc.random_token_prompts(3, 1, 4, seed=0, exclude_ids={0, 1, 2})
    with pytest.raises(ValueError):
        vc.random_token_prompts(10, 1, 0, seed=0)


def test_verdict_on_hand_computed_medians():
    ok = vc.verdict([100.0, 90.0, 130.0], [105.0, 200.0, 95.0])  # medians 100 and 105
    assert ok["vllm_median"] == 100.0 and ok["harness_median"] == 105.0
    assert ok["ratio"] == pytest.approx(1.05) and ok["pass"]
    bad = vc.verdict([100.0, 100.0, 100.0], [120.0, 120.0, 120.0])
    assert bad["ratio"] == pytest.approx(1.2) and not bad["pass"]
    assert not vc.verdict([100.0] * 3, [85.0] * 3)["pass"]
    assert vc.verdict([100.0] * 3, [110.0] * 3)["pass"]  # the bounds are inside (110/100 is 1.1000000000000001)
    assert vc.verdict([100.0] * 3, [90.0] * 3)["pass"]
    zero = vc.verdict([0.0] * 3, [1.0] * 3)
    assert math.isnan(zero["ratio"]) and not zero["pass"]


def test_compare_takes_each_figure_over_rounds():
    def fig(ttft, tpot, tps):
        return {"ttft_p50_ms": ttft, "tpot_p50_ms": tpot, "output_tok_s": tps}

    rounds = [{"vllm": fig(100, 20, 50), "harness": fig(104, 30, 50)},
              {"vllm": fig(200, 20, 50), "harness": fig(96, 30, 55)},
              {"vllm": fig(100, 20, 50), "harness": fig(100, 30, 45)}]
    out = vc.compare(rounds)
    assert out["ttft_p50_ms"]["ratio"] == pytest.approx(1.0) and out["ttft_p50_ms"]["pass"]
    assert out["tpot_p50_ms"]["ratio"] == pytest.approx(1.5) and not out["tpot_p50_ms"]["pass"]
    assert out["output_tok_s"]["ratio"] == pytest.approx(1.0) and out["output_tok_s"]["pass"]
    table = vc.format_table([{**r, "vllm": {**r["vllm"], "completed": 3, "failed": 0},
                              "harness": {**r["harness"], "completed": 3, "failed": 0}} for r in rounds], out)
    assert "FAIL" in table and "PASS" in table and table.count("ratio") == 5


def test_vllm_figures_from_a_result_json():
    result = {"date": "20250101-000000", "backend": "vllm", "num_prompts": 48, "duration": 12.5,
              "completed": 48, "failed": 0, "total_input_tokens": 3072, "total_output_tokens": 1536,
              "request_throughput": 3.84, "output_throughput": 122.88, "total_token_throughput": 368.64,
              "mean_ttft_ms": 190.0, "median_ttft_ms": 181.5, "std_ttft_ms": 20.0, "p50_ttft_ms": 181.5,
              "p99_ttft_ms": 300.0, "mean_tpot_ms": 26.0, "median_tpot_ms": 25.25, "p99_tpot_ms": 31.0,
              "median_itl_ms": 24.0, "median_e2el_ms": 980.0}
    fig = vc.vllm_figures(result)
    assert fig == {"ttft_p50_ms": 181.5, "tpot_p50_ms": 25.25, "output_tok_s": 122.88, "completed": 48,
                   "failed": 0, "output_tokens": 1536, "mean_prompt_tokens": 64.0, "duration_s": 12.5}


def test_harness_figures_from_a_run_load_summary():
    summary = {"n_requests": 48, "n_failed": 0, "ttft_ms": {"p50": 180.0, "n": 48}, "tpot_ms": {"p50": 25.0, "n": 48},
               "output_tokens": 1536, "window_s": 12.0, "throughput_output_tokens_s": 128.0}
    fig = vc.harness_figures(summary)
    assert (fig["ttft_p50_ms"], fig["tpot_p50_ms"], fig["output_tok_s"], fig["completed"]) == (180.0, 25.0, 128.0, 48)


def test_vllm_bench_command_has_the_workload():
    args = vc.parse_args(["--vllm-python", __file__, "--input-len", "32", "--output-len", "8", "--concurrency", "2",
                          "--num-prompts", "10", "--seed", "7", "--warmups", "3"])
    cmd = vc.vllm_bench_command(args.vllm_python, "http://127.0.0.1:1", "/m", args, "/tmp", "r.json")

    def value(flag):
        return cmd[cmd.index(flag) + 1]

    assert (value("--random-input-len"), value("--random-output-len"), value("--max-concurrency"),
            value("--num-prompts"), value("--seed"), value("--num-warmups")) == ("32", "8", "2", "10", "7", "3")
    assert value("--backend") == "vllm" and value("--dataset-name") == "random" and value("--temperature") == "0"
    assert value("--random-range-ratio") == "0" and value("--request-rate") == "inf" and "--ignore-eos" in cmd


@pytest.mark.parametrize("argv, message", [
    (["--rounds", "2"], "--rounds must be at least 3 (got 2)"),
    (["--output-len", "1"], "--output-len must be at least 2"),
    (["--concurrency", "0"], "--concurrency must be at least 1 (got 0)"),
    (["--num-prompts", "x"], "argument --num-prompts: invalid int value: 'x'"),
    (["--vllm-python", "/nope/python"], "--vllm-python: '/nope/python' not found"),
])
def test_bad_input_is_one_line_naming_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        vc.parse_args(["--vllm-python", __file__, *argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and err.count("\n") == 1
