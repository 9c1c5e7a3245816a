"""A deploy rehearsal (``deployment``): what the synthesized template describes, stood up
on a moto server and an embedded PostgreSQL over TLS, each function in a sandbox process
of its own, and nothing the template does not say.

May import: ``local``, ``emulation``, ``peers`` and floor 0 (the top floor).
"""
