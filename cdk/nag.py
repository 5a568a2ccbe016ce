"""cdk-nag (AwsSolutions) wiring and the one way this app acknowledges a finding.

cdk-nag 3 reports through CDK's policy-validation plugins: an unacknowledged finding makes
``app.synth()`` fail and lands in ``<outdir>/validation-report.json``. Acknowledgements
are written into the template metadata (``cdk_nag.rules_to_suppress``) so every one of
them, with its reason, can be read back from the synthesized templates.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

MIN_REASON = 40  # a reason is a sentence a reviewer can check, not a shrug


def enable(app: App) -> None:
    """Run the AwsSolutions pack on every stack of ``app`` at synth."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True))


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge ``rule`` (e.g. ``AwsSolutions-IAM5[Resource::*]``) on ``scope`` and below."""
    if not rule.startswith("AwsSolutions-"):
        raise ValueError(f"not an AwsSolutions rule id: {rule!r}")
    if len(reason.strip()) < MIN_REASON:
        raise ValueError(f"acknowledging {rule} needs a real reason, got {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason.strip()))


def acknowledge_many(scope: IConstruct, rules: list[str], reason: str) -> None:
    """The same reason for several findings of one kind (cdk-nag 3 has no prefix matching)."""
    for rule in rules:
        acknowledge(scope, rule, reason)
