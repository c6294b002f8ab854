"""Kahu's built-in workflows. They are registered through the ``kahu.workflows`` entry point
group like any installed package's, and use only the public operator API."""
