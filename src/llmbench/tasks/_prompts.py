"""From a task's examples to the text each example's choices are scored after."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from llmbench.errors import InvalidOptionError
from llmbench.scoring import DEFAULT_DELIMITER, Tokenizer, build_request, check_context, with_delimiter
from llmbench.tasks._load import Example, Task


def split_shots(task: Task, shots: int, seed: int) -> tuple[list[Example], list[Example]]:
    """Draw ``shots`` examples once (seeded) as demonstrations; the rest are evaluated.

    The same shots serve every question, so the few-shot block is one shared prefix whose KV cache
    is computed once.
    """
    examples = list(task.examples)
    if shots <= 0:
        return [], examples
    if shots >= len(examples):
        raise InvalidOptionError(f"{shots} shots leave no example of {task.name} ({len(examples)}) to evaluate")
    order = random.Random(seed).sample(range(len(examples)), shots)
    chosen = set(order)
    return [examples[i] for i in order], [e for i, e in enumerate(examples) if i not in chosen]


def format_prompts(
    task: Task,
    shots: Sequence[Example],
    examples: Sequence[Example],
    chat: Callable[[str], str] | None = None,
) -> list[str]:
    """The text each example's choices are scored after.

    A shot is its question, the task's delimiter and its answer, as the scored choices will be
    (lm-evaluation-harness writes shots the same way). ``chat`` turns a user message into the
    model's chat-template text, or is None. The choices themselves are joined to the prompt by
    :func:`llmbench.scoring.build_request` with ``task.delimiter``.
    """
    block = task.prefix + "".join(
        shot.question + with_delimiter(shot.question, shot.choices[shot.answer], task.delimiter) + task.separator
        for shot in shots
    )
    prompts = [block + example.question for example in examples]
    if chat is not None:
        prompts = [chat(prompt) for prompt in prompts]
    return prompts


def check_fits(
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    examples: Sequence[Example],
    n_ctx: int,
    delimiter: str = DEFAULT_DELIMITER,
) -> None:
    """Refuse, before the first example is scored, a task whose longest prompt + choice exceeds ``n_ctx``.

    Tokenizes every prompt and choice as scoring will; the error names the longest length and
    ``--n-ctx``. Call it once with all the prompts before the scoring loop.
    """
    requests = [
        build_request(tokenizer, prompt, example.choices, delimiter)
        for prompt, example in zip(prompts, examples, strict=True)
    ]
    check_context(requests, n_ctx)
