"""Copy chapter notebooks for .ci/colab_sim, pointing each first cell's clone at a local checkout.

    python .ci/colab_first_cell.py ROOT WORK notebooks/NN_x.ipynb ...

The first code cell clones the repository named in ``_config.yml`` (``repository.url``) into
``/content/<name>``. In the copies under ``WORK/notebooks`` it clones ``file://ROOT`` into
``WORK/content/<name>`` instead; nothing else changes. Writes that clone folder to
``WORK/clone_dir``. Fails when a first cell does not name the URL and the folder exactly once,
so a changed install cell cannot silently skip the simulation. Standard library only.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def repository_url(config_text: str) -> str:
    """``repository.url`` from _config.yml, read without a YAML parser."""
    found = re.search(r"^repository:[^\n]*\n(?:[ \t]+(?:#[^\n]*)?\n|[ \t]+(?!url:)[^\n]*\n)*[ \t]+url:\s*(\S+)",
                      config_text, re.M)
    if not found:
        raise SystemExit("colab_first_cell: _config.yml has no repository.url")
    return found.group(1).strip("'\"").rstrip("/")


def rewrite(source: str, url: str, root: Path, work: Path) -> str:
    clone_dir = "/content/" + url.rsplit("/", 1)[1]
    for old, new in ((f'"{url}"', f'"file://{root}"'), (f'"{clone_dir}"', f'"{work}{clone_dir}"')):
        if source.count(old) != 1:
            raise SystemExit(f"colab_first_cell: the first cell should name {old} once; it changed shape:\n{source}")
        source = source.replace(old, new)
    return source


def main(argv: list[str]) -> None:
    root, work, notebooks = Path(argv[0]).resolve(), Path(argv[1]).resolve(), argv[2:]
    url = repository_url((root / "_config.yml").read_text())
    (work / "notebooks").mkdir(parents=True, exist_ok=True)
    for name in notebooks:
        nb = json.loads((root / name).read_text())
        cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
        cell["source"] = rewrite("".join(cell["source"]), url, root, work)
        (work / "notebooks" / Path(name).name).write_text(json.dumps(nb, indent=1))
        print(f"   {Path(name).name}: clones file://{root} into {work}/content/{url.rsplit('/', 1)[1]}")
    (work / "clone_dir").write_text(f"{work}/content/{url.rsplit('/', 1)[1]}")


if __name__ == "__main__":
    main(sys.argv[1:])
