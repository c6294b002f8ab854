"""Built-in operators. Workflows (Kahu's own and everyone else's) use them through this
public API::

    from kahu.operators import get_input, store_results
"""

from kahu.operators.catalog import get_input, store_results

__all__ = ["get_input", "store_results"]
