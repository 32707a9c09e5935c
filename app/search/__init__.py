"""The search index: per block of rows, a bloom filter of their words, so a needle reads only candidate rows.

tokens.py decides what a word is and which words a query guarantees; bloom.py is the filter; build.py makes
blocks (the writer, in each COPY's transaction, and the housekeeping's backfill); lookup.py turns a query
into candidate time ranges, or None (then the scan answers, as before). docs/search.md says which queries
are fast and why.
"""
