"""AWS as the synthesized template describes it, emulated on moto, as strict as AWS where
it bites: the template read back (``template``), IAM from its roles (``iam``), the
moto adapter's one table of patches (``moto_adapter``) and its replacements, a module
per service of moto's (``moto_services``), the state machines
(``stepfunctions``), the queues and Lambda's SQS event source (``sqs``), the function
URL (``function_url``), the schedule (``schedule``), the Lambda sandbox, context and
events (``sandbox``, ``context``, ``events``, ``thread_metrics``), boto3 sessions
(``sessions``) and what of moto is imported (``moto_imports``: Batch without its backend).

May import: the runtime package and ``devstack``'s floor 0 (``polling``, ``loopback``).
Not the peers, the local stack or anything above. ``context`` and ``sandbox`` import no
moto: a sandbox process starts without it.
"""

from devstack.emulation.moto_imports import without_batch_backend

# (before any module of this package imports moto's Step Functions interpreter)
without_batch_backend()
