"""pytest settings for notebooks/.

The tutorials' jupytext sources (``NN_name.py``) are scripts, not test modules:
``--doctest-modules`` would import them, and so run every tutorial, during
collection. nbval runs the built ``.ipynb`` files instead, and
``tests/test_notebook_sources.py`` checks that the two agree.
"""

collect_ignore_glob = ["[0-9][0-9]_*.py"]
