# The two commands of the README: `make demo` and `make test`. Both run the idempotent setup first.
SWIFT ?= swift
SAMPLE ?= Samples/bccd-wbc-mini
export OMP_NUM_THREADS ?= $(shell nproc)

.PHONY: setup build demo test bench fuzz crosslab generalise clean

setup:
	@scripts/setup.sh

build: setup
	$(SWIFT) build -c release --product petri

demo: build
	@mkdir -p out
	$(SWIFT) run -c release --skip-build petri study $(SAMPLE) --sizes 5,all --seeds 0,1 --out out/demo-report.html

test: setup
	$(SWIFT) build --product petri
	$(SWIFT) test

bench: build
	scripts/bench.sh

# Mutants of every format Petri reads (10,000 by default: make fuzz FUZZ_COUNT=N); fails on a crash, a hang,
# memory over 2 GiB or a bad output.
FUZZ_COUNT ?= 10000
fuzz: setup
	$(SWIFT) build -c release --product petri-fuzz
	.build/release/petri-fuzz --count $(FUZZ_COUNT)

crosslab: build
	scripts/crosslab.sh

# `auto` on every labelled set in $$PETRI_DATASETS, its rules replayed leave-one-dataset-out (docs/results.md).
generalise: build
	scripts/generalise.sh

clean:
	rm -rf .build
