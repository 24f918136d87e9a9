"""Sphinx fixes for the facelearn book (loaded through `sphinx.local_extensions` in _config.yml).

Jupyter Book 1 registers sphinx-thebe's inline configuration script twice on every page, which makes the
browser report "Identifier 'THEBE_JS_URL' has already been declared"; this extension drops duplicate
script entries (same source and attributes) from each page before it is written.
"""


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # the duplicates differ only in how "no file" is spelt (None or ""), so compare source and attributes
        key = (str(getattr(script, "filename", script) or ""), repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
