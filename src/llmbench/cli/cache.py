"""``llmbench cache``: models on disk (Hugging Face cache and GGUF folders), and removing them."""

from __future__ import annotations

import click

from llmbench.cli._output import emit_json, format_option

_DIR_HELP = "A folder of GGUF files to include (repeatable)."


@click.group("cache", invoke_without_command=True)
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Hugging Face hub cache (default: HF_HUB_CACHE).")
@click.option("-d", "--dir", "gguf_dirs", multiple=True, type=click.Path(file_okay=False), help=_DIR_HELP)
@click.option(
    "-s", "--sort", default="size", show_default=True, type=click.Choice(["size", "name", "accessed", "modified"])
)
@click.option(
    "-f", "--filter", "filters", multiple=True, metavar="EXPR", help="size>1GB, name~llama, kind=gguf, accessed>30d."
)
@format_option
@click.pass_context
def cache_command(
    ctx: click.Context,
    cache_dir: str | None,
    gguf_dirs: tuple[str, ...],
    sort: str,
    filters: tuple[str, ...],
    output_format: str,
) -> None:
    """List cached models with sizes, revisions and last access; damage is shown as warnings.

    \b
    Examples:
      llmbench cache
      llmbench cache -d ~/models -f 'size>1GB' --sort accessed
      llmbench cache --format json
      llmbench cache rm TheBloke/Llama-2-7B-GGUF --dry-run
    """
    ctx.ensure_object(dict)
    ctx.obj["cache_dir"] = cache_dir
    if ctx.invoked_subcommand is not None:
        return
    from llmbench.system.cache import scan_models, select

    scan = scan_models(cache_dir, gguf_dirs)
    entries = select(scan, filters, sort)
    if output_format == "json":
        emit_json(
            {
                "hf_cache_dir": str(scan.hf_cache_dir) if scan.hf_cache_dir else None,
                "entries": [
                    {
                        "kind": e.kind,
                        "name": e.name,
                        "path": str(e.path),
                        "size_bytes": e.size_bytes,
                        "revisions": list(e.revisions),
                        "refs": list(e.refs),
                        "last_accessed": e.last_accessed,
                        "last_modified": e.last_modified,
                        "files": e.files,
                        "incomplete_bytes": e.incomplete_bytes,
                    }
                    for e in entries
                ],
                "total_bytes": sum(e.size_bytes for e in entries),
                "warnings": list(scan.warnings),
            }
        )
        return
    from llmbench.cli._tables import print_cache

    print_cache(scan, entries)


@cache_command.command("rm")
@click.argument("targets", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Show what would be deleted and the space freed.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def cache_rm_command(ctx: click.Context, targets: tuple[str, ...], dry_run: bool, yes: bool) -> None:
    """Delete repos (all revisions), single revisions (hash prefix) or GGUF files.

    \b
    Examples:
      llmbench cache rm HuggingFaceTB/SmolLM2-135M-Instruct --dry-run
      llmbench cache rm 0123abcd ~/models/old.gguf --yes
    """
    from llmbench.cli._output import console, human_bytes
    from llmbench.system.cache import plan_deletion

    plan = plan_deletion(targets, ctx.obj.get("cache_dir") if ctx.obj else None)
    out = console()
    for revision in plan.hf_revisions:
        out.print(f"revision {revision}")
    for path in plan.gguf_files:
        out.print(f"file {path}")
    out.print(f"frees {human_bytes(plan.freed_bytes)}")
    if dry_run:
        out.print("dry run: nothing deleted")
        return
    if not yes and not click.confirm("Delete these?", default=False):
        raise click.Abort()
    plan.execute()
    out.print(f"deleted; {human_bytes(plan.freed_bytes)} freed")
