"""The test suite.

A package, so its folders import as ``tests.<name>``: as top-level packages they
would shadow installed ones of the same name (transformers imports ``kernels``).
"""
