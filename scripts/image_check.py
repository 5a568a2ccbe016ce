"""``make image-check``: build each function's image contents without Docker, smoke-run its
handler in isolation, and report how big each dependency set is.

For every function (predict, index, warmup) this

1. installs the function's requirement set (the same ``requirements/<set>.txt`` its Dockerfile
   installs, with the same ``pip install --no-deps --only-binary=:all: --target``) into
   ``build/<fn>/``;
2. copies the code in exactly as the Dockerfile does (``layers/hflambda`` -> ``hflambda``,
   ``functions/__init__.py`` and ``functions/<fn>``, the registry -> ``models.toml``);
3. runs the handler from there with ``python -I -S``: no user site, no PYTHON* variables, no
   interpreter site-packages, nothing on ``sys.path`` but the standard library and
   ``build/<fn>``, on a local store warmed beforehand by the dev environment's warmup:
   predict gets an API Gateway payload-2.0 ``GET /health``, index an SQS event with one
   upsert, warmup a run whose models are all current (it must do no work);
4. checks that predict and index imported none of torch, transformers, optimum,
   huggingface_hub, and that their sets do not even contain them;
5. writes ``build/image-check.json`` and prints a table (installed MiB, ratio to warmup).

Exit status 1 if an install, a smoke run or the lean-set check fails. The size target
(predict/index <= 25% of warmup) is reported, and enforced only with ``--enforce-ratio``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
WORK = BUILD / "image-check"
FUNCTIONS = {"predict": "serve", "index": "serve", "warmup": "warmup"}
BANNED = ("torch", "transformers", "optimum", "huggingface_hub")
RATIO_TARGET = 0.25
MIB = 1024 * 1024

# Runs inside `python -I -S`: only the stdlib until the target directory is added.
DRIVER = r"""
import json, site, sys, time
target, name, event_json, banned = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
site.addsitedir(target)  # the image's /var/task (processes .pth files like the image would)
stdlib = [p for p in sys.path if not p.startswith(target)]
assert not any("site-packages" in p or "dist-packages" in p for p in stdlib), stdlib

class Context:
    function_name = "hflambda-" + name
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:hflambda-" + name
    memory_limit_in_mb = 3008
    aws_request_id = "image-check"
    log_group_name = "/aws/lambda/hflambda-" + name
    log_stream_name = "image-check"
    def get_remaining_time_in_millis(self):
        return 600_000

started = time.perf_counter()
module = __import__("functions." + name + ".handler", fromlist=["handler"])
imported = time.perf_counter() - started
result = module.handler(json.loads(event_json), Context())
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(banned))
print("IMAGE-CHECK-RESULT " + json.dumps(
    {"result": result, "import_s": round(imported, 2), "banned_loaded": loaded, "sys_path": sys.path},
    default=str,
))
"""


@dataclass
class FunctionReport:
    function: str
    requirements: str
    deps_bytes: int = 0
    code_bytes: int = 0
    packages: int = 0
    largest: list[tuple[str, float]] = field(default_factory=list)
    banned_in_set: list[str] = field(default_factory=list)
    install_s: float = 0.0
    smoke: str = "not run"
    smoke_ok: bool = False
    smoke_detail: str = ""
    import_s: float | None = None
    ratio_to_warmup: float | None = None

    @property
    def deps_mib(self) -> float:
        return self.deps_bytes / MIB


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def requirements_file(function: str) -> Path:
    return ROOT / "requirements" / f"{FUNCTIONS[function]}.txt"


def install(function: str, *, clean: bool, torch_index: str | None, report: FunctionReport) -> None:
    """pip install the function's set into build/<fn>/ (skipped when that exact file is installed)."""
    target = BUILD / function
    reqs = requirements_file(function)
    digest = hashlib.sha256(reqs.read_bytes()).hexdigest()
    stamp = target / ".requirements.sha256"
    if clean or not stamp.exists() or stamp.read_text() != digest:
        shutil.rmtree(target, ignore_errors=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            "--target",
            str(target),
            "-r",
            str(reqs),
        ]
        if torch_index and function == "warmup":
            cmd += ["--extra-index-url", torch_index]
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        report.install_s = round(time.perf_counter() - started, 1)
        if done.returncode != 0:
            raise RuntimeError(f"pip install for {function} failed:\n{done.stderr[-3000:]}")
        stamp.write_text(digest)
    sizes: dict[str, int] = {}
    for entry in target.iterdir():
        if entry.name in {"hflambda", "functions", "models.toml", ".requirements.sha256", "bin"}:
            continue
        key = entry.name.split("-")[0].removesuffix(".libs").removesuffix(".dist")
        sizes[key] = sizes.get(key, 0) + (tree_bytes(entry) if entry.is_dir() else entry.stat().st_size)
    report.deps_bytes = sum(sizes.values())
    report.packages = sum(1 for p in target.glob("*.dist-info"))
    report.largest = [(k, round(v / MIB, 1)) for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:6]]
    report.banned_in_set = sorted(n for n in BANNED if (target / n).exists())


def copy_code(function: str, registry: Path) -> int:
    """Lay the code out as the Dockerfile's COPY lines do; return its size."""
    target = BUILD / function
    for stale in ("hflambda", "functions"):
        shutil.rmtree(target / stale, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "layers" / "hflambda", target / "hflambda", ignore=ignore)
    (target / "functions").mkdir()
    shutil.copy2(ROOT / "functions" / "__init__.py", target / "functions" / "__init__.py")
    shutil.copytree(ROOT / "functions" / function, target / "functions" / function, ignore=ignore)
    shutil.copy2(registry, target / "models.toml")
    return (
        tree_bytes(target / "hflambda")
        + tree_bytes(target / "functions")
        + (target / "models.toml").stat().st_size
    )


def base_env(registry: Path, service: str) -> dict[str, str]:
    """What the function sees: the settings CDK sets, pointed at the local store."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(WORK / "home"),
        "HF_HOME": str(WORK / "hf-home"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "image-check",
        "AWS_SECRET_ACCESS_KEY": "image-check",
        "POWERTOOLS_SERVICE_NAME": service,
        "POWERTOOLS_METRICS_NAMESPACE": "hflambda",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_DEV": "false",
        "HFLAMBDA_MODEL_STORE": str(WORK / "store"),
        "HFLAMBDA_REGISTRY": str(registry),
        "HFLAMBDA_PROFILE": "local",
        "HFLAMBDA_VECTOR_URI": str(WORK / "vectors"),
        "HFLAMBDA_AUTH_ISSUER": "https://clerk.example.com",
        "HFLAMBDA_AUTH_AUDIENCE": "hflambda",
    }


def warm_store(registry: Path) -> str:
    """Warm build/image-check/store with the dev environment's warmup (it has the model sources)."""
    env = {**os.environ, **base_env(registry, "warmup")}
    cli = Path(sys.executable).with_name("hflambda")
    cmd = [str(cli), "warmup"] if cli.exists() else [sys.executable, "-m", "hflambda.cli", "warmup"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(
            f"warming the local store failed ({' '.join(cmd)}):\n{(done.stdout + done.stderr)[-3000:]}"
        )
    return done.stdout[-2000:]


def event_for(function: str) -> dict[str, Any]:
    if function == "predict":
        return {
            "version": "2.0",
            "routeKey": "GET /health",
            "rawPath": "/health",
            "rawQueryString": "",
            "headers": {"host": "example.execute-api.us-east-1.amazonaws.com", "user-agent": "image-check"},
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "example",
                "domainName": "example.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "example",
                "http": {
                    "method": "GET",
                    "path": "/health",
                    "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1",
                    "userAgent": "image-check",
                },
                "requestId": "image-check",
                "routeKey": "GET /health",
                "stage": "$default",
                "time": "01/Jan/2026:00:00:00 +0000",
                "timeEpoch": 1767225600000,
            },
            "isBase64Encoded": False,
        }
    if function == "index":
        body = json.dumps(
            {
                "v": 1,
                "op": "upsert",
                "user_id": "image-check",
                "document": {"id": "doc-1", "text": "Lambda images stay lean.", "metadata": {}},
            }
        )
        return {
            "Records": [
                {
                    "messageId": "image-check-1",
                    "receiptHandle": "image-check",
                    "body": body,
                    "attributes": {
                        "ApproximateReceiveCount": "1",
                        "SentTimestamp": "1767225600000",
                        "SenderId": "image-check",
                        "ApproximateFirstReceiveTimestamp": "1767225600000",
                    },
                    "messageAttributes": {},
                    "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:hflambda-index",
                    "awsRegion": "us-east-1",
                }
            ]
        }
    return {}


def judge(function: str, result: Any) -> tuple[bool, str]:
    """Did the smoke invocation do what a healthy function does on a warmed store?"""
    if function == "predict":
        status = result.get("statusCode")
        body = json.loads(result.get("body") or "{}")
        ok = (
            status == 200
            and body.get("models_ready", 0) >= 1
            and body.get("models_ready") == body.get("models_total")
        )
        return ok, f"GET /health -> {status} {json.dumps(body)}"
    if function == "index":
        failures = result.get("batchItemFailures")
        return failures == [], f"1 SQS record -> batchItemFailures={failures}"
    statuses = {m["alias"]: m["status"] for m in result.get("models", [])}
    ok = bool(statuses) and result.get("ok") is True and set(statuses.values()) <= {"current", "checked"}
    return ok, f"warmup on a current store -> {statuses}"


def smoke(function: str, registry: Path, report: FunctionReport) -> None:
    target = BUILD / function
    env = base_env(target / "models.toml", function)
    cmd = [
        sys.executable,
        "-I",
        "-S",
        "-c",
        DRIVER,
        str(target),
        function,
        json.dumps(event_for(function)),
        ",".join(BANNED),
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=WORK, timeout=900)
    except subprocess.TimeoutExpired:
        report.smoke, report.smoke_detail = "FAIL", "timed out after 900 s"
        return
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("IMAGE-CHECK-RESULT ")), None)
    if done.returncode != 0 or line is None:
        report.smoke = "FAIL"
        report.smoke_detail = (done.stderr or done.stdout)[-2500:]
        return
    payload = json.loads(line.removeprefix("IMAGE-CHECK-RESULT "))
    report.import_s = payload["import_s"]
    ok, detail = judge(function, payload["result"])
    outside = [
        p for p in payload["sys_path"] if not (p.startswith(str(target)) or p.startswith(sys.base_prefix))
    ]
    if outside:
        ok, detail = False, f"sys.path leaked {outside}"
    if function != "warmup" and payload["banned_loaded"]:
        ok, detail = False, f"imported {payload['banned_loaded']}"
    report.smoke, report.smoke_ok, report.smoke_detail = ("ok" if ok else "FAIL"), ok, detail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", action="store_true", help="reinstall the dependency sets")
    parser.add_argument("--sizes-only", action="store_true", help="install and measure; no smoke runs")
    parser.add_argument("--enforce-ratio", action="store_true", help=f"fail above {RATIO_TARGET:.0%}")
    parser.add_argument("--registry", default="models.toml", help="registry copied into each image")
    parser.add_argument(
        "--torch-index",
        default=os.environ.get("TORCH_INDEX"),
        help="extra index for torch +cpu (the Dockerfile uses the PyTorch CPU index)",
    )
    args = parser.parse_args(argv)

    registry = (ROOT / args.registry).resolve()
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "home").mkdir(exist_ok=True)
    reports = {fn: FunctionReport(fn, requirements_file(fn).relative_to(ROOT).as_posix()) for fn in FUNCTIONS}
    failed = False
    for fn, report in reports.items():
        print(f"installing {fn} ({report.requirements}) into build/{fn}/ ...", flush=True)
        try:
            install(fn, clean=args.clean, torch_index=args.torch_index, report=report)
        except RuntimeError as error:
            print(error, file=sys.stderr)
            report.smoke, failed = "FAIL", True
            continue
        report.code_bytes = copy_code(fn, registry)
    warm = reports["warmup"].deps_bytes
    for report in reports.values():
        report.ratio_to_warmup = round(report.deps_bytes / warm, 3) if warm else None

    if not args.sizes_only and not failed:
        print("warming build/image-check/store with the dev environment's `hflambda warmup` ...", flush=True)
        try:
            warm_store(registry)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            print(error, file=sys.stderr)
            failed = True
        else:
            for fn, report in reports.items():
                print(f"smoke-running {fn} with python -I -S from build/{fn}/ ...", flush=True)
                smoke(fn, registry, report)

    lean_ok = all(not reports[fn].banned_in_set for fn in ("predict", "index"))
    ratios = [reports[fn].ratio_to_warmup or 0 for fn in ("predict", "index")]
    ratio_ok = all(r <= RATIO_TARGET for r in ratios)
    smoke_ok = args.sizes_only or all(r.smoke_ok for r in reports.values())
    summary = {
        "functions": {fn: asdict(r) | {"deps_mib": round(r.deps_mib, 1)} for fn, r in reports.items()},
        "lean_sets_ok": lean_ok,
        "ratio_target": RATIO_TARGET,
        "ratio_target_met": ratio_ok,
        "smoke_ok": smoke_ok,
        "python": sys.version.split()[0],
    }
    (BUILD / "image-check.json").write_text(json.dumps(summary, indent=2) + "\n")

    print()
    print(
        f"{'function':<9} {'set':<12} {'deps MiB':>9} {'code KiB':>9} {'vs warmup':>10} {'import s':>9}  smoke"
    )
    for fn, r in reports.items():
        ratio = f"{r.ratio_to_warmup:.0%}" if r.ratio_to_warmup is not None else "-"
        imp = f"{r.import_s:.2f}" if r.import_s is not None else "-"
        print(
            f"{fn:<9} {FUNCTIONS[fn] + '.txt':<12} {r.deps_mib:>9.1f} {r.code_bytes / 1024:>9.0f} {ratio:>10} {imp:>9}  {r.smoke}"
        )
    print()
    for fn, r in reports.items():
        print(f"{fn}: largest {', '.join(f'{n} {mib} MiB' for n, mib in r.largest)}")
        if r.smoke_detail:
            print(f"{fn}: {r.smoke_detail}")
    print()
    print(f"lean serve sets (no {', '.join(BANNED)}): {'ok' if lean_ok else 'FAIL'}")
    print(f"predict/index <= {RATIO_TARGET:.0%} of warmup: {'met' if ratio_ok else 'NOT MET'}")
    print("wrote build/image-check.json")
    if failed or not lean_ok or not smoke_ok:
        return 1
    return 1 if args.enforce_ratio and not ratio_ok else 0


if __name__ == "__main__":
    sys.exit(main())
