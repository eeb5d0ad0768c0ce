"""llama.cpp's multimodal path on a real projector: a tiny random Idefics3 converted by llama.cpp's own
``convert_hf_to_gguf.py`` into a text GGUF and an ``mmproj`` GGUF, run through mtmd.

The model: SmolLM2's tokenizer (one the converter recognises) with Idefics3's image tokens, a
one-layer llama of hidden size 32, a one-layer SigLIP of 32x32 images in 8x8 patches and a pixel
shuffle of 2, so each image tile is (32/8)^2 / 2^2 = 4 tokens. mtmd cuts an Idefics3 image into
tiles of the preprocessor's longest edge (32: one tile) plus an overview: 2 x 4 image tokens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from conftest import one_line_error, run_cli

pytest.importorskip("PIL")
pytest.importorskip("transformers")

PATCHES = (32 // 8) ** 2
TOKENS_PER_TILE = PATCHES // 2**2
IMAGE_TOKENS = 2 * TOKENS_PER_TILE
"""mtmd's image tokens for one image: one 32x32 tile plus the overview (see the module docstring)."""
PROMPT = "Describe the image."
SPECIALS = ["<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]


def _build(folder: Path, tokenizer_source: Path) -> None:
    """The tiny random Idefics3 folder, saved as transformers writes it (seed 0)."""
    import torch
    import transformers as tf

    tokenizer = tf.AutoTokenizer.from_pretrained(str(tokenizer_source.parent), gguf_file=tokenizer_source.name)
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIALS})
    text = tf.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ).to_dict()  # fmt: skip
    text["architectures"] = ["LlamaForCausalLM"]  # the converter picks the text model by this
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = tf.Idefics3Config(
        vision_config={**vision, "image_size": 32, "patch_size": 8},
        text_config=text,
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tf.Idefics3ForConditionalGeneration(config).save_pretrained(folder)
        processor = tf.Idefics3ImageProcessorPil(
            size={"longest_edge": 32}, max_image_size={"longest_edge": 32}, do_image_splitting=False
        )
        tf.Idefics3Processor(
            image_processor=processor, tokenizer=tokenizer, image_seq_len=TOKENS_PER_TILE
        ).save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory, smollm2: Any, llama_cpp_share: Path) -> tuple[Path, Path]:
    """(text GGUF, mmproj GGUF) of the tiny Idefics3, both f32, from llama.cpp's own converter."""
    folder = tmp_path_factory.mktemp("tiny-idefics3")
    _build(folder / "hf", smollm2.path)
    env = dict(os.environ, PYTHONPATH=str(llama_cpp_share / "gguf-py"))
    paths = (folder / "tiny-idefics3-f32.gguf", folder / "mmproj-tiny-idefics3-f32.gguf")
    for path, extra in zip(paths, ([], ["--mmproj"]), strict=True):
        subprocess.run(
            [sys.executable, str(llama_cpp_share / "convert_hf_to_gguf.py"), str(folder / "hf"),
             "--outfile", str(path), "--outtype", "f32", *extra],
            check=True, capture_output=True, env=env,
        )  # fmt: skip
    return paths


@pytest.fixture(scope="module")
def backend(tiny_vlm: tuple[Path, Path]) -> Any:
    from llmbench.backends.base import LoadOptions
    from llmbench.backends.llama_cpp import LlamaCppBackend
    from llmbench.models import resolve_model

    gguf, mmproj = tiny_vlm
    loaded = LlamaCppBackend(resolve_model(str(gguf)), LoadOptions(n_ctx=512, threads=1, extra={"mmproj": str(mmproj)}))
    yield loaded
    loaded.close()


def _image(seed: int) -> Any:
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 40, 3), dtype=np.uint8))


def test_cli_run_with_image_times_the_stages_and_counts_the_projectors_tokens(
    tiny_vlm: tuple[Path, Path], cat_png: Path
) -> None:
    gguf, mmproj = tiny_vlm
    run = ("run", str(gguf), "-b", "llama.cpp", "-o", f"mmproj={mmproj}", "-n", "8", "-r", "1", "-t", "1")
    code, out, err = run_cli(*run, "--image", str(cat_png), "--prompt", PROMPT, "--format", "json")
    assert code == 0, err
    row = json.loads(out)
    assert row["status"] == "ok"
    summary = row["metrics"]["summary"]
    assert summary["output_tokens"]["mean"] == 8
    assert summary["image_tokens"]["mean"] == IMAGE_TOKENS
    preprocess, encode = summary["image_preprocess_s"], summary["vision_encode_s"]
    assert preprocess["count"] == encode["count"] == 1
    assert preprocess["mean"] > 0 and encode["mean"] > 0
    assert summary["ttft_s"]["mean"] > preprocess["mean"] + encode["mean"]
    assert row["config"]["prompt_length"] > IMAGE_TOKENS  # the chat template's text and the image
    assert row["config"]["images"] == [str(cat_png)]
    # mtmd's own step-by-step logging stays off the terminal (only its errors would print).
    assert "clip_encode" not in err and "encoding image slice" not in err

    code, out, err = run_cli(*run, "--prompt", PROMPT, "--format", "json")  # the same prompt, no image
    assert code == 0, err
    row = json.loads(out)
    assert row["status"] == "ok" and row["metrics"]["summary"]["output_tokens"]["mean"] == 8
    assert "image_tokens" not in row["metrics"]["summary"]


def test_backend_counts_each_images_tokens_and_scans_the_vocabulary_outside_the_timing(backend: Any) -> None:
    import time

    from llmbench.backends.base import GenerationConfig

    calls: list[float] = []
    is_eog = backend._is_eog

    def recorded(token: int) -> bool:
        calls.append(time.perf_counter())
        return bool(is_eog(token))

    backend._is_eog, backend._eog_ids = recorded, None  # as loaded: no image generation yet
    try:
        generation = backend.generate_with_images(PROMPT, [_image(0), _image(1)], GenerationConfig(8, True))
        again = backend.generate_with_images(PROMPT, [_image(0), _image(1)], GenerationConfig(8, True))
    finally:
        backend._is_eog = is_eog
    assert generation.output_tokens == again.output_tokens == 8 and generation.finish_reason == "length"
    assert generation.counts == {"image_tokens": 2 * IMAGE_TOKENS}
    assert set(generation.stages) == {"image_preprocess_s", "vision_encode_s"}
    assert generation.prompt_tokens > 2 * IMAGE_TOKENS
    assert generation.text == again.text  # greedy, from an empty cache each time
    # The end-of-generation tokens are found once, before the first generation's clock starts.
    assert calls and max(calls) < generation.t_start
    text = backend.generate(PROMPT, GenerationConfig(4, True))  # text alone, projector loaded
    assert text.output_tokens == 4


def test_a_gguf_without_chat_template_gets_a_plain_prompt(backend: Any) -> None:
    from llmbench.backends.base import GenerationConfig

    template = backend.llm.metadata.pop("tokenizer.chat_template")
    try:
        generation = backend.generate_with_images(None, [_image(2)], GenerationConfig(3, True))
    finally:
        backend.llm.metadata["tokenizer.chat_template"] = template
    assert generation.output_tokens == 3 and generation.counts == {"image_tokens": IMAGE_TOKENS}
    with_template = backend.generate_with_images(None, [_image(2)], GenerationConfig(3, True))
    assert generation.prompt_tokens < with_template.prompt_tokens  # no system prompt, no roles


def test_an_image_prompt_that_overflows_n_ctx_is_refused_in_one_line(
    tiny_vlm: tuple[Path, Path], cat_png: Path
) -> None:
    gguf, mmproj = tiny_vlm
    run = ("run", str(gguf), "-b", "llama.cpp", "-o", f"mmproj={mmproj}", "--image", str(cat_png), "--prompt", PROMPT)
    # llama.cpp pads this context to 256 tokens, llama-cpp-python's token buffer keeps 48.
    code, _, err = run_cli(*run, "--n-ctx", "48", "-n", "8", "-r", "1", "-w", "0", "-t", "1", "--no-store")
    one_line_error(code, err, "the prompt with its images", "exceed n_ctx (48)", "--n-ctx")


def test_an_image_run_is_not_held_to_the_synthetic_prompt_length(tiny_vlm: tuple[Path, Path], cat_png: Path) -> None:
    """``--prompt-tokens`` (128 by default) sizes the synthetic text prompt, which an image run does
    not send: a context that holds the image prompt is enough."""
    gguf, mmproj = tiny_vlm
    run = ("run", str(gguf), "-b", "llama.cpp", "-o", f"mmproj={mmproj}", "--image", str(cat_png))
    code, out, err = run_cli(*run, "--n-ctx", "96", "-n", "8", "-r", "1", "-w", "0", "-t", "1", "--format", "json")
    assert code == 0, err
    row = json.loads(out)
    assert row["status"] == "ok" and row["config"]["prompt_length"] + 8 <= 96


SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
"""SmolVLM's own chat template: it loops over the message's parts, so joined text would render empty."""


def test_a_vision_template_gets_the_parts_and_a_text_template_one_string(backend: Any) -> None:
    from llmbench.backends.base import GenerationConfig

    template = backend.llm.metadata["tokenizer.chat_template"]
    backend.llm.metadata["tokenizer.chat_template"] = SMOLVLM_TEMPLATE
    try:
        parts = backend.generate_with_images(PROMPT, [_image(3)], GenerationConfig(3, True))
    finally:
        backend.llm.metadata["tokenizer.chat_template"] = template
    text = backend.generate_with_images(PROMPT, [_image(3)], GenerationConfig(3, True))
    for generation in (parts, text):
        assert generation.output_tokens == 3 and generation.counts == {"image_tokens": IMAGE_TOKENS}
    assert parts.prompt_tokens != text.prompt_tokens  # each rendered by its own template


def test_a_handler_without_what_llmbench_uses_is_refused_in_one_line(
    tiny_vlm: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from llama_cpp import llama_chat_format

    from llmbench.backends._llama_cpp_vision import chat_handler
    from llmbench.errors import InvalidOptionError

    class Older:  # an MTMDChatHandler of another version, without the private methods llmbench adapts
        _mtmd_cpp = None

    monkeypatch.setattr(llama_chat_format, "MTMDChatHandler", Older)
    with pytest.raises(InvalidOptionError, match="without _init_mtmd_context") as raised:
        chat_handler(None, tiny_vlm[1])
    assert "llama-cpp-python==" in (raised.value.hint or "")


def test_a_text_prompt_past_the_asked_n_ctx_is_refused_in_one_line() -> None:
    """llama.cpp pads ``--n-ctx 48`` to 256 but llama-cpp-python's buffer holds 48: a text prompt is
    checked against the 48 (it crashed with a numpy broadcast error when checked against the 256)."""
    prompt = " ".join(["word"] * 60)
    code, _, err = run_cli("run", "--n-ctx", "48", "--prompt", prompt, "-n", "8", "-r", "1", "-w", "0", "--no-store")
    one_line_error(code, err, "exceed n_ctx (48)", "--n-ctx")
