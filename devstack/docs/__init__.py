"""The generators of ``docs/`` (``make docs``: ``python -m devstack.docs``): the state
machine pictures (``diagram``), the dashboard's picture (``dashboard``) and the request
schema (``schema``), each written from the code or the synthesized template through one
helper (``generated``); a test of each fails when the committed file is stale.

May import: ``emulation`` (the synthesized template) and the runtime package.
"""
