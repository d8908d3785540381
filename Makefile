# The two commands of the README: `make demo` and `make test`. Both run the idempotent setup first.
SWIFT ?= swift
SAMPLE ?= Samples/bccd-wbc-mini
export OMP_NUM_THREADS ?= $(shell nproc)

.PHONY: setup build demo test bench clean

setup:
	@scripts/setup.sh

build: setup
	$(SWIFT) build -c release --product petri

demo: build
	$(SWIFT) run -c release --skip-build petri probe $(SAMPLE) --backbone efficientnet-lite0

test: setup
	$(SWIFT) test

bench: build
	scripts/bench.sh

clean:
	rm -rf .build
