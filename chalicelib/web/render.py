"""Templates to HTML (Jinja2, every value escaped), and the one stylesheet and script.

Templates live in `templates/`, the stylesheet and script in `static/`; both are packaged with
`chalicelib` by Chalice. Files are served with a version taken from their content in the URL,
so browsers may keep them for a year and still get a new one the moment it changes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
#: The files under /static/ and their types: nothing else is served from there.
STATIC_TYPES = {"app.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, context: dict[str, Any]) -> str:
    return environment().get_template(template).render(context)


@dataclass(frozen=True)
class StaticFile:
    body: str
    content_type: str
    version: str


@cache
def static_file(name: str) -> StaticFile | None:
    """One of STATIC_TYPES's files, or None for any other name."""
    if name not in STATIC_TYPES:
        return None
    body = (STATIC / name).read_text(encoding="utf-8")
    version = hashlib.sha256(body.encode()).hexdigest()[:12]
    return StaticFile(body, STATIC_TYPES[name], version)
