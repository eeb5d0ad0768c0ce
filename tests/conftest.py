"""Shared fixtures: an isolated LLMBENCH_HOME per test, the bundled model, loaded backends.

Real-model fixtures are session-scoped: SmolLM2 loads once per backend for the whole run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmbench.backends.base import Backend, LoadOptions
from llmbench.models import ModelRef, resolve_model


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def env_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own results store and never reaches the Hub."""
    home = tmp_path / "llmbench-home"
    monkeypatch.setenv("LLMBENCH_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LLMBENCH_DEBUG", raising=False)
    return home


@pytest.fixture(scope="session")
def smollm2() -> ModelRef:
    return resolve_model(None)


@pytest.fixture(scope="session")
def llama_backend(smollm2: ModelRef) -> Iterator[Backend]:
    from llmbench.backends.llama_cpp import LlamaCppBackend

    backend = LlamaCppBackend(smollm2, LoadOptions(n_ctx=1024))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def hf_backend(smollm2: ModelRef) -> Iterator[Backend]:
    from llmbench.backends.transformers import TransformersBackend

    backend = TransformersBackend(smollm2, LoadOptions(n_ctx=1024))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, hf_backend: Backend) -> Path:
    """A random-weight 2-layer llama with SmolLM2's tokenizer (pad token removed), saved locally."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = hf_backend.tokenizer  # type: ignore[attr-defined]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=None,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # A tokenizer without a pad token, as many base models ship.
    import json

    special = folder / "tokenizer_config.json"
    data = json.loads(special.read_text())
    data.pop("pad_token", None)
    special.write_text(json.dumps(data))
    for name in ("special_tokens_map.json",):
        path = folder / name
        if path.exists():
            mapping = json.loads(path.read_text())
            mapping.pop("pad_token", None)
            path.write_text(json.dumps(mapping))
    return folder


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> tuple[int, str, str]:
    """Run the installed ``llmbench`` in a subprocess; return (exit code, stdout, stderr)."""
    import subprocess
    import sys

    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "llmbench", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr


DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def smollm2_hf_dir(tmp_path_factory: pytest.TempPathFactory, smollm2: ModelRef) -> Path:
    """The bundled SmolLM2 re-saved by transformers as a float32 safetensors folder."""
    from llmbench.models._convert import export_gguf_as_hf

    return export_gguf_as_hf(smollm2.path, tmp_path_factory.mktemp("smollm2-hf"))


@pytest.fixture(scope="session")
def llama_cpp_share() -> Path:
    """llama.cpp sources from the llama-cpp-python sdist (vocab-only GGUFs, converter), set up by make."""
    import sys

    folder = Path(os.environ.get("LLMBENCH_LLAMA_CPP_SRC", Path(sys.prefix) / "share" / "llama.cpp"))
    if not (folder / "models").is_dir():
        pytest.fail(f"{folder} is missing: run make install (it extracts llama.cpp's sources from the sdist)")
    return folder


def bigbench(name: str) -> Path:
    """A BIG-bench task: the full one from ../shared when present, else the slice in tests/data."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "bigbench" / name
    return shared if (shared / "task.json").is_file() else DATA / "bigbench" / name


@pytest.fixture(scope="session")
def smollm2_f32_gguf(tmp_path_factory: pytest.TempPathFactory, smollm2_hf_dir: Path, llama_cpp_share: Path) -> Path:
    """The same weights as ``smollm2_hf_dir``, converted by llama.cpp's own convert_hf_to_gguf.py (f32)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("smollm2-f32") / "smollm2-f32.gguf"
    env = dict(os.environ, PYTHONPATH=str(llama_cpp_share / "gguf-py"))
    subprocess.run(
        [sys.executable, str(llama_cpp_share / "convert_hf_to_gguf.py"), str(smollm2_hf_dir),
         "--outfile", str(out), "--outtype", "f32"],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    return out


def one_line_error(code: int, stderr: str, *needles: str) -> str:
    """Assert the CLI failed the way llmbench promises: exit 2, one line, no traceback; return it."""
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="session")
def cat_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 80x64 RGB image of seeded noise, for the vision tests (Pillow)."""
    import numpy as np
    from PIL import Image

    path = tmp_path_factory.mktemp("images") / "cat.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(path)
    return path


def tiny_word_tokenizer(folder: Path, specials: dict[str, str], template: str) -> None:
    """Save a word-level tokenizer over the synthetic passage's words (no download, no training):
    ``specials`` maps roles (``pad_token``, ``eos_token`` ...) to tokens, which take the first ids in
    order; ``template`` is the post-processor (``$A </s>`` as T5, ``<s> $A </s>`` as BART)."""
    import re

    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from llmbench.measurement.prompts import DEFAULT_CHAT_PROMPT, PASSAGE

    words = sorted(set(re.findall(r"\w+|[^\w\s]", PASSAGE + DEFAULT_CHAT_PROMPT + " translate English to German")))
    vocab = {token: index for index, token in enumerate([*dict.fromkeys(specials.values()), "<unk>", *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()  # type: ignore[assignment]
    used = [token for token in template.split() if token in vocab]
    tokenizer.post_processor = processors.TemplateProcessing(  # type: ignore[assignment]
        single=template, special_tokens=[(token, vocab[token]) for token in dict.fromkeys(used)]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", **specials)
    fast.save_pretrained(folder)


def _randomised(model: object) -> None:
    """Weights drawn wide enough that greedy decoding of a random model says more than one word."""
    import torch

    torch.manual_seed(0)
    for parameter in model.parameters():  # type: ignore[attr-defined]
        torch.nn.init.normal_(parameter, std=0.5)


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight T5 (2 encoder layers, 1 decoder layer, d_model 32) with a word-level tokenizer."""
    from transformers import T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny-t5")
    tiny_word_tokenizer(folder, {"pad_token": "<pad>", "eos_token": "</s>"}, "$A </s>")
    from transformers import AutoTokenizer

    config = T5Config(
        vocab_size=len(AutoTokenizer.from_pretrained(folder)),
        d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=1, num_heads=4,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    model = T5ForConditionalGeneration(config)
    _randomised(model)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight BART (1 encoder layer, 2 decoder layers, d_model 32) with a word-level tokenizer."""
    from transformers import AutoTokenizer, BartConfig, BartForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny-bart")
    tiny_word_tokenizer(folder, {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>"}, "<s> $A </s>")
    config = BartConfig(
        vocab_size=len(AutoTokenizer.from_pretrained(folder)),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=256,
        bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2,
    )  # fmt: skip
    model = BartForConditionalGeneration(config)
    _randomised(model)
    model.save_pretrained(folder)
    return folder
