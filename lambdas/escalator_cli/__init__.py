"""The ``escalator`` command: what an operator runs against a deployment (``send``,
``status``, ``executions``, ``dlq``, ``db``, ``verify``). Installed on an operator's
machine, never deployed to Lambda.

It imports the runtime package (``escalator``) and nothing of the development harness:
the harness adds its own commands (``local``, ``demo``) through the entry-point group
``escalator.commands``, loaded only when a command not listed here is asked for.
"""
