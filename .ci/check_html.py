#!/usr/bin/env python3
"""Check the built book the way a reader meets it.

    python .ci/check_html.py [_build/html] [--width 90]

Scans every page under ``book/`` in the built site and fails (exit 1, one line per problem)
when a page

- has a line of a code cell or its output wider than ``--width`` characters (the box clips
  it; package source shown with ``{literalinclude}`` is not held to this width);
- shows a ``glue(...)`` / ``glue_all(...)`` call or ``inspect.getsource`` in a code block
  (bookkeeping belongs in ``remove-cell`` cells; code is shown with ``{literalinclude}``);
- shows output written to stderr (warnings and logging are plumbing, not results);

and, for a chapter's last page, when it lacks

- a section titled "What we measured" that holds a table with at least one row;
- a section titled "Exercises" that holds at least one collapsed solution
  (an ``{admonition}`` with ``:class: dropdown``, or a ``{toggle}``).

A chapter is its first page, ``book/NN_slug.html``, and its section pages,
``book/NN_K_slug.html``, numbered N.K in the book; its last page carries its conclusions.
With ``--navigation`` (CI's default), every page must also let a reader find their way:

- on a chapter's last page, a section titled "In short" with text;
- chapters 1 and up: the page's number in the sidebar ("3. MAML...", "4.3. In-context..."),
  every section heading numbered within it ("3.4. ...", "4.3.1. ..."), and every figure
  numbered within the chapter ("Fig. 3.2");
- on a chapter's first page, at least one link to another chapter in its text;
- a button that opens its paired notebook in Colab, and a download of the notebook as
  executed (the file present in the site);
- every table inside a box that scrolls sideways (narrow screens reach every column),
  and no table cell cut short with "..." or "…".

``.ci/check_layout.py`` measures in a browser what HTML cannot tell: page length, code
share, figure and table widths.

``tests/test_book.py`` tests these rules on small synthetic pages.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from bs4 import BeautifulSoup

WIDTH = 90
RESULTS_TITLE = "What we measured"
SUMMARY_TITLE = "In short"
EXERCISES_TITLE = "Exercises"
CHAPTER = re.compile(r"^\d\d_.*\.html$")  # any page of a chapter
SECTION = re.compile(r"^(?P<chapter>\d\d)_(?P<number>\d+)_")  # a section page, N.K
FORBIDDEN = [
    (re.compile(r"\bglue(_\w+)?\("), "a glue call"),
    (re.compile(r"\binspect\.getsource\b"), "inspect.getsource"),
]


def _where(pre) -> str:
    """Say what kind of block a <pre> is, for the message."""
    for parent in pre.parents:
        classes = parent.get("class") or []
        if "cell_input" in classes:
            return "code cell"
        if "cell_output" in classes:
            return "output"
    return "code block"


def _section(soup, title: str):
    """The <section> whose heading reads ``title`` (the anchor's pilcrow ignored), or None."""
    for heading in soup.find_all(re.compile(r"^h[1-6]$")):
        text = heading.get_text(" ", strip=True).replace("#", "").replace("¶", "").strip()
        text = re.sub(r"^\d+(\.\d+)*\.\s*", "", text)  # a numbered section: "3.4. "
        if text == title:
            return heading.find_parent("section")
    return None


def check_page(name: str, html: str, chapter: bool, width: int = WIDTH) -> list[str]:
    """Every problem a reader would meet on one page, as ``"name: problem"`` lines."""
    soup = BeautifulSoup(html, "html.parser")
    main = soup.find(id="main-content") or soup.find("main") or soup
    problems = []
    for pre in main.find_all("pre"):
        text, where = pre.get_text(), _where(pre)
        for line in text.expandtabs(4).splitlines() if where != "code block" else ():
            if len(line) > width:
                problems.append(f"{name}: {where} line {len(line)} characters wide (> {width}): {line[:60]!r}...")
        for pattern, what in FORBIDDEN:
            if pattern.search(text):
                problems.append(f"{name}: {_where(pre)} shows {what}: {pattern.search(text).group(0)!r}")
    for block in main.select("div.output.stderr"):
        problems.append(f"{name}: shows stderr output: {block.get_text()[:80].strip()!r}")
    if chapter:
        results = _section(main, RESULTS_TITLE)
        if results is None:
            problems.append(f"{name}: no section titled {RESULTS_TITLE!r}")
        elif not any(table.find("tbody") and table.find("tbody").find("tr") for table in results.find_all("table")):
            problems.append(f"{name}: the {RESULTS_TITLE!r} section has no table with a row")
        exercises = _section(main, EXERCISES_TITLE)
        if exercises is None:
            problems.append(f"{name}: no section titled {EXERCISES_TITLE!r}")
        elif not exercises.select(".dropdown, .toggle, details"):
            problems.append(f"{name}: the {EXERCISES_TITLE!r} section has no collapsed solution")
    return problems


def _number(node) -> str:
    """The text of the section or caption number inside ``node`` ("3." / "Fig. 3.2")."""
    found = node.select_one(".section-number, .caption-number") if node else None
    return found.get_text(strip=True) if found else ""


def page_number(name: str) -> str:
    """The number the book gives a page: "3" for 03_maml.html, "4.3" for 04_3_x.html."""
    stem = Path(name).name
    section = SECTION.match(stem)
    if section:
        return f"{int(section['chapter'])}.{int(section['number'])}"
    return str(int(stem[:2]))


def check_navigation(
    name: str, html: str, number: int | str, last: bool = True, first: bool = True
) -> list[str]:
    """What keeps a reader of page ``name``, numbered ``number`` ("3", "4.3"), from
    finding their way. ``last``: the chapter's last page (its conclusions); ``first``:
    its first page."""
    soup = BeautifulSoup(html, "html.parser")
    main = soup.find(id="main-content") or soup.find("main") or soup
    article = main.select_one("article") or main
    problems = []
    number = str(number)
    chapter = int(number.split(".")[0])
    summary = _section(main, SUMMARY_TITLE)
    if last and (summary is None or len(summary.get_text(" ", strip=True)) <= len(SUMMARY_TITLE)):
        problems.append(f"{name}: no section titled {SUMMARY_TITLE!r} with text")
    if chapter >= 1:
        for heading in article.find_all("h2"):
            label = _number(heading)
            if not label.startswith(f"{number}."):
                text = heading.get_text(" ", strip=True)[:40]
                problems.append(f"{name}: section {text!r} is not numbered {number}.k")
        own = Path(name).name
        side = [
            a
            for a in soup.select("nav.bd-docs-nav a[href]")
            if a["href"] == "#" or a["href"].split("#")[0].endswith(own)
        ]
        if not side or not side[0].get_text(" ", strip=True).startswith(f"{number}. "):
            problems.append(f"{name}: the sidebar does not number this page {number}.")
        for caption in article.select("figcaption"):
            label = _number(caption)
            if label and not label.startswith(f"Fig. {chapter}."):
                problems.append(f"{name}: figure {label!r} is not numbered within chapter {chapter}")
    own = Path(name).name
    stem = own.removesuffix(".html")
    hrefs = [a["href"] for a in soup.select("a[href]")]
    if not any("colab.research.google.com" in h and h.endswith(f"notebooks/{stem}.ipynb") for h in hrefs):
        problems.append(f"{name}: no button that opens notebooks/{stem}.ipynb in Colab")
    if not any(h.endswith(f"_static/executed/{stem}.ipynb") for h in hrefs):
        problems.append(f"{name}: no download of the executed notebook")
    links = {
        a["href"].split("#")[0].split("/")[-1]
        for a in article.select("a[href]")
        if not a.find_parent(class_="prev-next-area")
    }
    others = [link for link in links if CHAPTER.match(link) and link[:2] != own[:2]]
    if first and not others:
        problems.append(f"{name}: no link to another chapter in its text")
    for table in article.find_all("table"):
        if not table.find_parent(class_="pst-scrollable-table-container"):
            problems.append(f"{name}: a table outside a scrolling box: {table.get_text(' ', strip=True)[:50]!r}")
        for cell in table.find_all(["td", "th"]):
            text = cell.get_text(" ", strip=True)
            if text.endswith(("...", "…")):
                problems.append(f"{name}: a table cell is cut short: {text[-50:]!r}")
    return problems


def _last_pages(pages: list[Path]) -> set[str]:
    """The last page of each chapter: the section with the highest number, or the chapter."""
    last: dict[str, tuple[int, str]] = {}
    for page in pages:
        section = SECTION.match(page.name)
        rank = int(section["number"]) if section else 0
        if rank >= last.get(page.name[:2], (-1, ""))[0]:
            last[page.name[:2]] = (rank, page.name)
    return {name for _, name in last.values()}


def check_site(html_dir: Path, width: int = WIDTH, navigation: bool = False) -> list[str]:
    pages = sorted((html_dir / "book").glob("*.html"))
    if not pages:
        return [f"{html_dir}: no pages under book/ (was the book built?)"]
    chapters = [p for p in pages if CHAPTER.match(p.name)]
    if not chapters:
        return [f"{html_dir}: no chapter pages book/NN_*.html"]
    last = _last_pages(chapters)
    problems = []
    for page in pages:
        name = page.relative_to(html_dir).as_posix()
        html = page.read_text(encoding="utf-8")
        problems += check_page(name, html, page.name in last, width)
        if navigation and CHAPTER.match(page.name):
            first = not SECTION.match(page.name)
            problems += check_navigation(name, html, page_number(name), page.name in last, first)
            executed = html_dir / "_static" / "executed" / f"{page.stem}.ipynb"
            if not executed.is_file():
                problems.append(f"{name}: the executed notebook {executed} is missing")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html_dir", nargs="?", default="_build/html", type=Path)
    parser.add_argument("--width", type=int, default=WIDTH, help="widest line a code box shows (characters)")
    parser.add_argument("--no-navigation", dest="navigation", action="store_false",
                        help="skip the checks of numbering, links, summaries and tables")
    args = parser.parse_args(argv)
    problems = check_site(args.html_dir, args.width, args.navigation)
    for problem in problems:
        print(problem)
    print(f"check_html: {len(problems)} problem(s) in {args.html_dir}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
