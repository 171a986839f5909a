# Every target sets itself up (idempotently) into .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= out

.PHONY: test demo bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@# tcmalloc speeds up CPU training (src/rexnet/alloc.py); best effort, never fails the build
	@if ! $(PY) -c 'import sys; from rexnet.alloc import find_tcmalloc; sys.exit(find_tcmalloc({}) is None)' \
	    && command -v apt-get >/dev/null; then \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo -n ) apt-get install -y -q libtcmalloc-minimal4 \
	    || echo "could not install libtcmalloc-minimal4; training runs with the default allocator"; fi
	touch $(STAMP)

# Two single-thread workers beat one two-thread run on small CPU models (measured:
# 146 s against 175 s for the suite before the contract tests were added).
TEST_WORKERS ?= 2
test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS)

# Where CIFAR-10 is for `rexnet experiment` when --data is not given (the shared zip, when this
# checkout sits beside it: the committed experiments recorded that path and continue with it).
REXNET_CIFAR10 ?= $(firstword $(wildcard ../shared/data/cifar10-jpeg.zip))
export REXNET_CIFAR10

# The demo's search uses the best real data available offline: the shared CIFAR-10 zip
# when it is there, else CIFAR-10 downloaded, else Debian's dataset-fashion-mnist.
DEMO_DATA ?= $(firstword $(wildcard ../shared/data/cifar10-jpeg.zip) auto)

demo: $(STAMP)
	@if [ "$(DEMO_DATA)" = auto ] && [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo -n ) apt-get install -y -q dataset-fashion-mnist \
	    || echo "could not install dataset-fashion-mnist; the demo tries CIFAR-10 only"; fi
	$(VENV)/bin/rexnet demo --out $(OUT) --search-data $(DEMO_DATA)

bench: $(STAMP)
	$(PY) benchmarks/latency.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
