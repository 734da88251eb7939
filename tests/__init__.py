"""Tests of the reference server, its engine and the chat CLI.

Helpers shared by the tests are in ``helpers.py``; fixtures in ``conftest.py``.
"""
