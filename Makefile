# Two entry points on a fresh machine: `make run` (generate with the default model) and `make test`.
PY        := .venv/bin/python
BUILD     ?= build
BUILD_TYPE ?= Release
PROMPT    ?= Write a haiku about the sea.

.PHONY: setup build run test test-cpp test-parity test-python test-server python-install bump-version git-release bench steering-demo clean

setup:
	@bash scripts/setup.sh

$(BUILD)/build.ninja: CMakeLists.txt | setup
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	  -DMLX_DIR=$$($(PY) -m mlx --cmake-dir)/share/cmake/MLX

build: setup $(BUILD)/build.ninja
	cmake --build $(BUILD) -j 2

run: build
	$(BUILD)/mlxgp generate --model default --chat --prompt "$(PROMPT)" --max-new-tokens 64

test-cpp: build
	cd $(BUILD) && ctest --output-on-failure -j 2

# The parity tests drive the Python package too (test_batch_generate.py): install it first.
test-parity: build python-install
	MLXGP_BIN=$(abspath $(BUILD))/mlxgp $(PY) -m pytest -q tests/parity

# The Python package, installed editable into .venv; the extension builds in $(BUILD)/python-ext
# (ccache keeps the C++ recompile cheap).
python-install: setup
	$(PY) -m pip install -q --no-build-isolation --no-deps -e . -Cbuild-dir=$(BUILD)/python-ext

test-python: build python-install
	MLXGP_BIN=$(abspath $(BUILD))/mlxgp MLXGP_PYTHON_BUILD_DIR=$(abspath $(BUILD))/python-ext $(PY) -m pytest -q tests/python

# `mlxgp serve` through the official openai client (tests/server; about 30 s).
test-server: build
	MLXGP_BIN=$(abspath $(BUILD))/mlxgp $(PY) -m pytest -q tests/server

test: test-cpp test-parity test-python test-server

# VERSION is the one source of the version (CMake, C++ MLXGP_VERSION, Python __version__ read it).
PART ?= patch
bump-version:
	@python3 scripts/bump_version.py $(PART)

# Tags vX.Y.Z; pushes the tag only to remotes that exist.
git-release:
	@bash scripts/git_release.sh

bench: build python-install
	MLXGP_BIN=$(abspath $(BUILD))/mlxgp $(PY) bench/bench.py

# Persona steering demonstration: writes docs/steering.md (several minutes).
steering-demo: build
	MLXGP_BIN=$(abspath $(BUILD))/mlxgp $(PY) scripts/steering_demo.py

clean:
	rm -rf $(BUILD)
