"""The units of work the flows call, as plain functions (no Prefect).

``request`` (one frozen :class:`~basinflow.tasks.request.CookRequest` per scan and recipe),
``outputs`` (output URLs, the ``current`` pointer, writing), ``provenance``, ``freshness``
(up to date or not; planning a list of scans), ``cooking`` (the one-scan cook and
``bf.cook``), ``worker`` (the entry a flow's task calls with settings and requests), and
``results`` (what happened, and how failures travel).
"""
