#!/usr/bin/env python3
"""Check the built book's layout in a real browser (headless Chromium through Playwright).

    python .ci/check_layout.py [_build/html] [--screens 15] [--code-share 0.30]

``check_html.py`` reads the HTML; this opens every page under ``book/`` the way a reader
does and measures what only a browser knows. It fails (exit 1, one line per problem) when

- at 1400 x 900, a page of a chapter (``book/NN_*.html``) is longer than ``--screens``
  screens, or more than ``--code-share`` of its article's height is code (code cells as
  shown, collapsed ones as their toggle; listings of the package's source);
- at 1400 x 900, a figure is shown narrower than it was drawn (its text would shrink
  below the size the figure style promises);
- at 400 x 900 (a phone), a table is wider than the column and no box around it scrolls
  sideways, so its last columns (the verdicts) cannot be reached.

It also prints each chapter page's screens and code share, for the record. Chromium is
found on the PATH (Debian's ``chromium``) or at ``$CHROMIUM``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

PAGE = re.compile(r"^\d\d_.*\.html$")
WIDE, PHONE = (1400, 900), (400, 900)

MEASURE = """() => {
  const article = document.querySelector('article.bd-article') || document.body;
  const blocks = article.querySelectorAll(
    '.cell_input, div.highlight-python, div.highlight-ipython3, div.highlight-default');
  let code = 0;
  for (const block of blocks) {
    if (block.parentElement.closest('.cell_input, div[class^="highlight-"]')) continue;
    // collapsed code (hide-input, a dropdown) shows as its toggle, counted as prose
    if (block.closest('details:not([open])')) continue;
    code += block.getBoundingClientRect().height;
  }
  const shrunk = [];
  for (const img of article.querySelectorAll('img')) {
    const drawn = parseFloat(img.style.width || img.getAttribute('width') || '0');
    if (drawn && img.clientWidth + 1 < drawn) shrunk.push([img.alt || img.src.slice(-30),
      drawn, img.clientWidth]);
  }
  return {height: document.documentElement.scrollHeight,
          article: article.getBoundingClientRect().height, code, shrunk};
}"""

TABLES = """() => {
  const out = [];
  const article = document.querySelector('article.bd-article') || document.body;
  for (const table of article.querySelectorAll('table')) {
    const column = article.clientWidth;
    if (table.scrollWidth <= column + 1) continue;
    let box = table.parentElement, scrolls = false;
    while (box && box !== article) {
      const style = getComputedStyle(box);
      if (['auto', 'scroll'].includes(style.overflowX) && box.clientWidth <= column + 1) {
        scrolls = true; break;
      }
      box = box.parentElement;
    }
    if (!scrolls) out.push([table.innerText.slice(0, 50), table.scrollWidth, column]);
  }
  return out;
}"""


def _chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser"
    )
    if not found:
        sys.exit("check_layout: no Chromium (apt-get install chromium, or set CHROMIUM)")
    return found


def check_site(html_dir: Path, screens: float, code_share: float) -> list[str]:
    from playwright.sync_api import sync_playwright

    pages = sorted((html_dir / "book").glob("*.html"))
    if not pages:
        return [f"{html_dir}: no pages under book/ (was the book built?)"]
    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        wide = browser.new_page(viewport=dict(zip(("width", "height"), WIDE)))
        phone = browser.new_page(viewport=dict(zip(("width", "height"), PHONE)))
        for page in pages:
            name = page.relative_to(html_dir).as_posix()
            wide.goto(page.resolve().as_uri())
            measured = wide.evaluate(MEASURE)
            n_screens = measured["height"] / WIDE[1]
            share = measured["code"] / max(measured["article"], 1.0)
            if PAGE.match(page.name):
                print(f"   {name}: {n_screens:.1f} screens, {share:.0%} code", file=sys.stderr)
                if n_screens > screens:
                    problems.append(f"{name}: {n_screens:.1f} screens at 1400 x 900 (> {screens:g})")
                if share > code_share:
                    problems.append(f"{name}: {share:.0%} of its height is code (> {code_share:.0%})")
            for what, drawn, shown in measured["shrunk"]:
                problems.append(f"{name}: a figure drawn {drawn:g} px wide is shown at {shown} px ({what})")
            phone.goto(page.resolve().as_uri())
            for text, wide_px, column in phone.evaluate(TABLES):
                problems.append(
                    f"{name}: at 400 px a table is {wide_px} px wide in a {column} px column"
                    f" and nothing scrolls it: {text!r}"
                )
        browser.close()
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html_dir", nargs="?", default="_build/html", type=Path)
    parser.add_argument("--screens", type=float, default=15.0, help="longest page, in screens of 1400 x 900")
    parser.add_argument("--code-share", type=float, default=0.30, help="largest share of a page's height in code")
    args = parser.parse_args(argv)
    problems = check_site(args.html_dir, args.screens, args.code_share)
    for problem in problems:
        print(problem)
    print(f"check_layout: {len(problems)} problem(s) in {args.html_dir}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
