"""The command group. Each command lives in its own module and imports its work lazily."""

from __future__ import annotations

import click

from llmbench import __version__
from llmbench.cli.backends import backends_command
from llmbench.cli.cache import cache_command
from llmbench.cli.compare import compare_command
from llmbench.cli.doctor import doctor_command
from llmbench.cli.embed import embed_command
from llmbench.cli.evaluate import eval_command
from llmbench.cli.inspect import inspect_command
from llmbench.cli.leaderboard import leaderboard_command
from llmbench.cli.load import load_command
from llmbench.cli.perplexity import perplexity_command
from llmbench.cli.plan import plan_command
from llmbench.cli.recommend import recommend_command
from llmbench.cli.report import report_command
from llmbench.cli.run import run_command
from llmbench.cli.runs import runs_command, show_command
from llmbench.cli.sweep import sweep_command, sweeps_command
from llmbench.cli.tokens import tokens_command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="llmbench")
def cli() -> None:
    """Measure language models for speed, memory and quality on this machine.

    \b
    Examples:
      llmbench run                                   # the bundled SmolLM2-135M on llama.cpp
      llmbench run --backend transformers -r 3       # the same GGUF through transformers
      llmbench run model.gguf -p 512 -n 128 --format json
      llmbench runs                                  # what has been measured so far

    Results are stored in $LLMBENCH_HOME/results.db (default: the user data folder).
    Set LLMBENCH_DEBUG=1 to see tracebacks.
    """


cli.add_command(run_command)
cli.add_command(runs_command)
cli.add_command(show_command)
cli.add_command(backends_command)
cli.add_command(cache_command)
cli.add_command(compare_command)
cli.add_command(doctor_command)
cli.add_command(eval_command)
cli.add_command(inspect_command)
cli.add_command(plan_command)
cli.add_command(perplexity_command)
cli.add_command(tokens_command)
cli.add_command(sweep_command)
cli.add_command(sweeps_command)
cli.add_command(report_command)
cli.add_command(load_command)
cli.add_command(embed_command)
cli.add_command(leaderboard_command)
cli.add_command(recommend_command)
