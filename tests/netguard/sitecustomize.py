"""Installs the test network guard (netguard.py beside this file) at startup of every Python process whose
PYTHONPATH holds this folder: tests/conftest.py puts it there for the whole pytest session.

A `sitecustomize` found later on sys.path (a distribution's, e.g. Debian's apport hook) still runs: this
one shadows it by name, so it runs that one itself.
"""

import importlib.machinery
import importlib.util
import os
import sys

import netguard

netguard.install_from_env()

_here = os.path.dirname(os.path.abspath(__file__))
_next = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or ".") != _here])
if _next is not None and _next.loader is not None:
    _next.loader.exec_module(importlib.util.module_from_spec(_next))
