.PHONY: run test bench

## Runs the whole pipeline locally (Ctrl-C stops everything it started).
run:
	@scripts/run

## Runs the tests, setting up what they need first.
test:
	@scripts/test

## Benchmarks with budgets: a table, bench/results/latest.json and latency.svg.
bench:
	@scripts/bench

## `sam build`'s recipe for score (BuildMethod: makefile): the binary and, beside it, the
## model that embedded scoring evaluates. LAMBDA_ARCH=x86_64 for Architecture=x86_64.
build-ScoreFunction:
	bash -c 'source scripts/lib.sh && ensure_venv && ensure_model'
	PATH="$(CURDIR)/.venv/bin:$(PATH)" cargo lambda build --release --locked -p score \
		$(if $(filter x86_64,$(LAMBDA_ARCH)),--x86-64,--arm64)
	cp target/lambda/score/bootstrap "$(ARTIFACTS_DIR)/"
	mkdir -p "$(ARTIFACTS_DIR)/ml-engine/model"
	cp ml-engine/model/model.bin ml-engine/model/metadata.json "$(ARTIFACTS_DIR)/ml-engine/model/"
