.PHONY: run test

## Runs the whole pipeline locally (Ctrl-C stops everything it started).
run:
	@scripts/run

## Runs the tests, setting up what they need first.
test:
	@scripts/test
