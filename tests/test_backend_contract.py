"""The backend contract, enforced once in ``Backend``: option names, yes/no options, threads, extras.

None of these tests loads a model: every check under test runs before the runtime library is
imported, or on the pure helpers (``_load_kwargs``, ``_sampling``) each backend module defines.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import Callable, Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest

from llmbench.backends import backend_names, get_backend
from llmbench.backends._threads import default_threads
from llmbench.backends.base import Backend, FinishReason, GenerationConfig, LoadOptions, option_flag
from llmbench.backends.fake import FakeBackend
from llmbench.errors import InvalidOptionError
from llmbench.models import ModelRef

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_MODULES = ("llama_cpp", "transformers._backend", "vllm")
"""The modules that define each runtime backend's class (transformers is a package: its ``_backend``)."""
NO = ["off", "no", "false", "0", 0, False, "OFF", " False "]
YES = ["on", "yes", "true", "1", 1, True, "TRUE"]


def _ref(tmp_path: Path, fmt: str) -> ModelRef:
    if fmt == "server":
        return ModelRef("server", "server", tmp_path, "url", 0, url="http://127.0.0.1:9")
    path = tmp_path / ("model.gguf" if fmt == "gguf" else "model")
    return ModelRef(path.name, fmt, path, "path", 0)  # type: ignore[arg-type]


# -- option names: one check, in the base, with the nearest name --------------------------------


@pytest.mark.parametrize(
    ("backend", "fmt", "typo", "suggested"),
    [
        ("llama.cpp", "gguf", "n_gpu_layer", "n_gpu_layers"),
        ("transformers", "hf", "trust_remote_cod", "trust_remote_code"),
        ("vllm", "hf", "gpu_memory_utilisation", "gpu_memory_utilization"),
        ("openai", "server", "timeout", "timeout_s"),
        ("fake", "gguf", "prefill_delays", "prefill_delay"),
    ],
)
def test_unknown_option_names_the_nearest_valid_one(
    backend: str, fmt: str, typo: str, suggested: str, tmp_path: Path
) -> None:
    """Raised by the base before the backend loads anything (the model file does not even exist)."""
    cls = get_backend(backend)
    with pytest.raises(InvalidOptionError) as caught:
        cls(_ref(tmp_path, fmt), LoadOptions(extra={typo: 1}))
    error = caught.value
    assert repr(typo) in error.message and backend in error.message
    assert error.hint is not None
    assert f"did you mean {suggested!r}?" in error.hint
    assert all(name in error.hint for name in sorted(cls.known_options))


def test_every_registered_backend_declares_its_option_names() -> None:
    for name in backend_names():
        cls = get_backend(name)
        assert isinstance(cls.known_options, frozenset), name
        assert cls.known_options <= cls.option_names(), name


def test_the_check_is_the_base_class_s(tmp_path: Path) -> None:
    """A new backend declares ``known_options`` and writes no check of its own."""

    class Minimal(Backend):
        name = "minimal"
        known_options = frozenset({"block_size"})

        def generate_tokens(
            self, prompt_ids: Sequence[int], config: GenerationConfig, on_token: Callable[[int], None]
        ) -> FinishReason:
            return "length"

        def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
            return []

        def detokenize(self, token_ids: Sequence[int]) -> str:
            return ""

    Minimal(_ref(tmp_path, "gguf"), LoadOptions(extra={"block_size": 16}))
    with pytest.raises(InvalidOptionError, match="unknown minimal options 'blok_size', 'zzz'") as caught:
        Minimal(_ref(tmp_path, "gguf"), LoadOptions(extra={"blok_size": 16, "zzz": 1}))
    assert caught.value.hint == "did you mean 'block_size' for 'blok_size'? valid ones: block_size"
    Minimal.known_options = frozenset()
    with pytest.raises(InvalidOptionError) as caught:
        Minimal.check_options({"x": 1})
    assert caught.value.hint == "the minimal backend takes no -o options"


def test_fake_fault_options_still_work(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="planted fault"):
        FakeBackend(_ref(tmp_path, "gguf"), LoadOptions(extra={"fault": "raise", "load_delay": 0}))


# -- yes/no options: option_flag everywhere ----------------------------------------------------


@pytest.mark.parametrize("value", NO)
def test_vllm_trust_remote_code_off_means_off(value: Any, tmp_path: Path) -> None:
    """``bool("off")`` is True: vLLM read the option that way and ran remote code for ``=off``."""
    from llmbench.backends.vllm import _load_kwargs

    kwargs = _load_kwargs(_ref(tmp_path, "hf"), LoadOptions(extra={"trust_remote_code": value}), None)
    assert kwargs["trust_remote_code"] is False


@pytest.mark.parametrize("value", YES)
def test_vllm_trust_remote_code_on_when_asked(value: Any, tmp_path: Path) -> None:
    from llmbench.backends.vllm import _load_kwargs

    kwargs = _load_kwargs(_ref(tmp_path, "hf"), LoadOptions(extra={"trust_remote_code": value}), None)
    assert kwargs["trust_remote_code"] is True


def test_vllm_options_are_typed_and_passed_through(tmp_path: Path) -> None:
    from llmbench.backends.vllm import _load_kwargs

    options = LoadOptions(
        n_ctx=512,
        dtype="bfloat16",
        extra={"enforce_eager": "no", "tensor_parallel_size": "2", "gpu_memory_utilization": "0.8", "x": "y"},
    )
    kwargs = _load_kwargs(_ref(tmp_path, "hf"), options, None)
    assert kwargs == {
        "model": str(tmp_path / "model"),
        "max_model_len": 512,
        "seed": 0,
        "trust_remote_code": False,
        "dtype": "bfloat16",
        "enforce_eager": False,
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.8,
        "x": "y",
    }
    with pytest.raises(InvalidOptionError, match="trust_remote_code must be true or false"):
        _load_kwargs(_ref(tmp_path, "hf"), LoadOptions(extra={"trust_remote_code": "maybe"}), None)
    with pytest.raises(InvalidOptionError, match="tensor_parallel_size must be a whole number"):
        _load_kwargs(_ref(tmp_path, "hf"), LoadOptions(extra={"tensor_parallel_size": "two"}), None)


@pytest.mark.parametrize("module", ["transformers._backend", "vllm"])
def test_remote_code_is_off_unless_the_user_opts_in(module: str, tmp_path: Path) -> None:
    load_kwargs = import_module(f"llmbench.backends.{module}")._load_kwargs
    assert load_kwargs(_ref(tmp_path, "hf"), LoadOptions(), None)["trust_remote_code"] is False
    assert (
        load_kwargs(_ref(tmp_path, "hf"), LoadOptions(extra={"trust_remote_code": "off"}), None)["trust_remote_code"]
        is False
    )
    assert (
        load_kwargs(_ref(tmp_path, "hf"), LoadOptions(extra={"trust_remote_code": "on"}), None)["trust_remote_code"]
        is True
    )


def test_llama_cpp_flags_and_numbers_are_checked(tmp_path: Path) -> None:
    """``-o n_batch=abc`` was a ValueError traceback; now a one-line error, before loading."""
    from llmbench.backends.llama_cpp import LlamaCppBackend, _load_kwargs

    kwargs = _load_kwargs(_ref(tmp_path, "gguf"), LoadOptions(extra={"flash_attn": "off", "n_batch": "256"}), 3)
    assert kwargs["flash_attn"] is False and kwargs["n_batch"] == 256
    assert kwargs["n_threads"] == kwargs["n_threads_batch"] == 3
    with pytest.raises(InvalidOptionError, match="n_batch must be a whole number"):
        LlamaCppBackend(_ref(tmp_path, "gguf"), LoadOptions(extra={"n_batch": "abc"}))


@pytest.mark.parametrize("value", [*NO, *YES])
def test_option_flag_reads_yes_and_no(value: Any) -> None:
    assert option_flag("k", value) is (value in YES)


# -- threads: declared and resolved on the base ------------------------------------------------


def test_threads_are_resolved_by_the_base(tmp_path: Path) -> None:
    assert "threads" in Backend.__annotations__
    assert FakeBackend(_ref(tmp_path, "gguf"), LoadOptions(threads=3)).threads == 3
    assert FakeBackend(_ref(tmp_path, "gguf"), LoadOptions()).threads is None  # no CPU threads to set

    class CPUFake(FakeBackend):
        uses_threads = True

    assert CPUFake(_ref(tmp_path, "gguf"), LoadOptions()).threads == default_threads()
    assert CPUFake(_ref(tmp_path, "gguf"), LoadOptions(threads=2)).threads == 2
    with pytest.raises(InvalidOptionError, match="threads must be at least 1"):
        FakeBackend(_ref(tmp_path, "gguf"), LoadOptions(threads=0))


def test_cpu_backends_default_to_every_cpu() -> None:
    assert get_backend("llama.cpp").uses_threads and get_backend("transformers").uses_threads
    assert not get_backend("vllm").uses_threads and not get_backend("openai").uses_threads


# -- one set of helper names; the pip extra's name --------------------------------------------


def test_runtime_backends_name_their_helpers_alike() -> None:
    """cappr's rule: one module per backend with the same function names, side by side."""
    signatures: dict[str, list[list[str]]] = {}
    for module_name in RUNTIME_MODULES:
        module = import_module(f"llmbench.backends.{module_name}")
        for helper in ("_import_runtime", "_load_kwargs", "_load_model", "_sampling"):
            parameters = list(inspect.signature(getattr(module, helper)).parameters)
            signatures.setdefault(helper, []).append(parameters)
    for helper, shapes in signatures.items():
        assert all(shape == shapes[0] for shape in shapes), helper


@pytest.mark.parametrize("module", RUNTIME_MODULES)
def test_greedy_sampling_sets_no_randomness(module: str) -> None:
    sampling = import_module(f"llmbench.backends.{module}")._sampling(GenerationConfig())
    assert not sampling.get("do_sample", False)
    assert sampling.get("temperature") in (0.0, None, 0) and sampling.get("temp", 0.0) == 0.0


def test_pip_extra_names_an_extra_that_exists() -> None:
    """The attribute was ``extra``, the same name as ``LoadOptions.extra`` (the -o options)."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not hasattr(Backend, "extra")
    for name in backend_names():
        pip_extra = get_backend(name).pip_extra
        assert pip_extra is None or pip_extra in extras, name
    assert get_backend("llama.cpp").pip_extra == "llama-cpp" and get_backend("transformers").pip_extra == "hf"


# -- layering: measurement and models do not reach up into the backends -------------------------


def _imported_after(code: str) -> list[str]:
    check = f"import sys\n{code}\nprint('\\n'.join(m for m in sys.modules if m.startswith('llmbench.backends')))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_metrics_do_not_import_the_backends() -> None:
    from llmbench.backends import base
    from llmbench.measurement.generation import Generation

    assert base.Generation is Generation
    assert _imported_after("import llmbench.measurement.metrics") == []


def test_reading_a_gguf_vocabulary_does_not_import_the_backends() -> None:
    pytest.importorskip("llama_cpp")
    code = "from llmbench.models._tokens import load_tokenizer\nassert load_tokenizer(None).tokenize('hi')"
    assert _imported_after(code) == []


def test_hf_tokenizer_is_read_without_remote_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    transformers = pytest.importorskip("transformers")
    from llmbench.models._tokens import load_tokenizer

    seen: dict[str, Any] = {}

    def from_pretrained(source: str, **kwargs: Any) -> object:
        seen.update(kwargs)
        return object()

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained)
    load_tokenizer(_ref(tmp_path, "hf"))
    assert seen.get("trust_remote_code") is False


def test_library_versions_come_from_the_declared_distributions() -> None:
    from llmbench.measurement.fingerprint import NOT_INSTALLED, distribution_version

    for name in backend_names():
        cls = get_backend(name)
        if cls.libraries:
            assert cls.library_versions() == {lib: distribution_version(lib) for lib in cls.libraries}
    pytest.importorskip("transformers")
    versions = get_backend("transformers").library_versions()
    assert versions["transformers"] != NOT_INSTALLED and versions["torch"] != NOT_INSTALLED
