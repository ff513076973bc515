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
## score's shadow model (the template's ShadowScoring), when ml-engine/shadow-model/ is there:
## its metadata.json and its compiled model.bin if it has one, else its model.json.
COPY_SHADOW_MODEL = if [ -d ml-engine/shadow-model ]; then \
	mkdir -p "$(ARTIFACTS_DIR)/ml-engine/shadow-model" && \
	cp ml-engine/shadow-model/metadata.json \
		"$$(ls ml-engine/shadow-model/model.bin 2>/dev/null || echo ml-engine/shadow-model/model.json)" \
		"$(ARTIFACTS_DIR)/ml-engine/shadow-model/"; fi

build-ScoreFunction:
	$(ENSURE_MODEL)
	$(CARGO_LAMBDA) -p score
	cp target/lambda/score/bootstrap "$(ARTIFACTS_DIR)/"
	$(COPY_MODEL)
	$(COPY_SHADOW_MODEL)

build-GenerateFunction:
	$(ENSURE_MODEL)
	$(CARGO_LAMBDA) -p generate
	cp target/lambda/generate/bootstrap "$(ARTIFACTS_DIR)/"
	$(COPY_MODEL)

## `sam build`'s recipe for the ML engine's function (BuildMethod: makefile): the engine's
## run-time packages as manylinux wheels for Lambda's python3.12 and architecture (whatever this
## machine's Python), without bytecode (this machine's would not be 3.12's), then the app and
## the model. LAMBDA_ARCH=x86_64 for Architecture=x86_64. Prints the unzipped size, whose
## limit on Lambda is 262,144,000 bytes.
build-MlEngineFunction:
	$(ENSURE_MODEL)
	"$(CURDIR)/.venv/bin/pip" install --quiet --disable-pip-version-check --no-compile \
		--target "$(ARTIFACTS_DIR)" --implementation cp --python-version 3.12 --only-binary=:all: \
		$(if $(filter x86_64,$(LAMBDA_ARCH)),--platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64,--platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64) \
		-r ml-engine/requirements-lambda.txt
	cp ml-engine/app.py ml-engine/model_core.py ml-engine/lambda_handler.py "$(ARTIFACTS_DIR)/"
	mkdir -p "$(ARTIFACTS_DIR)/model"
	cp ml-engine/model/model.json ml-engine/model/metadata.json "$(ARTIFACTS_DIR)/model/"
	@du -sb --apparent-size "$(ARTIFACTS_DIR)" | awk '{printf "ML engine package: %d bytes unzipped\n", $$1}'
