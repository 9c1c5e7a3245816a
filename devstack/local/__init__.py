"""Escalator on one machine: the local stack (``stack``: ``escalator local``), its scripted
scenario (``demo``), the fault drill (``drill``), the record of what it delivered
(``outbox``), the in-process pipeline the tests and benchmarks drive (``pipeline``) and the
harness's commands of ``escalator`` (``commands``).

May import: ``emulation``, ``peers`` and floor 0. Not ``docs``, ``mutation`` or
``rehearsal``.
"""
