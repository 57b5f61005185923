# Package discovery for the `engine/` -> `spectralx` mapping (pyproject's find cannot rename roots).
import os

from setuptools import setup


def engine_packages():
    found = []
    for root, dirs, files in os.walk("engine"):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
        if "__init__.py" in files:
            found.append("spectralx" + root[len("engine") :].replace(os.sep, "."))
    return found


setup(packages=engine_packages())
