# The two commands a newcomer needs: `make run` and `make test`.
.PHONY: run down test lint status install bench bench-full demo docs

run: ## start the stack and the platform, print how to use it
	dev/platform.sh up

demo: run ## run the walkthrough by itself: log in, submit, poll, download
	dev/demo.sh

down: ## stop everything `make run` or `make test` started
	dev/platform.sh down

test: ## start the stack if needed, lint, run every test
	dev/test.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

docs: ## regenerate docs/openapi.json, docs/settings.json and the settings table of docs/configuration.md
	LZ_BLESS=1 cargo test -q -p lanzadera-e2e --test generated_docs

status:
	dev/stack.sh status

install: ## install the pinned local servers into ~/.cache/lanzadera
	dev/install.sh all

bench: ## short benchmark (about 4 min after the release build), for before/after comparisons; report in target/bench/
	bench/bench.sh short

bench-full: ## the published figures: docs/benchmarks.md (Harness section) and docs/bench/latest.json
	bench/bench.sh full
