"""The runbooks as pages: where a page links to, and the HTML the receiver serves there.

The runbooks are the alerting stage's package data (``alerts/runbooks/*.md``), read here as
files: the receiver serves them and the alerting stage links to them, and neither stage may
import the other, so the one reading and linking rule lives in the core. The package is only
located (``find_spec``), never run.

A runbook names its branches in bold code, ``**`traffic_volume`**``, which is how a page's
``runbook_branch`` reads; the rendered page gives each such name an ``id``, so a page links
straight to its branch. A branch a runbook does not name (a cache layer or routing reason
nobody wrote down yet) links to the runbook's decision tree instead.
"""

from __future__ import annotations

import html
import importlib.util
import re
from functools import cache
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

#: The anchor of the "Decision tree" heading every runbook has: where an unnamed branch links.
DECISION_TREE = "decision-tree"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#1f2328}"
    "code,pre{font:14px ui-monospace,monospace;background:#f6f8fa}pre{padding:.8rem;overflow-x:auto}"
    "table{border-collapse:collapse}td,th{border:1px solid #d0d7de;padding:.3rem .6rem;vertical-align:top}"
    ":target{background:#fff8c5}"
)


class UnknownRunbook(LookupError):
    """No runbook by that name."""


def runbooks_dir() -> Path:
    """The bundled runbooks, found without importing the alerting stage."""
    spec = importlib.util.find_spec("spanline.alerts")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the spanline.alerts package (which holds the runbooks) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "runbooks"


@cache
def runbook_names() -> tuple[str, ...]:
    """Every runbook's name (its file name without ``.md``), sorted."""
    return tuple(sorted(path.stem for path in runbooks_dir().glob("*.md") if _NAME.fullmatch(path.stem)))


def runbook_link(base_url: str, runbook: str, branch: str = "") -> str:
    """``<base_url>/<runbook>#<branch>``, or ``#decision-tree`` when the runbook names no such branch."""
    anchor = branch if runbook in runbook_names() and branch in branch_anchors(runbook) else DECISION_TREE
    return f"{base_url.rstrip('/')}/{runbook}#{anchor}"


def branch_anchors(runbook: str) -> frozenset[str]:
    """The branches ``runbook`` names in bold code, each an ``id`` on its page."""
    return _rendered(runbook)[1]


def runbook_html(runbook: str) -> str:
    """The runbook as a self-contained HTML page (no script, nothing fetched)."""
    return _rendered(runbook)[0]


def index_html(link_prefix: str) -> str:
    """A page listing every runbook, each linked as ``<link_prefix><name>``."""
    items = "".join(
        f'<li><a href="{html.escape(link_prefix + name)}">{html.escape(_title(name))}</a></li>'
        for name in runbook_names()
    )
    return _page("Spanline runbooks", f"<h1>Spanline runbooks</h1><ul>{items}</ul>")


@cache
def _rendered(runbook: str) -> tuple[str, frozenset[str]]:
    if runbook not in runbook_names():  # names come from the directory listing: no path is built from input
        raise UnknownRunbook(runbook)
    markdown = _markdown()
    tokens = markdown.parse((runbooks_dir() / f"{runbook}.md").read_text(encoding="utf-8"))
    anchors = _add_anchors(tokens)
    body = markdown.renderer.render(tokens, markdown.options, {})
    return _page(_title(runbook), body), frozenset(anchors)


def _markdown() -> MarkdownIt:
    """CommonMark plus tables (the runbooks' field lists); raw HTML in a runbook stays text."""
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def _add_anchors(tokens: list[Token]) -> set[str]:
    """``id`` on each heading (its slug) and on each bold code name (a branch); the branch names."""
    branches: set[str] = set()
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            token.attrSet("id", _slug(tokens[index + 1].content))
        for first, middle, last in _triples(token.children or []):
            named = first.type == "strong_open" and middle.type == "code_inline" and last.type == "strong_close"
            if named and middle.content not in branches:
                branches.add(middle.content)
                first.attrSet("id", middle.content)
    return branches


def _triples(children: list[Token]) -> zip[tuple[Token, Token, Token]]:
    return zip(children, children[1:], children[2:], strict=False)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _title(runbook: str) -> str:
    first = (runbooks_dir() / f"{runbook}.md").read_text(encoding="utf-8").partition("\n")[0]
    return first.lstrip("# ").strip() or runbook


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>'
        f"<body>{body}</body></html>"
    )
