# Two commands do everything on a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Tests run on one worker per core (pytest-xdist), at most 4; a file's tests stay on one worker, so its module
# fixtures (a trained toy run, say) are built once. PARALLEL= runs them in this process.
PARALLEL ?= -n auto --maxprocesses 4 --dist loadfile

.PHONY: run test test-fast lint bench fidelity clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

RUN_DIR ?= runs/quickstart-$(shell date +%Y%m%d-%H%M%S)

# The main job: a first run that shows safety at work (PPO-Lagrangian on SafetyPointCircle1-v0, about 9
# minutes on 2 cores; saferl/configs/quickstart.yaml says why), then its constraint-violation report.
run: $(STAMP)
	$(BIN)/saferl train --algo ppo_lag --config saferl/configs/quickstart.yaml --run-dir $(RUN_DIR)
	$(BIN)/saferl report $(RUN_DIR) --eval-episodes 5

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest tests $(PARALLEL)

# The inner loop: everything but the tests marked slow (under a minute on a quiet 2-core machine).
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest tests -m "not slow" $(PARALLEL)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/pip install --quiet -e ".[test,bench]"
	$(BIN)/saferl throughput --env SafetyHalfCheetahVelocity-v1

# Navigation against Safety-Gymnasium 1.0.0 (not part of `make test`: it builds a second environment,
# benchmarks/fidelity/.reference, on first use). Writes benchmarks/fidelity/results.md; run before a release.
fidelity: $(STAMP)
	bash benchmarks/fidelity/run.sh $(FIDELITY_ARGS)

clean:
	rm -rf $(VENV) runs reports bench-results .pytest_cache .ruff_cache
