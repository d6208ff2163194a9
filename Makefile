# Two entry points on a fresh machine: `make run` (generate with the default model) and `make test`.
PY        := .venv/bin/python
BUILD     ?= build
BUILD_TYPE ?= Release
PROMPT    ?= Write a haiku about the sea.

.PHONY: setup build run test format format-check check-arm64 soak test-asan-unit test-cpp test-parity test-python test-server test-install test-asan test-tsan san-configure fuzz python-install bump-version git-release bench steering-demo clean

setup:
	@bash scripts/setup.sh

# WERROR=ON (CI) makes every compiler warning an error, in the build and the Python extension.
WERROR    ?= OFF

$(BUILD)/build.ninja: CMakeLists.txt | setup
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DMLXGP_WERROR=$(WERROR) \
	  -DMLX_DIR=$$($(PY) -m mlx --cmake-dir)/share/cmake/MLX

build: setup $(BUILD)/build.ninja
	@grep -q "^MLXGP_WERROR:BOOL=$(WERROR)$$" $(BUILD)/CMakeCache.txt || cmake -DMLXGP_WERROR=$(WERROR) $(BUILD) >/dev/null
	cmake --build $(BUILD) -j 2

run: build
	$(BUILD)/mlxgp generate --model default --chat --prompt "$(PROMPT)" --max-new-tokens 64

test-cpp: build
	cd $(BUILD) && ctest --output-on-failure -j 2

# The parity tests drive the Python package too (test_batch_generate.py): install it first. Two pytest
# workers (pytest-xdist), each taking a whole test file at a time (--dist loadfile: a file's module
# fixtures stay in one process): much of the suite waits on process start-up, model loading and
# single-threaded reference code, so two files at once keep both cores busy. PYTEST_WORKERS=0: serial.
PYTEST_WORKERS ?= 2
test-parity: build python-install
	MLXGP_BIN=$(abspath $(BUILD))/mlxgp $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile tests/parity

# The Python package, installed editable into .venv; the extension builds in $(BUILD)/python-ext with the compiler
# of $(BUILD) under the same name, so that ccache (which hashes the compiler's name: c++ and g++ differ) hands it the
# objects `make build` compiled instead of compiling the library a second time.
BUILD_CXX = $(or $(shell sed -n 's/^CMAKE_CXX_COMPILER:FILEPATH=//p' $(BUILD)/CMakeCache.txt 2>/dev/null),c++)
python-install: setup
	@grep -qsx "CMAKE_CXX_COMPILER:[A-Z]*=$(BUILD_CXX)" $(BUILD)/python-ext/CMakeCache.txt || rm -f $(BUILD)/python-ext/CMakeCache.txt
	$(PY) -m pip install -q --no-build-isolation --no-deps -e . -Cbuild-dir=$(BUILD)/python-ext \
	  -Ccmake.define.MLXGP_WERROR=$(WERROR) -Ccmake.define.CMAKE_CXX_COMPILER=$(BUILD_CXX)

test-python: build python-install
	MLXGP_BIN=$(abspath $(BUILD))/mlxgp MLXGP_PYTHON_BUILD_DIR=$(abspath $(BUILD))/python-ext $(PY) -m pytest -q tests/python

# `mlxgp serve` through the official openai client (tests/server; about 30 s).
test-server: build
	MLXGP_BIN=$(abspath $(BUILD))/mlxgp $(PY) -m pytest -q tests/server

# C++ users: install the package (headers, static libraries, mlxgpConfig.cmake) into $(BUILD)/install, then
# configure, build and run examples/cpp against it (find_package(mlxgp), mlxgp::mlxgp) on the default model.
test-install: build
	cmake --install $(BUILD) --component mlxgp_dev --prefix $(abspath $(BUILD))/install
	cmake -S examples/cpp -B $(BUILD)/example-cpp -G Ninja -DCMAKE_BUILD_TYPE=Release -DMLXGP_WERROR=$(WERROR) \
	  -DCMAKE_PREFIX_PATH=$(abspath $(BUILD))/install -DMLX_DIR=$$($(PY) -m mlx --cmake-dir)/share/cmake/MLX
	cmake --build $(BUILD)/example-cpp -j 2
	$(BUILD)/example-cpp/generate_example default "The capital of France is" 8

test: format-check test-cpp test-parity test-python test-server test-install

# VERSION is the one source of the version (CMake, C++ MLXGP_VERSION, Python __version__ read it).
PART ?= patch
bump-version:
	@python3 scripts/bump_version.py $(PART)

# Sanitizer builds share one clang build folder, $(SAN_BUILD): every library instrumented with
# AddressSanitizer + UndefinedBehaviorSanitizer and libFuzzer's coverage (docs/reliability.md).
SAN_BUILD ?= build-fuzz
FUZZ_CXX ?= clang++-19
san-configure: setup
	cmake -S . -B $(SAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Fuzz "-DCMAKE_CXX_FLAGS_FUZZ=-O1 -gline-tables-only" \
	  -DCMAKE_CXX_COMPILER=$(FUZZ_CXX) -DMLXGP_FUZZ=ON -DMLXGP_SANITIZE=address,undefined \
	  -DMLX_DIR=$$($(PY) -m mlx --cmake-dir)/share/cmake/MLX

# Coverage-guided fuzzing (libFuzzer): each parser target in fuzz/ runs FUZZ_SECONDS seconds from its
# seed corpus tests/data/fuzz/<target>/ (FUZZ_TARGETS: a subset, built alone). One line per target;
# fails if any crashed (inputs kept in $(SAN_BUILD)/crashes/).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz: san-configure
	cmake --build $(SAN_BUILD) -j 2 --target $(if $(FUZZ_TARGETS),$(addprefix fuzz_,$(FUZZ_TARGETS)),fuzz_all)
	bash scripts/run_fuzz.sh $(SAN_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The C++ unit tests and the parity tests that drive the kernels, loaders and tokenizer through the
# CLI, under AddressSanitizer + UndefinedBehaviorSanitizer. Any report fails.
SAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1 \
  LSAN_OPTIONS=suppressions=$(abspath scripts/lsan.supp):print_suppressions=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
test-asan: san-configure
	cmake --build $(SAN_BUILD) -j 2
	cd $(SAN_BUILD) && $(SAN_ENV) ctest --output-on-failure -j 2
	$(SAN_ENV) MLXGP_BIN=$(abspath $(SAN_BUILD))/mlxgp $(PY) -m pytest -q -x tests/parity/test_logits_parity.py \
	  tests/parity/test_tokenizer_parity.py tests/parity/test_cli_errors.py

# ThreadSanitizer over what runs on several threads: the kernels' thread pool, MLX's CPU stream
# running our primitives, the batch engine and the server (C++ unit tests, then the HTTP server tests
# with many concurrent clients against the instrumented CLI). Its own clang folder, $(TSAN_BUILD).
# libmlx is not instrumented; scripts/tsan.supp says what is suppressed and why. Any report fails.
TSAN_BUILD ?= build-tsan
TSAN_ENV := TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:history_size=4:suppressions=$(abspath scripts/tsan.supp)
TSAN_SERVER_TESTS ?= tests/server/test_server.py tests/server/test_server_lifecycle.py
test-tsan: setup
	cmake -S . -B $(TSAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" -DCMAKE_CXX_COMPILER=$(FUZZ_CXX) \
	  -DMLXGP_SANITIZE=thread -DMLX_DIR=$$($(PY) -m mlx --cmake-dir)/share/cmake/MLX
	cmake --build $(TSAN_BUILD) -j 2
	cd $(TSAN_BUILD) && $(TSAN_ENV) ctest --output-on-failure -j 2
	$(TSAN_ENV) MLXGP_BIN=$(abspath $(TSAN_BUILD))/mlxgp $(PY) -m pytest -q -x $(TSAN_SERVER_TESTS)

# Resident memory of one long generation with a rotating KV cache (scripts/soak_rss.py): RSS by tenth of
# the run and its growth after warm-up. 100,000 tokens of the default model take about an hour on 2 cores.
# SOAK_INPUT_IDS=1,5,9 prompts a model without a tokenizer (a tiny test model) with token ids.
SOAK_TOKENS ?= 100000
SOAK_MODEL ?= default
SOAK_INPUT_IDS ?=
soak: build
	$(PY) scripts/soak_rss.py --mlxgp $(BUILD)/mlxgp --model $(SOAK_MODEL) --tokens $(SOAK_TOKENS) --max-kv-size 512 \
	  $(if $(SOAK_INPUT_IDS),--input-ids $(SOAK_INPUT_IDS)) --json $(BUILD)/soak-$(SOAK_TOKENS).json

# C++ style (.clang-format; clang-format from requirements.txt): `make format` rewrites every tracked C++
# file in place, `make format-check` (part of make test) lists the files that differ and fails.
CXX_FILES = git ls-files '*.cpp' '*.h'
format: setup
	$(CXX_FILES) | xargs .venv/bin/clang-format -i
format-check: setup
	@bad=$$($(CXX_FILES) | while read f; do .venv/bin/clang-format "$$f" | cmp -s "$$f" - || echo "$$f"; done); \
	  if [ -n "$$bad" ]; then echo "not formatted (make format):" $$bad; exit 1; fi

# The unit tests of the modules below generation (core, tokenizer, chat, models, training) in the same
# instrumented folder as the fuzz targets, under ASan + UBSan: they need neither xgrammar nor the generation
# module, so CI adds them to its fuzz build for a couple of minutes (make test-asan runs everything).
SAN_UNIT_MODULES := core tokenizer chat models training
# The CPU kernels' x86 code (AVX2 / AVX-512 intrinsics) must stay behind __x86_64__ guards so that arm64
# (Apple Silicon, Linux arm64) builds, where those kernels report themselves unsupported and MLX ops run.
# No arm64 machine here: a syntax-only pass of src/kernels with Debian's aarch64 cross compiler.
check-arm64: setup
	@inc=$$($(PY) -m mlx --cmake-dir)/include; for f in src/kernels/*.cpp; do \
	  aarch64-linux-gnu-g++ -fsyntax-only -std=gnu++20 -Iinclude -Isrc -isystem $$inc -Wall -Wextra -Werror \
	    -Wno-unused-parameter -Wno-missing-field-initializers -Wno-psabi $$f || { echo "[check-arm64] $$f does not compile for arm64"; exit 1; }; \
	done; echo "[check-arm64] src/kernels compiles for arm64"

test-asan-unit: san-configure
	cmake --build $(SAN_BUILD) -j 2 --target $(addprefix test_,$(SAN_UNIT_MODULES))
	cd $(SAN_BUILD) && $(SAN_ENV) ctest --output-on-failure -j 2 -L '^($(subst $(eval) ,|,$(SAN_UNIT_MODULES)))$$'

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
