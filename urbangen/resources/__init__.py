"""Files that ship with the package: example parameter files (``params/``) and city files (``cities/``).

Read through :mod:`importlib.resources` (:func:`urbangen.examples.example_file`),
so a non-editable install has them; a clone also sees them as ``experiments/params``
and ``experiments/cities`` (links to these folders).
"""
