"""The rehearsal: the synthesized stack (``cdk.out/``) run on one machine, as deployed.

Everything it runs is read from the CloudFormation templates CDK wrote: the functions (image,
command, environment, memory, timeout, ephemeral storage, architecture, EFS mounts and their
IAM), the queue and its dead-letter queue, the secret, buckets and tables, the HTTP API
(routes, JWT authorizer, CORS, stage), the SQS event source mapping, the warmup schedule and
the after-deploy trigger. AWS services are moto on loopback; the functions are the real
images under the real Lambda Runtime Interface Emulator (``containers``).

Dev-only: nothing here is copied into a function image.

- :mod:`rehearsal.template`: read a cloud assembly, resolve intrinsics to local stand-ins.
- :mod:`rehearsal.aws`: the moto server and the resources created from template properties.
- :mod:`rehearsal.frontdoor`: the HTTP API as API Gateway runs it.
- :mod:`rehearsal.functions`: function runtimes (containers) and Lambda's invoke semantics.
- :mod:`rehearsal.esm`: the SQS event source mapping.
- :mod:`rehearsal.hub`: the stand-in for the Hugging Face Hub.
- :mod:`rehearsal.stack`: everything together (``python -m rehearsal``, ``make rehearse``).
"""
