# videogen — every target installs what it needs first, so each works on a fresh clone by itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNS ?= runs

.PHONY: setup lint format test test-fast data demo pretrained train-tokenizer train-lm sample continue bench bench-peer gpu-offline gpu-check clean

## setup: a local virtual environment with videogen installed editable (idempotent).
setup: $(STAMP)
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

## lint: ruff's formatter check, lint and import order (configured in pyproject.toml); `make format` fixes
## what it can. `make test` runs it first.
lint: setup
	$(VENV)/bin/ruff format --check --quiet . || { echo "lint: run 'make format' to reformat"; exit 1; }
	$(VENV)/bin/ruff check --quiet .

format: setup
	$(VENV)/bin/ruff format --quiet .
	$(VENV)/bin/ruff check --quiet --fix .

## test: the whole suite (budget: 15 minutes on 2 CPU cores), TEST_WORKERS processes, one module each at a time
## (module fixtures stay in one process); TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
test: setup lint
	$(PY) -m pytest tests --durations=15 $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

## test-fast: skip tests marked slow.
test-fast: setup
	$(PY) -m pytest tests -m 'not slow'

## data: render a preview of the built-in world (GIF grid + captions) into $(RUNS)/preview.
data: setup
	$(VENV)/bin/videogen preview --out $(RUNS)/preview --resolution 64 --num 16

## bench-data: input pipeline throughput at 64x64x17.
bench-data: setup
	$(VENV)/bin/videogen bench-data --resolution 64 --num-frames 17

## train-tokenizer: the causal 3D CNN tokenizer on the built-in world (64×64×17 by default; resumes
## from $(RUNS)/tokenizer). CPU: `make train-tokenizer TOKENIZER_CONFIG=experiments/tokenizer_world.py:tiny`.
## Any field: `make train-tokenizer ARGS="--config.steps=500 --config.quantizer.kind=fsq"`.
TOKENIZER_CONFIG ?= experiments/tokenizer_world.py
train-tokenizer: setup
	$(PY) -m tokenizer.train --config $(TOKENIZER_CONFIG) --workdir $(RUNS)/tokenizer $(ARGS)

## train-lm: the text-to-video transformer on codes of the tokenizer in $(RUNS)/tokenizer.
LM_CONFIG ?= experiments/lm_world.py
train-lm: setup
	$(PY) -m videogen.train --config $(LM_CONFIG) --workdir $(RUNS)/lm --config.tokenizer_workdir=$(RUNS)/tokenizer $(ARGS)

## sample: videos from the LM in $(RUNS)/lm, or from the pretrained model shipped in the package while there
## is none (it says which): `make sample PROMPT="a small red circle moves to the left"`.
PROMPT ?= a small red circle moves to the left
LM_WORKDIR_ARG = $(if $(wildcard $(RUNS)/lm/config.json),--workdir $(RUNS)/lm)
sample: setup
	$(VENV)/bin/videogen sample $(LM_WORKDIR_ARG) --prompt "$(PROMPT)" --num 4 $(ARGS)

## demo (<= 10 min on 2 cores): the pretrained model shipped in the package samples 16 test prompts (judged) and
## one long video (16x the training length) with its drift plot, in $(RUNS)/demo/shipped; then a fresh tiny
## tokenizer + tiny LM train on the built-in world at 32×32 for the rest of the 10 minutes, their samples and
## score beside the shipped one's in $(RUNS)/demo. `DEMO_ARGS="--tokenizer-steps N --lm-steps M"` fixes the
## step counts (time for quality, see README); `--no-pretrained` skips the shipped model's part.
DEMO_ARGS ?=
demo: setup
	$(PY) -m videogen.generate demo --workdir $(RUNS)/demo $(DEMO_ARGS)

## continue: long videos from the LM in $(RUNS)/lm (the shipped pretrained model while there is none; it says which)
## by sliding-window continuation over latent tokens: LENGTH_FACTOR x the training length (16: 257 frames) for
## PROMPT, into $(RUNS)/lm/continue (runs/shipped/continue for the shipped model).
## `make continue VIDEO=clip.mp4` continues a video file (its frames kept unchanged);
## `ARGS="--drift --num 32"` measures drift on world test prompts (drift.json + drift.png);
## `ARGS="--drift --truth"` runs that measurement on ground truth (no model); `ARGS=--bench` times it.
LENGTH_FACTOR ?= 16
continue: setup
	$(VENV)/bin/videogen continue $(LM_WORKDIR_ARG) --prompt "$(PROMPT)" --length-factor $(LENGTH_FACTOR) $(if $(VIDEO),--video "$(VIDEO)") $(ARGS)

## pretrained: reproduce the pretrained model shipped in videogen/pretrained_data/tiny from scratch, with the
## commands and seeds of its manifest, into $(RUNS)/pretrained (tokenizer/, lm/, model/), then evaluate it as
## the shipped one was and print both sets of figures side by side (time: see README "Pretrained model").
## Refresh the shipped copy from trained workdirs without retraining:
## `$(PY) experiments/pretrained.py --pack-into videogen/pretrained_data/tiny --tokenizer-workdir T --lm-workdir L`.
pretrained: setup
	$(PY) experiments/pretrained.py --out $(RUNS)/pretrained $(ARGS)

## bench: this machine's measured matmul peak and memory bandwidth, tokenizer and LM train/encode/decode/
## sampling throughput (MFU, AR vs the bandwidth bound), MaskGIT s/clip, pipeline clips/s, peak memory.
## CPU always, and the GPU in bf16 when there is one; table on stdout, JSON in $(RUNS)/bench.json.
bench: setup
	$(PY) -m videogen.bench --out $(RUNS)/bench.json $(ARGS)

## bench-peer: the tiny LM train step (`make bench`'s LM row) against a plain PyTorch (CPU, eager) peer of the same
## step, timed back to back in one run, with the matmul peak and MFU. The peer runs in TORCH_PYTHON, a scratch env
## with torch (not a project dependency): `python3 -m venv /work/scratch/torchenv &&
## /work/scratch/torchenv/bin/pip install torch==2.13.0 numpy`, then `make bench-peer TORCH_PYTHON=/work/scratch/torchenv/bin/python`.
TORCH_PYTHON ?=
bench-peer: setup
	$(PY) -m videogen.bench_peer $(if $(TORCH_PYTHON),--torch-python $(TORCH_PYTHON)) --out $(RUNS)/bench_peer.json $(ARGS)

## gpu-offline: what experiments/gpu_check.sh needs on a GPU host without network, into .offline/ (git-ignored,
## ~57 MB): wheels of the pure-Python / small packages a CUDA JAX image may lack, built for GPU_PYTHON, and the
## converted I3D weights (the default tokenizer's perceptual loss). Copy the repo with .offline/ to the host.
GPU_PYTHON ?= 3.12
GPU_WHEELS := flax==0.12.8 optax==0.2.8 orbax-checkpoint==0.12.8 ml_collections==1.1.0 grain==0.2.18 \
	array_record==0.8.6 portpicker==1.6.0 tensorboardX==2.6.5
gpu-offline: setup
	mkdir -p .offline/wheels .offline/cache
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
		--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .offline/wheels $(GPU_WHEELS)
	VIDEOGEN_CACHE=.offline/cache $(PY) -c "from videogen.eval import fvd; fvd.load_i3d_params()"
	du -sh .offline

## gpu-check: on a GPU host: bench, GPU numerics tests, a short 64x64 tokenizer and LM run (~8 min; OUT=dir).
gpu-check:
	bash experiments/gpu_check.sh $(ARGS)

clean:
	rm -rf $(VENV) $(RUNS) *.egg-info
