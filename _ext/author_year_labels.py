"""Author-year labels in the bibliography ("Agarwal et al., 2021"), the same text as the
author-year citations in the chapters (``bibtex_reference_style: author_year``).

sphinxcontrib-bibtex's recipe for a custom label: a pybtex formatting style whose label
style is registered as a pybtex plugin; ``_config.yml`` selects it with
``bibtex_default_style``. Two works with the same label (two "Gu et al., 2022") get
"2022a" and "2022b": Sphinx needs every label once.
"""

from __future__ import annotations

import string
from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


def _author_year(entry) -> str:
    persons = entry.persons.get("author") or entry.persons.get("editor") or []

    def last(person) -> str:
        return " ".join(person.prelast_names + person.last_names)

    if not persons:
        names = entry.fields.get("organization", entry.key)
    elif len(persons) == 1:
        names = last(persons[0])
    elif len(persons) == 2:
        names = f"{last(persons[0])} and {last(persons[1])}"
    else:
        names = f"{last(persons[0])} et al."
    return f"{names}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabelStyle(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        labels = [_author_year(entry) for entry in sorted_entries]
        repeated = {label for label, n in Counter(labels).items() if n > 1}
        seen: Counter = Counter()
        for label in labels:
            if label in repeated:
                seen[label] += 1
                label += string.ascii_lowercase[seen[label] - 1]
            yield label


class AuthorYearStyle(UnsrtStyle):
    default_label_style = AuthorYearLabelStyle
    default_sorting_style = "author_year_title"


register_plugin("pybtex.style.labels", "author_year", AuthorYearLabelStyle)
register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle)


def setup(app):
    return {"parallel_read_safe": True, "parallel_write_safe": True}
