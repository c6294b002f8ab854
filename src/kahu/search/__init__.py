"""Search: Lucene query strings over the series metadata document (see docs/search.md).

``query`` parses, ``sql`` translates, ``series`` finds and sorts, ``aggregations`` draws
facets, ``facts`` lists fields and values.
"""
