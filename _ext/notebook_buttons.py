"""Header buttons for a chapter's notebook: open it in Colab, download it executed.

Jupyter Book's own launch buttons link a page's source, ``book/NN_*.md``, which Colab
cannot open; the chapters' paired notebooks live in ``notebooks/``. This extension adds

- a launch button that opens ``notebooks/NN_*.ipynb`` of the repository in Colab;
- to the download menu, the notebook as the build executed it (outputs included),
  copied from myst-nb's ``jupyter_execute`` folder into the site's ``_static``.

Only chapter pages (``book/NN_*``) get them.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

CHAPTER = re.compile(r"^book/(\d\d_[\w]+)$")
EXECUTED = "_static/executed"


def _repository(app) -> tuple[str, str]:
    options = app.config.html_theme_options
    url = options.get("repository_url", "").rstrip("/")
    return url.removeprefix("https://github.com/"), options.get("repository_branch", "main")


def add_buttons(app, pagename, templatename, context, doctree):
    match = CHAPTER.match(pagename)
    buttons = context.get("header_buttons")
    if not match or buttons is None:
        return
    stem, pathto = match.group(1), context["pathto"]
    repo, branch = _repository(app)
    colab = (
        f"https://colab.research.google.com/github/{repo}/blob/{branch}/notebooks/"
        f"{stem}.ipynb"
    )
    buttons.insert(
        0,
        {
            "type": "group",
            "tooltip": "Launch this chapter's notebook",
            "icon": "fas fa-rocket",
            "label": "launch-buttons",
            "buttons": [
                {
                    "type": "link",
                    "text": "Colab",
                    "tooltip": "Open notebooks/" + stem + ".ipynb in Google Colab",
                    "icon": pathto("_static/images/logo_colab.png", 1),
                    "url": colab,
                    "label": "colab-button",
                }
            ],
        },
    )
    for group in buttons:
        if group.get("label") == "download-buttons":
            group["buttons"].insert(
                0,
                {
                    "type": "link",
                    "text": ".ipynb",
                    "tooltip": "Download the notebook as executed for this page",
                    "icon": "fas fa-code",
                    "url": pathto(f"{EXECUTED}/{stem}.ipynb", 1),
                    "label": "download-executed-notebook-button",
                },
            )


def copy_executed(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    source = Path(app.outdir).parent / "jupyter_execute" / "book"
    target = Path(app.outdir) / EXECUTED
    target.mkdir(parents=True, exist_ok=True)
    for notebook in sorted(source.glob("[0-9][0-9]_*.ipynb")):
        shutil.copy2(notebook, target / notebook.name)


def setup(app):
    # after sphinx-book-theme's own header buttons (priority 501)
    app.connect("html-page-context", add_buttons, priority=502)
    app.connect("build-finished", copy_executed)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
