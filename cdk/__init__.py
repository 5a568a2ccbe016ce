"""The hflambda CDK app: one module per stack or construct, composed in ``cdk.app``.

Stacks by concern, each named ``<stack_prefix><Concern>``:

- ``network``: the VPC (serving subnets with no route out, an egress subnet for warmup
  only), the NAT (gateway, instance or none), the S3 and DynamoDB gateway endpoints and the
  SQS, Secrets Manager and S3 Vectors interface endpoints, flow logs.
- ``storage``: the EFS model store (access point, file-system policy), the vectors (an S3
  Vectors bucket + index and the DynamoDB catalogue table, both retained), the index queue
  with its dead-letter queue, the HF token secret. It grants nothing.
- ``service``: the three container-image functions (``model_function``: predict, index,
  warmup), the HTTP API with its JWT authorizer (``predict_api``), the SQS event source,
  the warmup schedule and the after-deploy warmup run; every grant is made there (its
  docstring has the who-may-touch-what table).
- ``monitoring``: the alarms of the runbook, their SNS topic and the dashboard.

Settings come from CDK context (``cdk.config``: limits declared on the fields, the table in
``docs/deploy.md`` generated from them); ``cdk.nag`` attaches cdk-nag, ``cdk.check`` is
``make synth``.
"""
