from setuptools import setup
setup()  # configuration lives in pyproject.toml; this shim keeps older tools working
