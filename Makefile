# Everything runs from the project's own virtual environment, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench bench-vacuum stress drill mutate least-privilege lint typecheck install synth clean docs

# Python caches compiled modules: without it every test worker, local stack and command
# would parse aws-cdk-lib, moto and botocore from source again (seconds each).
unexport PYTHONDONTWRITEBYTECODE

$(STAMP): requirements.txt requirements-dev.txt lambdas/requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	# the Lambda platform's wheels into pip's cache, for bundling (infra/bundling.py)
	$(BIN)/python -m infra.bundling $(VENV)/lambda-wheels
	# the types of what the project imports into mypy's cache (make test checks the rest)
	$(BIN)/python -m devstack.build.typecheck_cache
	# the bytecode of the project (pip compiles what it installs, but not an editable
	# project) and of the tests as pytest rewrites them: written once here, where the six
	# workers of a first make test, starting at once, would each compile all of it
	$(BIN)/python -m compileall -q lambdas devstack infra bench app.py
	TZ=UTC $(BIN)/pytest --collect-only -q > /dev/null
	touch $@

install: $(STAMP) ## create .venv and install everything (also the `escalator` command)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Most tests wait on real time (due times, leases, the schedule): more workers than cores.
# Eight, four per core: the long tests that mostly wait (the local stacks, the rehearsals)
# run side by side and leave the cores the short ones' work (on two cores: 104-110 s
# instead of 110-117 s with six, measured one after the other, 2026-12-07).
WORKERS ?= 8

# Where a run keeps its temporary files: in memory when the machine has room (a run
# writes about a gigabyte, mostly its embedded PostgreSQL clusters, and removing it from
# the disk took two seconds), else under /tmp.
SCRATCH_ROOT := $(shell test "$$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $$4}')" -gt 4194304 2>/dev/null && test -w /dev/shm && echo /dev/shm || echo /tmp)

# mypy (one core, most of it in aws-cdk-lib's types) runs beside the tests, which spend
# much of their time waiting on real time, at a lower priority: it takes the cycles they
# leave while they wait, never those they need; its verdict is printed after theirs.
# Each run has a temporary root of its own, for pytest and for everything its processes
# make (TMPDIR): pytest's is shared by every run of the user, and one run's clean-up
# removed another's embedded PostgreSQL while it started.
test: lint ## ruff, mypy and the whole test suite, on a real PostgreSQL
	@report=$$(mktemp); scratch=$$(mktemp -d $(SCRATCH_ROOT)/escalator-test-XXXXXX); \
	nice -n 15 $(BIN)/mypy > $$report 2>&1 & typing=$$!; \
	TZ=UTC TMPDIR=$$scratch PYTEST_DEBUG_TEMPROOT=$$scratch $(BIN)/pytest -n $(WORKERS) --dist loadgroup; tests=$$?; \
	wait $$typing; typed=$$?; echo "mypy:"; cat $$report; rm -f $$report; rm -rf $$scratch; \
	test $$tests -eq 0 -a $$typed -eq 0

demo: $(STAMP) ## the main job: the local stack runs a scripted scenario, with a summary
	TZ=UTC $(BIN)/escalator demo

BENCHES := ingest claim lateness fanout idle_cost cost local_load month

bench: $(STAMP) ## every benchmark; each prints a table and a JSON last line
	@for name in $(BENCHES); do \
		echo "== bench/$$name.py"; TZ=UTC $(BIN)/python bench/$$name.py || exit 1; \
	done

# Not in `make bench`: two runs of 1,000,000 deliveries each, the purge beside them, about 40
# minutes on two cores shared with other work (COUNT=600000: 25 minutes, the figures in
# docs/database.md#autovacuum-of-the-notification-table). COUNT=100000 runs a smaller one.
bench-vacuum: $(STAMP) ## autovacuum of the notification table: PostgreSQL's settings against sql/0012's
	TZ=UTC $(BIN)/python bench/vacuum.py $(if $(COUNT),--count $(COUNT))

stress: $(STAMP) ## the full stress suite (CI runs a reduced one inside `make test`)
	TZ=UTC ESCALATOR_STRESS=full $(BIN)/pytest -m stress tests/stress

drill: $(STAMP) ## escalator local with Lambda faults (FAULTS=0.2): a burst delivered once each
	TZ=UTC $(BIN)/python -m devstack.local.drill --faults $(or $(FAULTS),0.2) --count $(or $(COUNT),200)

# Not in `make test`: about 25 minutes (docs/mutation.md). MUTANTS='escalator.contract.*' tests those again
# (and skips the least-privilege run).
mutate: $(STAMP) ## mutation testing of the safety-critical modules (docs/mutation.md), then least-privilege
	TZ=UTC $(BIN)/python -m devstack.mutation.mutate $(MUTANTS)
	$(if $(MUTANTS),,$(MAKE) least-privilege)

# Not in `make test` either: about three quarters of an hour (docs/least-privilege.md). GRANTS='DeliveryRole*' measures those only
# (and writes nothing).
least-privilege: $(STAMP) ## each IAM grant of the template taken away: which test fails (docs/least-privilege.md)
	TZ=UTC $(BIN)/python -m devstack.mutation.least_privilege $(or $(GRANTS),--write)

docs: $(STAMP) ## docs/state-machine.md and docs/dashboard.svg (from the synthesized template), docs/request.schema.json, docs/lifecycle.md
	$(BIN)/python -m devstack.docs

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

synth: $(STAMP) node_modules/.package-lock.json ## the CloudFormation template, bundled (no Docker)
	npx cdk synth --quiet

clean:
	rm -rf $(VENV) node_modules cdk.out .mypy_cache .pytest_cache .ruff_cache .hypothesis
