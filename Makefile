# The two commands a new user needs are `make dev` and `make test` (see README.md).
# Every target installs what it is missing first (scripts/setup.sh) and reuses what is there.

.PHONY: dev test fuzz build setup deploy fmt export-signing-key clean bench bench-hotpaths bench-big-join test-element-x appservice-register oauth-screenshots

dev:
	@bash scripts/dev.sh

test:
	@bash scripts/test.sh

# Not part of `make test` (which runs every fuzz target briefly): the property tests of every
# parser of outside input (src/fuzz/), FUZZ_CASES cases each (default 100000; about an hour
# on 2 cores, 10000 about 12 minutes). Prints the executions per target; a failure prints the shrunk input.
fuzz:
	@bash scripts/fuzz.sh

build:
	@bash scripts/setup.sh && bash scripts/build.sh

setup:
	@bash scripts/setup.sh test

deploy: build
	@bash -c 'source scripts/env.sh && cd "$$ROOT" && wrangler d1 migrations apply DB --remote && MATRIX_EDGE_PREBUILT=1 wrangler deploy'

fmt:
	cargo fmt

# Prints the signing key in Synapse's key-file format. LOCAL_STATE=dir for a `make dev` instance,
# otherwise the deployed database (needs `wrangler login`).
export-signing-key:
	@bash scripts/export-signing-key.sh

# Stores or replaces application service registrations in the deployed D1 (needs `wrangler
# login`): make appservice-register APPSERVICE_CONFIG=bridge.yaml[,other.yaml]. No redeploy.
appservice-register:
	@bash scripts/setup.sh && bash scripts/appservice.sh remote "$(APPSERVICE_CONFIG)"

clean:
	rm -rf build target .wrangler

# Not part of `make test`: our Worker next to a Synapse from PyPI, about 5-10 minutes; writes
# docs/benchmarks.md (see README "Benchmarks").
bench:
	@bash scripts/setup.sh test && bash scripts/build.sh && MATRIX_EDGE_PREBUILT=1 bash -c 'source scripts/env.sh && "$$CACHE/venv/bin/python" bench/run.py'

# Only the hot-path microbenchmarks of `make bench` (wasm in Node vs native, about 2 minutes
# after the builds); writes docs/hotpaths.md.
bench-hotpaths:
	@bash scripts/setup.sh && bash -c 'source scripts/env.sh && python3 bench/hotpaths.py'

# Not part of `make test` or `make bench`: our user joins a 500-member Synapse room, with the time
# per phase, then a Synapse in our place does the same (a few minutes); writes docs/big_join.md.
bench-big-join:
	@bash scripts/setup.sh test && bash scripts/build.sh && MATRIX_EDGE_PREBUILT=1 bash -c 'source scripts/env.sh && "$$CACHE/venv/bin/python" bench/big_join.py'

# Not part of `make test`: matrix-rust-sdk (Element X's client library) logs in, runs its sync
# service over simplified sliding sync, pages a timeline, messages and decrypts, against a
# Synapse and then our Worker. The first run compiles the SDK (long on 2 cores).
test-element-x:
	@bash scripts/test_element_x.sh

# Not part of `make test`: screenshots of the OAuth pages (login, registration, account) at phone
# width in headless Chromium (Debian's `chromium` package), written to docs/oauth/.
oauth-screenshots:
	@bash scripts/setup.sh test && bash scripts/build.sh && MATRIX_EDGE_PREBUILT=1 bash -c 'source scripts/env.sh && "$$CACHE/venv/bin/python" scripts/oauth_screenshots.py'
