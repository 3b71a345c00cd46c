"""Parts shared by the uptime probes (``http``, ``tcp``, ``dns``).

Each module has one job: ``phases`` times a check, ``body`` reads a bounded, safely
decompressed body, ``conditions`` judges content, ``tls`` reads certificates, ``errors``
classifies failures, ``session`` builds the HTTP client sessions probes run on.
"""
