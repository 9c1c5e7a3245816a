"""The development harness: Escalator on one machine, for the local stack, the demo, the
tests and the benchmarks. Installed with the development requirements; never deployed
(nothing in ``lambdas/escalator`` imports it, and the Lambda bundle does not hold it).

- ``cli``: the ``escalator`` command.
- ``moto_adapter``: the one module that adapts moto, as a table of patches: those that make
  it as strict as AWS (Lambda in-process with its limits and faults, the history quota,
  Wait precision) and those that only make it fast.
- ``template``, ``stepfunctions``: the synthesized stack, registered in moto.
- ``stack``, ``sqs``, ``outbox``, ``demo``: the local stack and its scripted scenario.
- ``postgres``, ``peers``, ``events``, ``pipeline``, ``polling``: what the tests and the
  benchmarks run against (a real PostgreSQL, protocol peers on loopback, AWS events).
"""

from __future__ import annotations

# The caller-id registry of the demo and the tests: a default, and two prefixes of which
# the longer wins for +38591... numbers.
CALLER_IDS = {"default": "+12025550123", "+385": "+38512345678", "+38591": "+38591000000"}
