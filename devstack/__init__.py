"""The development harness: Escalator on one machine, for the local stack, the demo, the
tests and the benchmarks. Installed with the development requirements; never deployed
(nothing in ``lambdas/escalator`` or ``lambdas/escalator_cli`` imports it, and the Lambda
bundle does not hold it).

One subpackage per job, on floors: a subpackage imports only from the floors below it
(``tests/unit/test_dependencies.py`` holds the plan and fails on an arrow back up or a
circle).

- floor 0, here: ``polling`` (waiting for a condition in real time) and ``loopback`` (an
  HTTP server on 127.0.0.1), which every floor may use.
- floor 1: ``emulation``: AWS as the template describes it, on moto (Lambda, Step
  Functions, SQS, IAM, the function URL, the schedule); ``peers``: the real peers on
  loopback (Twilio, SMTP and PubNub stubs, PostgreSQL, its TLS front, a lossy relay);
  ``build``: what ``make install`` and the bundle's provenance need.
- floor 2: ``local``: the local stack (``escalator local``, ``demo``, the drill, the
  test pipeline); ``docs``: the generators of ``docs/`` (``make docs``);
  ``mutation``: what the tests catch, measured (``make mutate``, ``make least-privilege``).
- floor 3: ``rehearsal``: a deploy rehearsal of the synthesized template.
"""

from __future__ import annotations

from pathlib import Path

# The project's checkout: where the harness finds docs/, sql/, the CDK app and the tests.
PROJECT = Path(__file__).resolve().parents[1]

# The caller-id registry of the demo and the tests: a default, and two prefixes of which
# the longer wins for +38591... numbers.
CALLER_IDS = {"default": "+12025550123", "+385": "+38512345678", "+38591": "+38591000000"}
