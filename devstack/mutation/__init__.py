"""What the tests catch, measured: mutation testing of the safety-critical modules
(``mutate``: ``make mutate``) and each IAM grant of the template taken away
(``least_privilege``: ``make least-privilege``). Neither runs in ``make test``.

May import: ``emulation``, ``peers`` and floor 0.
"""
