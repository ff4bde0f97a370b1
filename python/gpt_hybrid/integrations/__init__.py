"""Integrations with other frameworks; each imports its framework lazily.

* :mod:`gpt_hybrid.integrations.ray`: distributed batch generation on Ray Data.
"""
