"""Prompt templates for the language-model proposers (Jinja2), shipped with the package.

Templates live next to this file so an installed wheel finds them (``importlib.resources``); undefined
variables are errors, so a template and its caller cannot silently drift apart.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import jinja2


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: resources.files(__name__).joinpath(name).read_text()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # plain text for a model, not HTML
    )


def render(name: str, **variables: Any) -> str:
    """Render ``prompts/<name>`` with ``variables``."""
    return _environment().get_template(name).render(**variables).strip()
