# Two commands do everything on a fresh clone: `make convert` and `make test`.
# Both create .venv with the pinned stack first (only when the pins change), and .venv312,
# onnx2tf 2.x's side environment (the second converter), when a Python 3.12 is found.

PYTHON ?= python3.11
# A Python 3.12 for onnx2tf 2.x: python3.12 on PATH if it runs (a pyenv shim may refuse), else pyenv's 3.12.1,
# else pyenv's newest 3.12. PYTHON312=/path/to/python3.12 names one.
PYTHON312 ?= $(shell for c in python3.12 "$$(pyenv prefix 3.12.1 2>/dev/null)/bin/python3.12" \
	"$$(pyenv prefix $$(pyenv versions --bare 2>/dev/null | grep '^3\.12\.' | tail -1) 2>/dev/null)/bin/python3.12"; do \
	"$$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { command -v "$$c"; break; }; done)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
VENV312  := .venv312
STAMP312 := $(VENV312)/.installed
ENVS     := $(STAMP) venv312  # after STAMP: := expands it here
MODEL  ?= seed_ym
BENCH  ?=
OUT    ?=
DIST   ?= dist
OUT_ARG := $(if $(OUT),--out $(OUT),)
MODELS   ?=
JOBS     ?=
EXECUTOR ?= local
BATCH_ARGS := --executor $(EXECUTOR) $(if $(JOBS),--jobs $(JOBS),) $(if $(RESUME),--resume,)

.PHONY: venv venv312 convert test test-fast bench suite batch zoo zoo-wide package verify diagnose clean help

help:
	@echo "make convert [MODEL=seed_ym|configs name|path.yaml|path.onnx] [OUT=dir]  run every stage"
	@echo "make test                                                            run the test suite"
	@echo "make batch MODELS='seed_ym configs/zoo' [JOBS=2] [EXECUTOR=local|ray] [RESUME=1] [OUT=dir]  many models, one batch report"
	@echo "make zoo [JOBS=2] [EXECUTOR=local|ray] [RESUME=1]                   every config under configs/zoo/; report in artifacts/zoo/batch.html"
	@echo "make zoo-wide [JOBS=2] [EXECUTOR=local|ray] [RESUME=1]              54 tiny transformers architectures (configs/zoo_wide/); report in artifacts/zoo_wide/batch.md"
	@echo "make package [MODEL=...] [OUT=dir]                                  dist/<name>-<short sha>.tar.gz from the artifact folder (reproducible)"
	@echo "make verify [MODEL=...] [OUT=dir]                                   re-check manifest hashes and rerun the shipped models"
	@echo "make diagnose MODEL=... KERAS=port.keras [FIX=fixed.keras] [OUT=dir]    check a hand-written Keras port against the PyTorch model"
	@echo "make bench [BENCH='seed_ym zoo/resnet50']                           time the pipeline vs bare onnx2tf (default: seed_ym, every zoo model, resnet50_full)"
	@echo "make bench BENCH=steps                                              this round's audit steps as ratios (dynamic shapes, fp16 reference, --layers); also after the default models"

venv: $(ENVS)

# Not a file target: it looks for a Python 3.12 each time, and without one says so in one line and goes on.
venv312:
	@py="$(PYTHON312)"; \
	if [ -z "$$py" ]; then \
		echo "note: no Python 3.12 found (PYTHON312=/path/to/python3.12 names one): onnx2tf 2.x, the second converter, is not available"; \
	elif [ ! -f $(STAMP312) ] || [ requirements-onnx2tf2.txt -nt $(STAMP312) ]; then \
		echo "installing onnx2tf 2.x's side environment ($(VENV312), $$py)"; \
		{ test -x $(VENV312)/bin/python || "$$py" -m venv $(VENV312); } && \
		$(VENV312)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-onnx2tf2.txt && \
		touch $(STAMP312); \
	fi

$(STAMP): requirements.txt requirements-nodeps.txt requirements-batch.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or pass PYTHON=..."; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.txt -r requirements-batch.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

convert: $(ENVS)
	$(BIN)/python -m pipeline convert $(MODEL) $(OUT_ARG)

test: $(ENVS)
	$(BIN)/python -m pytest

test-fast: $(ENVS)
	$(BIN)/python -m pytest -m "not slow"

bench: $(ENVS)
	$(BIN)/python -m pipeline.tools.bench $(BENCH)

suite: $(ENVS)
	$(BIN)/python -m pipeline.tools.suite

batch: $(ENVS)
	@test -n "$(MODELS)" || { echo "error: MODELS is empty; e.g. make batch MODELS='seed_ym stride2_bn_eps' JOBS=2"; exit 2; }
	$(BIN)/python -m pipeline batch $(MODELS) $(BATCH_ARGS) $(OUT_ARG)

zoo: $(ENVS)
	$(BIN)/python -m pipeline batch configs/zoo $(BATCH_ARGS) --out $(if $(OUT),$(OUT),artifacts/zoo)

# Two jobs unless JOBS says otherwise: the batch's models-per-hour figure (BENCHMARKS.md) is at 2.
zoo-wide: $(ENVS)
	$(BIN)/python -m pipeline batch configs/zoo_wide --executor $(EXECUTOR) --jobs $(if $(JOBS),$(JOBS),2) $(if $(RESUME),--resume,) --out $(if $(OUT),$(OUT),artifacts/zoo_wide)

package: $(STAMP)
	$(BIN)/python -m pipeline.deploy.package $(MODEL) $(OUT_ARG) --dist $(DIST)

verify: $(STAMP)
	$(BIN)/python -m pipeline.deploy.verify $(MODEL) $(OUT_ARG)

diagnose: $(STAMP)
	@test -n "$(KERAS)" || { echo "error: KERAS is empty; e.g. make diagnose MODEL=seed_ym KERAS=port.keras [FIX=fixed.keras]"; exit 2; }
	$(BIN)/python -m pipeline diagnose $(MODEL) --keras $(KERAS) $(if $(FIX),--fix $(FIX),) $(OUT_ARG)

clean:
	rm -rf artifacts .pytest_cache
