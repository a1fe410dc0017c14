"""Helpers the tests share: plain functions and constants, no tests and no
fixtures (fixtures live in conftest.py files). A test module imports from
here, never from another test module."""
