"""The ``llmbench`` command line. Errors are translated once, here, at the top.

A :class:`~llmbench.errors.LLMBenchError` becomes one line on stderr and exit code 2; any other
exception becomes one line naming ``LLMBENCH_DEBUG=1``, which shows the full traceback.
"""

from __future__ import annotations

import os
import sys

import click

DEBUG_ENV_VAR = "LLMBENCH_DEBUG"


def main(argv: list[str] | None = None) -> None:
    from llmbench.cli._app import cli
    from llmbench.errors import LLMBenchError

    # llmbench never downloads at run time: Hub ids are resolved from the local cache only.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    debug = os.environ.get(DEBUG_ENV_VAR, "") not in ("", "0")
    try:
        cli.main(args=argv, prog_name="llmbench", standalone_mode=False)
    except LLMBenchError as exc:
        if debug:
            raise
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else ""
        click.echo(
            f"Error: unexpected {type(exc).__name__}: {message} (rerun with {DEBUG_ENV_VAR}=1 for the traceback)",
            err=True,
        )
        sys.exit(1)
    sys.exit(0)
