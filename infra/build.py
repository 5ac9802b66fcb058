"""`make package`: write the merge template, run `chalice package` with it, lint the result.

    python -m infra.build [--stage dev|prod ...] [--out build] [--no-lint]

For each stage: `build/<stage>-merge.json` (this repo's CloudFormation), then
`build/<stage>/sam.json` and `build/<stage>/deployment.zip` (what `aws cloudformation
package/deploy` takes). Also the other path's templates: `build/<stage>-infra.json` (the stack
`make deploy` creates before `chalice deploy`) and `build/<stage>-rehearsal.json` (its variant
for moto). cfn-lint runs on every template; any error fails the build.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from infra import rehearsal, template

ROOT = template.ROOT


def write_merge_template(stage: str, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stage}-merge.json"
    path.write_text(json.dumps(template.build(stage), indent=1, sort_keys=False) + "\n")
    return path


def write_infra_templates(stage: str, out: Path) -> list[Path]:
    """The `chalice deploy` path's stack, and the rehearsal's variant of it."""
    out.mkdir(parents=True, exist_ok=True)
    infra = template.build(stage, target="infra")
    written = []
    for name, body in (("infra", infra), ("rehearsal", rehearsal.variant(infra)[0])):
        path = out / f"{stage}-{name}.json"
        path.write_text(json.dumps(body, indent=1) + "\n")
        written.append(path)
    return written


def chalice_package(stage: str, merge: Path, out: Path) -> Path:
    """Run `chalice package` in a child process (it imports app.py itself)."""
    target = out / stage
    shutil.rmtree(target, ignore_errors=True)
    env = dict(os.environ)
    # chalice insists on a region although the template is region-free.
    env.setdefault("AWS_DEFAULT_REGION", env.get("AWS_REGION", "eu-west-1"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.chalice_pinned",
            "--project-dir",
            str(ROOT),
            "package",
            "--stage",
            stage,
            "--merge-template",
            str(merge.resolve()),
            str(target.resolve()),
        ],
        check=True,
        cwd=ROOT,
        env=env,
    )
    return target / "sam.json"


def cfn_lint(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cfnlint.runner import main; sys.exit(main())",
            "--format",
            "parseable",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def package(stage: str, out: Path) -> Path:
    merge = write_merge_template(stage, out)
    return chalice_package(stage, merge, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", action="append", choices=sorted(template.STAGES))
    parser.add_argument("--out", type=Path, default=ROOT / "build")
    parser.add_argument("--no-lint", action="store_true")
    args = parser.parse_args(argv)
    built: list[Path] = []
    for stage in args.stage or ["dev", "prod"]:
        started = time.monotonic()
        sam = package(stage, args.out)
        built.append(sam)
        built.extend(write_infra_templates(stage, args.out))
        zip_size = (sam.parent / "deployment.zip").stat().st_size
        print(
            f"{stage}: {sam.relative_to(ROOT) if sam.is_relative_to(ROOT) else sam} "
            f"{sam.stat().st_size:,} bytes, "
            f"{len(json.loads(sam.read_text())['Resources'])} resources, "
            f"deployment.zip {zip_size:,} bytes, {time.monotonic() - started:.1f} s"
        )
    if args.no_lint:
        return 0
    lint = cfn_lint(built)
    sys.stdout.write(lint.stdout)
    sys.stderr.write(lint.stderr)
    # cfn-lint exit codes are bit flags: 2 = errors, 4 = warnings, 8 = informational.
    if lint.returncode & 2 or lint.returncode & 1:
        print("cfn-lint: errors in the packaged template", file=sys.stderr)
        return 1
    print(f"cfn-lint: no errors (exit {lint.returncode})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
