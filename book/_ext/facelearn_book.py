"""Sphinx fixes for the facelearn book (loaded through `sphinx.local_extensions` in _config.yml).

Jupyter Book 1 registers sphinx-thebe's inline configuration script twice on every page, which makes the
browser report "Identifier 'THEBE_JS_URL' has already been declared"; this extension drops duplicate
script entries (same source and attributes) from each page before it is written.

It also publishes the student notebooks (:mod:`facelearn.teaching.student`): every chapter with exercises
gets a link under its title to ``student/NN_name.ipynb``, which the HTML build writes next to the pages, and
the instructors' figure pack (:mod:`facelearn.teaching.figures`), written from the executed chapters into
``figures/``.
"""

from pathlib import Path

from docutils import nodes


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # the duplicates differ only in how "no file" is spelt (None or ""), so compare source and attributes
        key = (str(getattr(script, "filename", script) or ""), repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def _chapters_with_exercises(app) -> set:
    if not hasattr(app, "facelearn_student_chapters"):  # once per build, not kept in the pickled environment
        import nbformat
        from facelearn.teaching.student import has_exercises

        chapters = sorted((Path(app.srcdir) / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        app.facelearn_student_chapters = {p.stem for p in chapters if has_exercises(nbformat.read(p, as_version=4))}
    return app.facelearn_student_chapters


def _link_student_version(app, doctree, docname):
    folder, _, stem = docname.partition("/")
    if app.builder.format != "html" or folder != "notebooks" or stem not in _chapters_with_exercises(app):
        return
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None:
        return
    link = nodes.reference("", f"{stem}.ipynb", refuri=f"../student/{stem}.ipynb")
    section.insert(1, nodes.paragraph("", "", nodes.emphasis("", "", nodes.Text(
        "Student version of this chapter (solutions removed, the self-checks kept): "), link)))


def _write_student_notebooks(app, exception):
    if exception is None and app.builder.format == "html":
        from facelearn.teaching.student import write_student_notebooks

        write_student_notebooks(Path(app.srcdir) / "notebooks", Path(app.outdir) / "student")


def _write_figure_pack(app, exception):
    executed = Path(app.outdir).parent / "jupyter_execute" / "notebooks"
    if exception is None and app.builder.format == "html" and any(executed.glob("[0-9][0-9]_*.ipynb")):
        from facelearn.teaching.figures import pack_from

        pack_from(executed, Path(app.outdir) / "figures")


def setup(app):
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    app.connect("doctree-resolved", _link_student_version)
    app.connect("build-finished", _write_student_notebooks)
    app.connect("build-finished", _write_figure_pack)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
