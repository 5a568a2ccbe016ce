"""``make synth``: synthesize, run cdk-nag (AwsSolutions) and cfn-lint; non-zero on any finding.

    python -m cdk.check                 # the default context, plus the other NAT modes / arm64
    python -m cdk.check --only default  # one variant
    python -m cdk.check -c nat_mode=instance -c auth_issuer=https://...  # your own context

Needs no AWS credentials and no Docker engine: stacks are environment-agnostic unless
``account``/``region`` are set, and image assets are only staged, never built.
The default variant writes ``cdk.out/`` (what ``cdk deploy --app cdk.out`` would use);
the others write ``build/synth/<variant>/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdk.config import REPO_ROOT

# Every setting that changes which resources exist gets synthesized and checked.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "nat-instance": {"nat_mode": "instance", "tracing": True},
    "no-nat-arm64": {
        "nat_mode": "none",
        "model_mirror_bucket": "example-model-mirror",
        "architecture": "arm64",
        "predict_provisioned_concurrency": 1,
        "hf_token_secret_name": "hflambda/hf-token",
        "cors_allow_origins": "https://app.example.com",
        "alarm_email": "ops@example.com",
    },
}
LINT_REGIONS = ["us-east-1"]


@dataclass
class Outcome:
    variant: str
    outdir: Path
    seconds: float = 0.0
    nag: list[str] = field(default_factory=list)
    lint_errors: list[str] = field(default_factory=list)
    lint_warnings: list[str] = field(default_factory=list)
    acknowledged: int = 0
    failure: str = ""

    @property
    def ok(self) -> bool:
        return not (self.nag or self.lint_errors or self.failure)


def nag_findings(outdir: Path) -> list[str]:
    """Unacknowledged findings from CDK's validation report (absent when there are none)."""
    report = outdir / "validation-report.json"
    if not report.exists():
        return []
    lines = []
    for plugin in json.loads(report.read_text()).get("pluginReports", []):
        for violation in plugin.get("violations", []):
            for construct in violation.get("violatingConstructs", []):
                lines.append(
                    f"{violation['ruleName']} at {construct['constructPath']}: {violation['description']}"
                )
    return lines


def acknowledgements(outdir: Path) -> list[dict[str, str]]:
    """Every cdk-nag acknowledgement written into the templates (id + reason)."""
    found = []
    for template in sorted(outdir.glob("*.template.json")):
        for resource in json.loads(template.read_text()).get("Resources", {}).values():
            rules = resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
            found.extend(rules)
    return found


def lint(outdir: Path) -> tuple[list[str], list[str]]:
    """cfn-lint every template: (errors, warnings)."""
    from cfnlint.api import ManualArgs, lint_file

    errors: list[str] = []
    warnings: list[str] = []
    for template in sorted(outdir.glob("*.template.json")):
        for match in lint_file(template, ManualArgs(regions=LINT_REGIONS)):
            line = f"{template.name}: {match.rule.id} {match.message}"
            (errors if match.rule.id.startswith("E") else warnings).append(line)
    return errors, warnings


def synth(variant: str, context: dict[str, Any], outdir: Path) -> Outcome:
    """Synthesize one variant with cdk-nag attached and lint what it wrote."""
    from cdk.app import build_app

    outcome = Outcome(variant, outdir)
    started = time.perf_counter()
    if outdir.exists():
        import shutil

        shutil.rmtree(outdir)
    try:
        build_app(context, outdir=outdir).synth()
    except Exception as error:
        outcome.nag = nag_findings(outdir)
        if not outcome.nag:
            outcome.failure = f"{type(error).__name__}: {error}"
    if outdir.exists():
        outcome.lint_errors, outcome.lint_warnings = lint(outdir)
        outcome.acknowledged = len(acknowledgements(outdir))
        if not outcome.failure and not list(outdir.glob("*.template.json")):
            outcome.failure = "no templates written"
    outcome.seconds = time.perf_counter() - started
    return outcome


def parse_context(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"-c expects key=value, got {pair!r}")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="synth + cdk-nag + cfn-lint")
    parser.add_argument("--only", choices=sorted(VARIANTS), help="check one variant")
    parser.add_argument("-c", "--context", action="append", default=[], help="key=value (custom run)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print cfn-lint warnings")
    args = parser.parse_args(argv)

    if args.context:
        runs = {"custom": parse_context(args.context)}
    elif args.only:
        runs = {args.only: VARIANTS[args.only]}
    else:
        runs = VARIANTS
    started = time.perf_counter()
    outcomes = []
    for name, context in runs.items():
        outdir = REPO_ROOT / ("cdk.out" if name in {"default", "custom"} else f"build/synth/{name}")
        outcomes.append(synth(name, context, outdir))

    print(f"{'variant':<14} {'result':<6} {'nag':>4} {'acked':>6} {'lint E':>7} {'lint W':>7} {'secs':>6}")
    for o in outcomes:
        print(
            f"{o.variant:<14} {'ok' if o.ok else 'FAIL':<6} {len(o.nag):>4} {o.acknowledged:>6} "
            f"{len(o.lint_errors):>7} {len(o.lint_warnings):>7} {o.seconds:>6.1f}"
        )
    for o in outcomes:
        for line in [o.failure] if o.failure else []:
            print(f"[{o.variant}] synth failed: {line}", file=sys.stderr)
        for line in o.nag:
            print(f"[{o.variant}] cdk-nag: {line}", file=sys.stderr)
        for line in o.lint_errors:
            print(f"[{o.variant}] cfn-lint: {line}", file=sys.stderr)
        if args.verbose:
            for line in o.lint_warnings:
                print(f"[{o.variant}] cfn-lint warning: {line}")
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
