"""Write each <script> once per page.

Sphinx 7.4 adds a body-only script that an extension registers after the builder started
(sphinx-thebe's ``const THEBE_JS_URL = ...``, sphinx-togglebutton's selector) twice: once
with filename ``None`` and once with ``''``, which it does not see as equal. The second
``const`` declaration then throws "Identifier 'THEBE_JS_URL' has already been declared" in
the browser on every page. This extension keeps the first of equal scripts.
"""
from __future__ import annotations


def _key(script):
    return (script.filename or "", script.priority, tuple(sorted(script.attributes.items())))


def unique_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", unique_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
