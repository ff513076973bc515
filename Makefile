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

## `sam build`'s recipes for score and generate (BuildMethod: makefile): the binary and,
## beside it, the model that embedded scoring evaluates and explanations take apart.
## LAMBDA_ARCH=x86_64 for Architecture=x86_64.
ENSURE_MODEL = bash -c 'source scripts/lib.sh && ensure_venv && ensure_model'
CARGO_LAMBDA = PATH="$(CURDIR)/.venv/bin:$(PATH)" cargo lambda build --release --locked \
	$(if $(filter x86_64,$(LAMBDA_ARCH)),--x86-64,--arm64)
COPY_MODEL = mkdir -p "$(ARTIFACTS_DIR)/ml-engine/model" && \
	cp ml-engine/model/model.bin ml-engine/model/metadata.json "$(ARTIFACTS_DIR)/ml-engine/model/"

build-ScoreFunction:
	$(ENSURE_MODEL)
	$(CARGO_LAMBDA) -p score
	cp target/lambda/score/bootstrap "$(ARTIFACTS_DIR)/"
	$(COPY_MODEL)

build-GenerateFunction:
	$(ENSURE_MODEL)
	$(CARGO_LAMBDA) -p generate
	cp target/lambda/generate/bootstrap "$(ARTIFACTS_DIR)/"
	$(COPY_MODEL)
