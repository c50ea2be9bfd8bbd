"""The read-only web explorer for auditors (served by a node or by `shadowledger explorer`)."""
