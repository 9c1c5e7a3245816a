"""What the build needs beside the code: warming mypy's cache at ``make install``
(``typecheck_cache``) and deriving again where the RDS CA bundle shipped with the
functions comes from (``rds_ca_bundle``).

May import: the runtime package and the CDK app's ``infra.bundling``; nothing else of
``devstack``.
"""
