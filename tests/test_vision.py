"""Image-to-text and vision-language models: tiny random BLIP-2, LLaVA and Idefics3 through ``llmbench run --image``.

Each model is built from a config (one vision layer, 30-32 pixel images, a one-layer text model of
hidden size 32) with a tiny byte-level BPE tokenizer and the real processor classes, saved, then run
through the CLI: the run is stored, ``show`` lists the image stages, and the greedy text equals
``model.generate`` called directly on the processor's outputs. llama.cpp's multimodal path is
tested here on its refusals (tests/test_llama_cpp_vision.py runs a real converted projector);
remote-code folders load only on request.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import one_line_error

pytest.importorskip("PIL")
pytest.importorskip("transformers")

PROMPT = "Describe the image."
IMAGE_TOKENS = {"blip2": 4, "llava": 4, "idefics3": 4}
"""Image tokens each tiny model's processor puts in the prompt (query tokens; patches; patches / scale²)."""
TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)
"""A chat template that places each image entry as ``<image>`` (LLaVA's and Idefics3's placeholder)."""


def _tokenizer(extra: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "</s>", "<pad>", *extra],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(["Describe the image. A cat sits on a mat. What is in the picture?"] * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.add_special_tokens({"additional_special_tokens": extra})
    return fast


def _text_config(tokenizer: Any) -> dict[str, Any]:
    from transformers import LlamaConfig

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return dict(config.to_dict())


VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}


def _blip2(folder: Path) -> None:
    import transformers as tf

    tokenizer = _tokenizer(["<image>"])
    config = tf.Blip2Config(
        vision_config={**VISION, "image_size": 30, "patch_size": 15},
        qformer_config={**VISION, "vocab_size": len(tokenizer), "encoder_hidden_size": 32},
        text_config=_text_config(tokenizer),
        num_query_tokens=4,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    tf.Blip2ForConditionalGeneration(config).save_pretrained(folder)
    processor = tf.BlipImageProcessorPil(size={"height": 30, "width": 30})
    tf.Blip2Processor(image_processor=processor, tokenizer=tokenizer, num_query_tokens=4).save_pretrained(folder)


def _llava(folder: Path) -> None:
    import transformers as tf

    tokenizer = _tokenizer(["<image>"])
    config = tf.LlavaConfig(
        vision_config={**VISION, "model_type": "clip_vision_model", "image_size": 30, "patch_size": 15},
        text_config=_text_config(tokenizer),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
    )
    tf.LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor = tf.CLIPImageProcessorPil(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30})
    tf.LlavaProcessor(
        image_processor=processor,
        tokenizer=tokenizer,
        patch_size=15,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=TEMPLATE,
    ).save_pretrained(folder)


def _idefics3(folder: Path) -> None:
    import transformers as tf

    tokenizer = _tokenizer(["<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"])
    config = tf.Idefics3Config(
        vision_config={**VISION, "image_size": 32, "patch_size": 8},
        text_config=_text_config(tokenizer),
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    tf.Idefics3ForConditionalGeneration(config).save_pretrained(folder)
    processor = tf.Idefics3ImageProcessorPil(
        size={"longest_edge": 32}, max_image_size={"longest_edge": 32}, do_image_splitting=False
    )
    tf.Idefics3Processor(
        image_processor=processor, tokenizer=tokenizer, image_seq_len=4, chat_template=TEMPLATE
    ).save_pretrained(folder)


BUILDERS: dict[str, Callable[[Path], None]] = {"blip2": _blip2, "llava": _llava, "idefics3": _idefics3}


@pytest.fixture(scope="module")
def tiny_vision(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The folder of a tiny random model of one architecture, built on first use (seed 0)."""
    import torch

    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            folder = tmp_path_factory.mktemp(f"tiny-{name}")
            torch.manual_seed(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                BUILDERS[name](folder)
            built[name] = folder
        return built[name]

    return get


def invoke(*args: str) -> tuple[int, str, str]:
    """``llmbench ARGS`` in this process (``$LLMBENCH_HOME`` is the test's); exit code, stdout, stderr."""
    from click.testing import CliRunner

    from llmbench.cli import main

    with CliRunner().isolation(env={"COLUMNS": "160"}) as streams:
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return code, streams[0].getvalue().decode(), streams[1].getvalue().decode()


def _direct_text(folder: Path, image_path: Path, max_new_tokens: int) -> str:
    """The reference: transformers' own processor and ``generate`` (greedy, stopping at end-of-sequence)."""
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    text = PROMPT
    if processor.chat_template:
        content = [{"type": "image"}, {"type": "text", "text": PROMPT}]
        text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    image = Image.open(image_path).convert("RGB")
    inputs = processor(images=[image], text=text, return_tensors="pt")
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new = output[0, inputs["input_ids"].shape[-1] :].tolist()
    eos = processor.tokenizer.eos_token_id
    new = new[: new.index(eos)] if eos in new else new
    return str(processor.tokenizer.decode(new, skip_special_tokens=True))


@pytest.mark.parametrize("name", ["blip2", "llava", "idefics3"])
def test_run_with_image_is_stored_shows_the_image_stages_and_matches_generate(
    name: str, tiny_vision: Callable[[str], Path], cat_png: Path
) -> None:
    folder = tiny_vision(name)
    args = ["run", str(folder), "--image", str(cat_png), "--prompt", PROMPT, "-n", "6", "-r", "2", "-w", "0"]
    code, out, err = invoke(*args, "--allow-eos", "--format", "json")
    assert code == 0, err
    row = json.loads(out)
    summary = row["metrics"]["summary"]
    assert summary["image_preprocess_s"]["count"] == 2 and summary["image_preprocess_s"]["mean"] > 0
    assert summary["vision_encode_s"]["count"] == 2 and summary["vision_encode_s"]["mean"] > 0
    assert summary["image_tokens"]["mean"] == IMAGE_TOKENS[name]
    assert summary["ttft_s"]["mean"] > summary["image_preprocess_s"]["mean"] + summary["vision_encode_s"]["mean"]
    assert row["config"]["images"] == [str(cat_png)]
    assert row["config"]["prompt_length"] > IMAGE_TOKENS[name]
    assert row["metrics"]["sample_text"] == _direct_text(folder, cat_png, 6)

    code, shown, err = invoke("show", row["id"])
    assert code == 0, err
    for label in ("image preprocessing (ms)", "vision encoder (ms)", "image tokens"):
        assert label in shown


def test_vision_model_without_image_runs_on_a_synthetic_image_and_says_so(
    tiny_vision: Callable[[str], Path],
) -> None:
    code, out, err = invoke("run", str(tiny_vision("blip2")), "-n", "2", "-r", "1", "-w", "0", "--format", "json")
    assert code == 0, err
    assert "no --image given" in err and "synthetic 224x224" in err
    row = json.loads(out)
    assert row["config"]["images"] == ["synthetic 224x224 noise, seed 0"]
    assert row["metrics"]["summary"]["image_tokens"]["mean"] == IMAGE_TOKENS["blip2"]


def test_backend_api_times_the_stages_and_counts_image_tokens(tiny_vision: Callable[[str], Path]) -> None:
    from llmbench.backends.base import GenerationConfig, LoadOptions
    from llmbench.backends.transformers import TransformersBackend
    from llmbench.measurement.images import synthetic_image
    from llmbench.models import resolve_model

    backend = TransformersBackend(resolve_model(str(tiny_vision("llava"))), LoadOptions())
    assert backend.capabilities().see
    generation = backend.generate_with_images(
        None, [synthetic_image(), synthetic_image(seed=1)], GenerationConfig(5, True)
    )
    assert generation.output_tokens == 5
    assert set(generation.stages) == {"image_preprocess_s", "vision_encode_s"}
    assert generation.counts == {"image_tokens": 2 * IMAGE_TOKENS["llava"]}
    with pytest.raises(Exception, match="pass --image"):
        backend.generate_with_images("hi", [], GenerationConfig(2))
    backend.close()


def test_image_on_a_text_model_is_refused_before_loading(tmp_path: Path, cat_png: Path) -> None:
    folder = tmp_path / "text-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    (folder / "model.safetensors").write_bytes(b"not loaded")
    code, _, err = invoke("run", str(folder), "--image", str(cat_png))
    one_line_error(code, err, "causal model and takes no images", "drop --image")


def test_llama_cpp_images_need_a_projector(smollm2: Any, tmp_path: Path, cat_png: Path) -> None:
    gguf = str(smollm2.path)
    run = ("run", gguf, "--backend", "llama.cpp", "-n", "2", "-r", "1", "-w", "0", "--no-store")
    code, _, err = invoke(*run, "--image", str(cat_png))
    one_line_error(code, err, "vision projector", "-o mmproj=PATH")
    code, _, err = invoke(*run, "-o", f"mmproj={tmp_path / 'missing.gguf'}")
    one_line_error(code, err, "missing.gguf does not exist")
    code, _, err = invoke(*run, "-o", f"mmproj={cat_png}")
    one_line_error(code, err, "is not a GGUF file")
    # A GGUF that is no projector: llama.cpp's mtmd loader itself refuses it, at load time.
    code, _, err = invoke(*run, "-o", f"mmproj={gguf}", "--image", str(cat_png))
    one_line_error(code, err, "could not load", "as a vision projector")


def test_image_backends_declare_can_see() -> None:
    from llmbench.backends.base import Backend
    from llmbench.backends.llama_cpp import LlamaCppBackend
    from llmbench.backends.transformers import TransformersBackend

    assert TransformersBackend.can_see and LlamaCppBackend.can_see and not Backend.can_see


REMOTE_CONFIG = (
    "from transformers import LlamaConfig\n\n\nclass TinyConfig(LlamaConfig):\n    model_type = 'tiny_remote'\n"
)
REMOTE_MODEL = (
    "from transformers import LlamaForCausalLM\n\nfrom .configuration_tiny import TinyConfig\n\n\n"
    "class TinyForCausalLM(LlamaForCausalLM):\n    config_class = TinyConfig\n"
)


def _remote_code_folder(source: Path, target: Path) -> Path:
    """A tiny causal model whose config.json maps the auto classes to .py files in the folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _tokenizer([])
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**_text_config(tokenizer))).save_pretrained(target)
    tokenizer.save_pretrained(target)
    (target / "configuration_tiny.py").write_text(REMOTE_CONFIG)
    (target / "modeling_tiny.py").write_text(REMOTE_MODEL)
    config = json.loads((target / "config.json").read_text())
    config.update(
        model_type="tiny_remote",
        architectures=["TinyForCausalLM"],
        auto_map={
            "AutoConfig": "configuration_tiny.TinyConfig",
            "AutoModelForCausalLM": "modeling_tiny.TinyForCausalLM",
        },
    )
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_remote_code_loads_only_with_the_opt_in(tmp_path: Path, tiny_vision: Callable[[str], Path]) -> None:
    from conftest import run_cli

    # A vision folder whose config asks for its own code (Janus-Pro, MiniCPM-o): refused in one line.
    vision = shutil.copytree(tiny_vision("llava"), tmp_path / "remote-vision")
    config = json.loads((vision / "config.json").read_text())
    (vision / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoConfig": "configuration_x.XConfig"}}))
    code, _, err = invoke("run", str(vision), "--backend", "transformers", "-n", "2", "-r", "1")
    one_line_error(code, err, "runs its own Python code", "config.json has an auto_map", "-o trust_remote_code=true")
    code, _, err = invoke("run", str(vision), "-o", "trust_remote_code=off", "-n", "2", "-r", "1")
    one_line_error(code, err, "-o trust_remote_code=true")

    # With the opt-in, the folder's own classes load and run (in a subprocess: transformers caches the code).
    remote = _remote_code_folder(tmp_path, tmp_path / "remote-causal")
    env = {"HF_MODULES_CACHE": str(tmp_path / "modules")}
    code, _, err = invoke("run", str(remote), "--backend", "transformers", "-p", "8", "-n", "2", "-r", "1")
    one_line_error(code, err, "runs its own Python code")
    args = ("run", str(remote), "--backend", "transformers", "-o", "trust_remote_code=true", "-p", "8", "-n", "2")
    code, out, err = run_cli(*args, "-r", "1", "-w", "0", "--format", "json", env=env)
    assert code == 0, err
    assert json.loads(out)["metrics"]["summary"]["output_tokens"]["mean"] == 2
    assert (tmp_path / "modules" / "transformers_modules").is_dir()
