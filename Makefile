# The two commands of the README: `make demo` and `make test`. Both run the idempotent setup first.
SWIFT ?= swift
SAMPLE ?= Samples/bccd-wbc-mini
export OMP_NUM_THREADS ?= $(shell nproc)

.PHONY: setup build demo test bench crosslab clean

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

crosslab: build
	scripts/crosslab.sh

clean:
	rm -rf .build
