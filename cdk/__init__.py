"""The hflambda CDK app: one module per stack or construct, composed in ``cdk.app``.

Stacks by concern: ``network`` (VPC, endpoints, NAT), ``storage`` (EFS model store,
vectors bucket, index queue, HF token secret), ``service`` (the three functions, the HTTP
API, the queue trigger, the warmup schedule; every grant is made there), ``monitoring``
(alarms and the dashboard). Settings come from CDK context (``cdk.config``).
"""
