"""The book's frame: configuration, notebook pairing, Colab badges, and glue."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
# Every page that runs: a chapter's first page, book/NN_slug.md, and its section pages,
# book/NN_K_slug.md, where K is the number the book gives the page ("4.3").
PAGES = sorted((ROOT / "book").glob("[0-9][0-9]_*.md"))
CHAPTERS = [md for md in PAGES if re.match(r"\d\d_[a-z]", md.stem)]
SECTION = re.compile(r"^(?P<chapter>\d\d)_(?P<number>\d+)_[a-z]\w*$")


def sections_of(chapter: Path) -> list[Path]:
    """The section pages of ``chapter``, in the order of their numbers."""
    found = [md for md in PAGES if (m := SECTION.match(md.stem)) and m["chapter"] == chapter.stem[:2]]
    return sorted(found, key=lambda md: int(SECTION.match(md.stem)["number"]))


def last_page(chapter: Path) -> Path:
    return ([chapter] + sections_of(chapter))[-1]


LAST_PAGES = [last_page(md) for md in CHAPTERS]
REPO_URL = CONFIG["repository"]["url"].rstrip("/")
GITHUB_PATH = REPO_URL.removeprefix("https://github.com/")
BADGE = re.compile(r"\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]\((?P<url>[^)]+)\)")


def cells(notebook):
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def test_there_are_chapters():
    assert CHAPTERS, "no book/NN_*.md chapters found"
    assert all(md in CHAPTERS or SECTION.match(md.stem) for md in PAGES), "pages are NN_slug or NN_K_slug"


def test_section_pages_follow_their_chapters_numbering():
    """A chapter's own sections are N.1..N.m, so its first section page is N.(m+1)."""
    for chapter in CHAPTERS:
        own = len(re.findall(r"^## ", chapter.read_text(), flags=re.M))
        numbers = [int(SECTION.match(md.stem)["number"]) for md in sections_of(chapter)]
        assert numbers == list(range(own + 1, own + 1 + len(numbers))), (chapter.name, own, numbers)


def test_config_executes_and_fails_loudly():
    execute = CONFIG["execute"]
    assert execute["execute_notebooks"] == "cache"
    assert execute["timeout"] >= 300
    assert execute["allow_errors"] is False
    assert CONFIG["sphinx"]["config"]["nb_execution_raise_on_error"] is True
    assert CONFIG["only_build_toc_files"] is True
    assert "**.ipynb" in CONFIG["exclude_patterns"] and "notebooks" in CONFIG["exclude_patterns"]
    assert CONFIG["repository"]["branch"] == "main"
    assert {"dollarmath", "amsmath"} <= set(CONFIG["parse"]["myst_enable_extensions"])
    for bib in CONFIG["bibtex_bibfiles"]:
        assert (ROOT / bib).is_file(), bib


def test_toc_lists_exactly_the_chapters():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    entries = [entry for part in toc["parts"] for entry in part["chapters"]]
    listed = [entry["file"] for entry in entries]
    numbered = [f for f in listed if re.match(r"book/\d\d_", f)]
    assert numbered == sorted(numbered), "chapters must appear in numeric order"
    assert set(numbered) == {f"book/{md.stem}" for md in CHAPTERS}
    sections = [s["file"] for entry in entries for s in entry.get("sections", [])]
    for f in [toc["root"], *listed, *sections]:
        assert (ROOT / f"{f}.md").is_file(), f
    # the numbered part numbers its chapters 1, 2, ...: the numbers the text uses
    (part,) = [p for p in toc["parts"] if p.get("numbered")]
    assert [e["file"] for e in part["chapters"]] == [f"book/{md.stem}" for md in CHAPTERS[1:]]
    # each chapter lists its section pages, in order, and nothing else
    for entry in entries:
        chapter = ROOT / f"{entry['file']}.md"
        expected = [f"book/{md.stem}" for md in sections_of(chapter)] if chapter in CHAPTERS else []
        assert [s["file"] for s in entry.get("sections", [])] == expected, entry["file"]


@pytest.mark.parametrize("md", PAGES, ids=lambda p: p.stem)
def test_chapter_is_paired_with_its_notebook(md):
    nb_path = ROOT / "notebooks" / f"{md.stem}.ipynb"
    assert nb_path.is_file(), f"{md.name} has no twin {nb_path}: run jupytext --sync {md}"
    assert cells(jupytext.read(md)) == cells(jupytext.read(nb_path)), (
        f"{md.name} and {nb_path.name} differ: run jupytext --sync {md.relative_to(ROOT)}"
    )


def test_every_notebook_has_a_page():
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        assert (ROOT / "book" / f"{nb.stem}.md").is_file(), f"{nb} has no book/{nb.stem}.md"


@pytest.mark.parametrize("nb", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_has_no_outputs(nb):
    raw = json.loads(nb.read_text())
    for cell in raw["cells"]:
        assert not cell.get("outputs"), f"{nb.name} has committed outputs: clear them"
        assert cell.get("execution_count") is None, f"{nb.name} has execution counts: clear them"


@pytest.mark.parametrize("md", PAGES, ids=lambda p: p.stem)
def test_colab_badge_points_at_own_notebook(md):
    nb = jupytext.read(md)
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    found = BADGE.search(markdown[0])
    assert found, f"{md.name}: the first markdown cell must carry the Open in Colab badge"
    expected = f"https://colab.research.google.com/github/{GITHUB_PATH}/blob/main/notebooks/{md.stem}.ipynb"
    assert found["url"] == expected
    assert (ROOT / "notebooks" / f"{md.stem}.ipynb").is_file()
    all_badges = [m["url"] for text in markdown for m in BADGE.finditer(text)]
    assert all_badges == [expected], f"{md.name}: exactly one badge, to its own notebook"


@pytest.mark.parametrize("md", PAGES, ids=lambda p: p.stem)
def test_first_code_cell_installs_only_in_colab(md):
    code = [c.source for c in jupytext.read(md).cells if c.cell_type == "code"]
    first = code[0]
    assert '"google.colab" in sys.modules' in first
    assert f'"{REPO_URL}"' in first, "the Colab cell must clone the repository named in _config.yml"
    # Everything the cell does happens under the Colab guard.
    body = first.split('if "google.colab" in sys.modules:', 1)[1]
    assert all(line.startswith((" ", "#")) or not line.strip() for line in body.splitlines()[1:])
    assert "==" not in first, "the Colab cell must pin nothing Colab already ships"


@pytest.mark.parametrize("md", PAGES, ids=lambda p: p.stem)
def test_chapter_finds_artifacts_through_the_helper(md):
    text = md.read_text()
    assert not re.search(r"['\"](\.\./)?models/", text), f"{md.name}: use ssm_metarl.artifact_path, not a relative path"


def _code_cells(md):
    return [c for c in jupytext.read(md).cells if c.cell_type == "code"]


@pytest.mark.parametrize("md", PAGES, ids=lambda p: p.stem)
def test_chapters_run_without_myst_nb(md):
    # Colab has no myst-nb: chapters glue through ssm_metarl.report.display, which works without it.
    for cell in _code_cells(md):
        assert "myst_nb" not in cell.source, f"{md.name}: import glue helpers from ssm_metarl.report.display"


@pytest.mark.parametrize("md", PAGES, ids=lambda p: p.stem)
def test_bookkeeping_cells_are_hidden(md):
    for cell in _code_cells(md):
        tags = cell.metadata.get("tags", [])
        if re.search(r"\bglue(_all|_figure)?\(", cell.source):
            assert "remove-cell" in tags, f"{md.name}: a cell that glues must be tagged remove-cell:\n{cell.source}"
        assert "inspect.getsource" not in cell.source, f"{md.name}: show code with literalinclude"


@pytest.mark.parametrize("md", PAGES, ids=lambda p: p.stem)
def test_each_glued_figure_is_drawn_in_a_remove_output_cell_and_shown_once(md):
    cells = jupytext.read(md).cells
    text = md.read_text()
    for i, cell in enumerate(cells):
        for name in re.findall(r'glue_figure\("(\w+)"', cell.source):
            assert text.count(f"```{{glue:figure}} {name}\n") == 1, f"{md.name}: {name} is not shown exactly once"
            drawn = [c for c in cells[:i] if c.cell_type == "code"][-1]
            assert "remove-output" in drawn.metadata.get("tags", []), (
                f"{md.name}: the cell that draws {name} must be tagged remove-output")


LITERALINCLUDE = re.compile(r"```\{literalinclude\} \.\./(?P<path>[\w/]+\.py)\n:pyobject: (?P<obj>[\w.]+)\n")


@pytest.mark.parametrize("md", PAGES, ids=lambda p: p.stem)
def test_every_included_object_exists(md):
    import ast

    for found in LITERALINCLUDE.finditer(md.read_text()):
        body = ast.parse((ROOT / found["path"]).read_text()).body
        for part in found["obj"].split("."):
            node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part), None)
            assert node is not None, f"{md.name}: {found['path']} has no {found['obj']}"
            body = node.body


@pytest.mark.parametrize("md", LAST_PAGES, ids=lambda p: p.stem)
def test_chapter_ends_with_results_table_and_exercises_with_solutions(md):
    """A chapter's conclusions stand together, at the end of its last page."""
    text = md.read_text()
    assert "\n## In short\n" in text, md.name
    assert "\n## What we measured\n" in text and "\n## Exercises\n" in text, md.name
    measured = text.split("\n## What we measured\n", 1)[1].split("\n## ", 1)[0]
    assert "results_table(" in measured or "\n|" in measured, f"{md.name}: the summary must be a table"
    exercises = text.split("\n## Exercises\n", 1)[1]
    assert re.search(r"\{admonition\}[^\n]*\n\s*:class: dropdown", exercises), f"{md.name}: collapsed solutions"


@pytest.mark.parametrize("md", [md for md in PAGES if md not in LAST_PAGES], ids=lambda p: p.stem)
def test_only_a_chapters_last_page_draws_its_conclusions(md):
    text = md.read_text()
    for title in ("In short", "What we measured", "Exercises"):
        assert f"\n## {title}\n" not in text, f"{md.name}: '{title}' belongs on the chapter's last page"


def test_labels_are_unique_across_the_book():
    """Sphinx labels are global: two pages naming a figure `fig-curves` is a -W build failure."""
    seen: dict[str, str] = {}
    for page in sorted((ROOT / "book").glob("*.md")):
        text = page.read_text()
        labels = re.findall(r"^:name:\s*(\S+)\s*$", text, flags=re.M) + re.findall(r"^\(([\w-]+)\)=\s*$", text, flags=re.M)
        for label in labels:
            assert label not in seen, f"label {label!r} is defined in {seen[label]} and again in {page.name}"
            seen[label] = page.name
    assert seen  # the book does define labels: the patterns above match them


def test_intro_chapter_map_lists_exactly_the_chapters():
    intro = (ROOT / "book" / "intro.md").read_text()
    chapter_map = intro.split("## Chapter map", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"\{doc\}`(\d\d_\w+)`", chapter_map)) == {md.stem for md in CHAPTERS}


def _mini_book(tmp_path: Path, code: str, prose: str, body: str | None = None) -> Path:
    """A one-page book with the project's own execution, parsing and Sphinx settings."""
    config = {key: CONFIG[key] for key in ("execute", "parse")}
    # The bibliography settings need the bibtex extension the mini book has no use for.
    config["sphinx"] = {"config": {k: v for k, v in CONFIG["sphinx"]["config"].items() if not k.startswith("bibtex")}}
    config.update(title="glue check", only_build_toc_files=True, exclude_patterns=["_build"])
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: page\n")
    front = (ROOT / "book" / "00_quick_tour.md").read_text().split("---", 2)[1]
    body = body or f"```{{code-cell}} ipython3\n{code}\n```\n\n{prose}\n"
    (tmp_path / "page.md").write_text(f"---{front}---\n\n# Page\n\n{body}")
    return tmp_path


def _build(book: Path) -> subprocess.CompletedProcess:
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    return subprocess.run([jb, "build", str(book), "-n", "-W", "--keep-going"], capture_output=True, text=True, timeout=300)


def test_glue_puts_computed_numbers_into_the_prose(tmp_path):
    book = _mini_book(tmp_path, "from myst_nb import glue\nglue('answer', float(6 * 7), display=False)",
                      "The answer is {glue:text}`answer:.1f`.")
    result = _build(book)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html = (book / "_build" / "html" / "page.html").read_text()
    assert re.search(r'The answer is <span class="pasted-text">42\.0</span>', html)


def test_a_failing_cell_fails_the_build(tmp_path):
    book = _mini_book(tmp_path, "raise RuntimeError('this cell is broken on purpose')", "Never rendered.")
    result = _build(book)
    assert result.returncode != 0
    assert "this cell is broken on purpose" in result.stdout + result.stderr


@pytest.mark.parametrize("md", PAGES, ids=lambda p: p.stem)
def test_readme_lists_every_chapter_with_its_badge(md):
    readme = (ROOT / "README.md").read_text()
    assert f"](book/{md.name})" in readme, f"README does not link {md.name}"
    badge = f"(https://colab.research.google.com/github/{GITHUB_PATH}/blob/main/notebooks/{md.stem}.ipynb)"
    assert badge in readme, f"README lacks the Colab badge of {md.stem}"


# --- .ci/check_html.py: the rules for the built pages, tested on small synthetic pages ---

def _load_checker():
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_html", ROOT / ".ci" / "check_html.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_html = _load_checker()


def _cell(source: str, output: str = "", stderr: str = "") -> str:
    out = f'<div class="cell_output docutils container"><div class="output stream highlight-myst-ansi notranslate"><div class="highlight"><pre><span></span>{output}</pre></div></div>'
    err = f'<div class="output stderr highlight-myst-ansi notranslate"><div class="highlight"><pre><span></span>{stderr}</pre></div></div>'
    return ('<div class="cell docutils container"><div class="cell_input docutils container">'
            f'<div class="highlight-ipython3 notranslate"><div class="highlight"><pre><span></span>{source}</pre></div></div></div>'
            + (out if output else "") + (err if stderr else "") + ("</div>" if output else "") + "</div>")


RESULTS = ('<section id="what-we-measured"><h2>What we measured<a class="headerlink" href="#what-we-measured">#</a></h2>'
           '<table class="table"><thead><tr><th>quantity</th></tr></thead><tbody><tr><td>25.0 [22.1, 28.1]</td></tr></tbody></table></section>')
EXERCISES = ('<section id="exercises"><h2>Exercises<a class="headerlink" href="#exercises">#</a></h2><ol><li>Try it.</li></ol>'
             '<div class="dropdown admonition"><p class="admonition-title">Solution</p><p>You should see...</p></div></section>')


def _page(*body: str) -> str:
    return f'<html><body><main id="main-content"><article><section id="chapter"><h1>Chapter</h1>{"".join(body)}</section></article></main></body></html>'


def test_checker_accepts_a_good_chapter():
    page = _page(_cell("x = 1 + 1", "2"), RESULTS, EXERCISES)
    assert check_html.check_page("book/00_x.html", page, chapter=True) == []


def test_checker_flags_wide_input_and_output_lines():
    wide = "y" * 91
    problems = check_html.check_page("p", _page(_cell(wide, "ok\n" + wide), RESULTS, EXERCISES), chapter=True)
    assert len(problems) == 2
    assert "code cell line 91 characters" in problems[0] and "output line 91 characters" in problems[1]
    assert check_html.check_page("p", _page(_cell("y" * 90), RESULTS, EXERCISES), chapter=True) == []
    assert check_html.check_page("p", _page(_cell(wide), RESULTS, EXERCISES), chapter=True, width=100) == []


def test_checker_does_not_hold_included_source_to_the_width():
    listing = '<div class="highlight-python notranslate"><div class="highlight"><pre>' + "z" * 120 + "</pre></div></div>"
    assert check_html.check_page("p", _page(listing, RESULTS, EXERCISES), chapter=True) == []
    listing = listing.replace("z" * 120, "glue_all('x', 1)")
    assert len(check_html.check_page("p", _page(listing, RESULTS, EXERCISES), chapter=True)) == 1


def test_checker_measures_text_not_markup():
    highlighted = '<span class="n">a</span>' * 80  # 80 visible characters in 1,920 of HTML
    assert check_html.check_page("p", _page(_cell(highlighted), RESULTS, EXERCISES), chapter=True) == []


@pytest.mark.parametrize("source, what", [
    ('glue("random_mean", est.mean, display=False)', "glue call"),
    ('glue_all("random", est)', "glue call"),
    ("print(inspect.getsource(discretize))", "inspect.getsource"),
])
def test_checker_flags_visible_bookkeeping(source, what):
    problems = check_html.check_page("p", _page(_cell(source), RESULTS, EXERCISES), chapter=True)
    assert len(problems) == 1 and what in problems[0]


def test_checker_does_not_flag_words_that_merely_contain_glue():
    assert check_html.check_page("p", _page(_cell("unglued = 1\nglued_numbers = []"), RESULTS, EXERCISES), chapter=True) == []


def test_checker_flags_stderr_output():
    problems = check_html.check_page("p", _page(_cell("x", stderr="UserWarning: careful"), RESULTS, EXERCISES), chapter=True)
    assert problems == ["p: shows stderr output: 'UserWarning: careful'"]


def test_checker_requires_a_results_table_in_chapters_only():
    no_results = _page(_cell("x"), EXERCISES)
    assert check_html.check_page("book/01_x.html", no_results, chapter=True) == [
        "book/01_x.html: no section titled 'What we measured'"]
    assert check_html.check_page("book/intro.html", no_results, chapter=False) == []
    bullets_only = RESULTS.split("<table")[0] + "<ul><li>a number</li></ul></section>"
    problems = check_html.check_page("c", _page(bullets_only, EXERCISES), chapter=True)
    assert problems == ["c: the 'What we measured' section has no table with a row"]
    empty_table = RESULTS.replace("<tr><td>25.0 [22.1, 28.1]</td></tr>", "")
    assert len(check_html.check_page("c", _page(empty_table, EXERCISES), chapter=True)) == 1


def test_checker_requires_collapsed_solutions():
    open_solutions = EXERCISES.replace('class="dropdown admonition"', 'class="admonition"')
    problems = check_html.check_page("c", _page(RESULTS, open_solutions), chapter=True)
    assert problems == ["c: the 'Exercises' section has no collapsed solution"]
    assert check_html.check_page("c", _page(RESULTS), chapter=True) == ["c: no section titled 'Exercises'"]


def test_checker_on_a_site(tmp_path):
    (tmp_path / "book").mkdir()
    assert check_html.check_site(tmp_path) == [f"{tmp_path}: no pages under book/ (was the book built?)"]
    (tmp_path / "book" / "intro.html").write_text(_page(_cell("x")))
    (tmp_path / "book" / "00_tour.html").write_text(_page(_cell("x"), RESULTS, EXERCISES))
    assert check_html.check_site(tmp_path) == []
    (tmp_path / "book" / "01_next.html").write_text(_page(_cell("z" * 95), RESULTS, EXERCISES))
    assert check_html.main([str(tmp_path)]) == 1


NAV_PAGE = """<html><body><nav class="bd-docs-nav"><a href="#">3. MAML</a></nav>
<a href="https://colab.research.google.com/github/o/r/blob/main/notebooks/03_maml.ipynb">Colab</a>
<a href="../_static/executed/03_maml.ipynb">.ipynb</a>
<main id="main-content"><article><section><h1>MAML</h1>
<p>As in <a href="02_cartpole_tasks.html#x">chapter 2</a>.</p>
<figure><figcaption><p><span class="caption-number">Fig. 3.1 </span>A curve.</p></figcaption></figure>
<div class="pst-scrollable-table-container"><table><tr><td>a</td><td>b</td></tr></table></div>
<section><h2><span class="section-number">3.1. </span>In short</h2><ul><li>MAML adapts: 3.1 points.</li></ul></section>
</section></article><div class="prev-next-area"><a href="04_next.html">next</a></div></main></body></html>"""


def test_navigation_rules_accept_a_findable_chapter_and_name_each_lapse():
    nav = check_html.check_navigation
    assert nav("book/03_maml.html", NAV_PAGE, 3) == []
    assert nav("book/03_maml.html", NAV_PAGE.replace("In short", "Summary"), 3) == [
        "book/03_maml.html: no section titled 'In short' with text"
    ]
    assert "is not numbered 3.k" in nav("book/03_maml.html", NAV_PAGE.replace('"section-number">3.1. ', '"section-number">'), 3)[0]
    assert "sidebar does not number" in nav("book/03_maml.html", NAV_PAGE.replace(">3. MAML</a>", ">MAML</a>"), 3)[0]
    assert "not numbered within chapter 3" in nav("book/03_maml.html", NAV_PAGE.replace("Fig. 3.1", "Fig. 18"), 3)[0]
    # the only link left is the page's own and the next-page button: neither counts
    lonely = NAV_PAGE.replace("02_cartpole_tasks.html#x", "03_maml.html#y")
    assert nav("book/03_maml.html", lonely, 3) == ["book/03_maml.html: no link to another chapter in its text"]
    bare = NAV_PAGE.replace('<div class="pst-scrollable-table-container">', "<div>")
    assert "a table outside a scrolling box" in nav("book/03_maml.html", bare, 3)[0]
    cut = NAV_PAGE.replace("<td>b</td>", "<td>moved the weights by mo...</td>")
    assert "a table cell is cut short" in nav("book/03_maml.html", cut, 3)[0]
    # chapter 0 stands outside the numbered part: no numbers asked of it
    tour = NAV_PAGE.replace('"section-number">3.1. ', '"section-number">').replace("Fig. 3.1", "Fig. 1")
    assert nav("book/00_quick_tour.html", tour.replace("03_maml.ipynb", "00_quick_tour.ipynb"), 0) == []
    launchless = NAV_PAGE.replace("colab.research.google.com", "example.org")
    assert nav("book/03_maml.html", launchless, 3) == [
        "book/03_maml.html: no button that opens notebooks/03_maml.ipynb in Colab"
    ]


def test_each_script_is_written_once_per_page():
    # Sphinx 7.4 adds body-only scripts twice (filename None and ''): a second
    # `const THEBE_JS_URL` throws in the browser. _ext/unique_scripts.py keeps one of each.
    assert CONFIG["sphinx"]["local_extensions"]["unique_scripts"] == "_ext"
    sys.path.insert(0, str(ROOT / "_ext"))
    try:
        from unique_scripts import unique_scripts
    finally:
        sys.path.remove(str(ROOT / "_ext"))
    from sphinx.builders.html._assets import _JavaScript

    body = {"body": 'const THEBE_JS_URL = "x"'}
    context = {"script_files": [_JavaScript(None, **body), _JavaScript("a.js"), _JavaScript("", **body),
                                _JavaScript("a.js", priority=900)]}
    unique_scripts(None, "page", "page.html", context, None)
    assert [(s.filename, s.priority) for s in context["script_files"]] == [(None, 500), ("a.js", 500), ("a.js", 900)]


def test_book_css_is_picked_up_and_styles_captions_and_wide_maths():
    css = (ROOT / "_static" / "book.css").read_text()
    assert "figcaption" in css and "color: var(--pst-color-text-base)" in css
    assert re.search(r"div\.math[^{]*\{[^}]*overflow-x: auto", css)


# --- .ci/colab_first_cell.py: the Colab simulation's rewrite of each first cell ---

def _load(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / ".ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


colab_first_cell = _load("colab_first_cell")


def test_colab_sim_reads_the_repository_url_like_yaml_does():
    assert colab_first_cell.repository_url((ROOT / "_config.yml").read_text()) == REPO_URL


@pytest.mark.parametrize("md", PAGES, ids=lambda p: p.stem)
def test_colab_sim_points_every_first_cell_at_the_local_checkout(md, tmp_path):
    first = next(c.source for c in jupytext.read(md).cells if c.cell_type == "code")
    name = REPO_URL.rsplit("/", 1)[1]
    rewritten = colab_first_cell.rewrite(first, REPO_URL, ROOT, tmp_path)
    assert REPO_URL not in rewritten and f'"/content/{name}"' not in rewritten
    assert f'"file://{ROOT}"' in rewritten and f'"{tmp_path}/content/{name}"' in rewritten
    assert rewritten.replace(f'"file://{ROOT}"', f'"{REPO_URL}"').replace(f'"{tmp_path}/content/{name}"', f'"/content/{name}"') == first


def test_colab_sim_refuses_a_first_cell_of_another_shape(tmp_path):
    with pytest.raises(SystemExit, match="changed shape"):
        colab_first_cell.rewrite("!pip install ssm-metarl", REPO_URL, ROOT, tmp_path)


PATTERN_PAGE = """
```{code-cell} ipython3
import matplotlib.pyplot as plt
from ssm_metarl.report.stats import Estimate

estimate = Estimate(25.04, 22.11, 28.06, 100)
```

```{code-cell} ipython3
:tags: [remove-cell]
from ssm_metarl.report.display import glue_all, results_table
from ssm_metarl.report.plotting import glue_figure
```

```{code-cell} ipython3
:tags: [remove-output]
fig, ax = plt.subplots()
ax.plot([1, 2, 3])
ax.set(xlabel="step", ylabel="value")
```

```{code-cell} ipython3
:tags: [remove-cell]
glue_figure("fig_demo", fig)
glue_all("est", estimate)
```

The mean is {glue:text}`est_mean:.1f`, with a 95% CI of {glue:text}`est_ci`.

```{glue:figure} fig_demo
:name: fig-demo

A line that goes up.
```

## What we measured

```{code-cell} ipython3
:tags: [remove-input]
results_table([("random policy", estimate, "the card's 9.4 (reported)")])
```

## Exercises

1. Do it again.

```{admonition} Solution
:class: dropdown
You should see the same line.
```
"""


def test_the_chapter_pattern_renders_as_the_checker_wants(tmp_path):
    # One figure (drawn in a remove-output cell, glued from a remove-cell), glued numbers,
    # a results table from a remove-input cell, and a collapsed solution.
    book = _mini_book(tmp_path, "", "", body=PATTERN_PAGE)
    result = _build(book)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html = (book / "_build" / "html" / "page.html").read_text()
    assert check_html.check_page("page.html", html, chapter=True) == []
    assert re.search(r'The mean is <span class="pasted-text">25\.0</span>, with a 95% CI of <span class="pasted-text">\[22\.1, 28\.1\]</span>', html)
    assert html.count("<img") == 1, "the figure must appear once"
    assert re.search(r"<td><p>25\.0 \[22\.1, 28\.1\]</p></td>", html), "the results table must render as a table"
    assert "glue" not in html.split('id="what-we-measured"')[0].split("</h1>", 1)[1].replace("glue-", "").replace("pasted", "")


# --- .ci/check_layout.py: the browser's measurements, on small synthetic pages ---

def _browser_or_skip():
    import importlib.util
    import os

    if shutil.which("chromium") and importlib.util.find_spec("playwright"):
        return
    if os.environ.get("CI") == "true":
        pytest.fail("CI must run the layout check: install Chromium and Playwright")
    pytest.skip("no Chromium or Playwright here")


def test_layout_check_measures_length_code_figures_and_tables(tmp_path):
    _browser_or_skip()
    check_layout = _load("check_layout")
    (tmp_path / "book").mkdir()
    article = '<html><body><article class="bd-article" style="max-width:700px">{}</article></body></html>'
    short = '<p>prose</p><div class="cell_input" style="height:100px">code</div><p style="height:400px">more</p>'
    collapsed = '<details><summary>Show code</summary><div class="cell_input" style="height:3000px">x</div></details>'
    (tmp_path / "book" / "01_fine.html").write_text(article.format(short + collapsed))
    assert check_layout.check_site(tmp_path, screens=15, code_share=0.3) == []
    long_page = '<div style="height:16000px">prose</div>'
    codey = '<div class="cell_input" style="height:500px">code</div><p style="height:300px">prose</p>'
    shrunk = '<img src="x.png" alt="fig" style="width:900px; max-width:100%">'
    table = '<table><tr><td style="white-space:nowrap">' + "wide cell " * 80 + "</td></tr></table>"
    scrolled = f'<div style="overflow-x:auto">{table}</div>'
    (tmp_path / "book" / "02_long.html").write_text(article.format(long_page))
    (tmp_path / "book" / "03_code.html").write_text(article.format(codey))
    (tmp_path / "book" / "04_figure.html").write_text(article.format(shrunk))
    (tmp_path / "book" / "05_table.html").write_text(article.format(table))
    (tmp_path / "book" / "06_scrolled.html").write_text(article.format(scrolled))
    problems = check_layout.check_site(tmp_path, screens=15, code_share=0.3)
    assert [p.split(":")[0] for p in problems] == [
        "book/02_long.html", "book/03_code.html", "book/04_figure.html", "book/05_table.html"]
    assert "screens at 1400 x 900" in problems[0] and "is code" in problems[1]
    assert "drawn 900 px wide is shown at" in problems[2] and "nothing scrolls it" in problems[3]
