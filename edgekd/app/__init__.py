"""Application tier: the command line (:mod:`~edgekd.app.cli`), what it prints
(:mod:`~edgekd.app.render`) and the student sweep (:mod:`~edgekd.app.sweep`), which drives all
three stages. Nothing below this tier imports it (``lint-imports`` enforces it: pyproject.toml, [tool.importlinter]).
"""
