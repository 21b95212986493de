"""The head map: an authenticated dictionary from envelope to its chain head (``sparse_tree``), kept in SQL and
committed to the log (``sql_store``)."""
