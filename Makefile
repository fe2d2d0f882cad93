# facesearch — `make demo` (the main job) and `make test` each set themselves up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
FACES ?= $(firstword $(wildcard ../shared/faces))
N ?= 20000

.PHONY: setup test test-ray lint proto serve demo bench lock clean

setup: $(VENV)/.installed

# Re-install when the dependency set changes; weights are linked for DeepFace offline use.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c constraints.txt -e '.[server,picture,dev]'
	$(PY) -m fsserver.weights
	touch $@

test: setup lint
	$(PY) -m pytest -m "not ray"

# The Ray backend's tests (real Ray, started once for the module: a few minutes on 2 cores).
test-ray: $(VENV)/.installed-ray
	$(PY) -m pytest -m ray

$(VENV)/.installed-ray: $(VENV)/.installed
	$(PIP) install --quiet -c constraints.txt -e '.[server,picture,dev,ray]'
	touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

proto: setup
	$(PY) scripts/gen_proto.py

serve: setup
	$(VENV)/bin/fsserver

demo: setup
	$(PY) scripts/demo.py --faces "$(FACES)" --pad $(N)

# `make bench` (not part of `make test`): bench/results/<date>.{json,md}. N defaults to
# 100000 here (20000 is the demo's); `make bench N=1000000` works; more flags in BENCH_ARGS
# (e.g. BENCH_ARGS="--only 1,2,4 --quick"; see `python -m bench --help`).
BENCH_N := $(if $(filter command line,$(origin N)),$(N),100000)

bench: $(VENV)/.installed-bench
	$(PY) -m bench --n $(BENCH_N) $(if $(FACES),--faces "$(FACES)") $(BENCH_ARGS)

$(VENV)/.installed-bench: $(VENV)/.installed
	$(PIP) install --quiet -c constraints.txt -e '.[server,picture,dev,bench]'
	touch $@

# Refresh constraints.txt from a clean resolve of pyproject.toml.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet '.[server,picture,dev,bench,ray]'
	( echo "# Exact versions of the whole dependency tree, used by \`make setup\` and CI (pip -c)."; \
	  echo "# Regenerate: make lock"; \
	  .lock-venv/bin/pip freeze --all | grep -v -e '^facesearch' -e '^pip==' ) > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
