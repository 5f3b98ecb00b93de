"""Command-line options shared by commands and kept out of cli.py (its size is bounded)."""

from __future__ import annotations

import click

from obs_sync.code_lists import CODE_LISTS, OBS_RESULT_CODES

code_list_option = click.option(
    "--code-list",
    type=click.Choice(CODE_LISTS),
    default=OBS_RESULT_CODES,
    show_default=True,
    help="Which list: OBS result codes, display results (with their OBS codes), business "
    "results (with sub-statuses).",
)
