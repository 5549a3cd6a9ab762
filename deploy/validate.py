"""Offline checks of deploy/: Kubernetes manifests against the Kubernetes JSON schema
(kubernetes-validate, strict: unknown fields are errors) plus speechmill-specific checks,
and the Dockerfiles' structure (dockerfile-parse). Run by deploy/validate.sh with the
peers venv's python (scripts/peers.sh installs both packages). One line per file:
`ok    <file> (<what was checked>)` or `FAIL  <file>: <reason>`; exits 1 on any failure.
"""

import argparse
import fnmatch
import glob
import json
import os
import re
import shlex
import sys

import kubernetes_validate
import yaml
from dockerfile_parse import DockerfileParser

# Kubernetes versions the manifests must be valid for (oldest we claim, newest schema).
K8S_VERSIONS = ("1.30.0", "1.37.0")

# The speechmill subcommands and their long flags (src/cli/mod.rs, src/cli/cluster.rs;
# keep in step). A container command must name one of these, with flags of that subcommand.
SUBCOMMANDS = {
    "run": {"--store", "--cluster", "--partitions", "--set", "--until"},
    "plan": {"--store", "--set", "--until"},
    "sql": {"--store", "--format"},
    "inspect": {"--store", "--json"},
    "doctor": set(),
    "decode": {"--out", "--max-duration-s"},
    "scheduler": {"--bind", "--external-host", "--executor-timeout"},
    "executor": {"--scheduler", "--bind", "--external-host", "--port", "--grpc-port",
                 "--concurrent-tasks", "--work-dir"},
}
# Which subcommand each image's default command must run.
IMAGE_ROLE = {
    "scheduler.Dockerfile": "scheduler",
    "executor.Dockerfile": "executor",
    "executor-cuda.Dockerfile": "executor",
}

# name[:tag][@digest] with an optional registry host[:port]; a tag or digest is required
# and `latest` is refused (builds must be reproducible).
IMAGE_RE = re.compile(
    r"^(?:[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]+)?/)?"     # registry host
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"              # first path component
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"        # more path components
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@sha256:[0-9a-f]{64})?$"
)


class Failure(Exception):
    pass


def check_command(argv, where, role=None):
    """argv is the speechmill command line after the program name."""
    if not argv:
        raise Failure(f"{where}: no speechmill subcommand")
    sub = argv[0]
    if sub not in SUBCOMMANDS:
        raise Failure(f"{where}: `{sub}` is not a speechmill subcommand ({', '.join(sorted(SUBCOMMANDS))})")
    if role and sub != role:
        raise Failure(f"{where}: runs `{sub}`, this image must run `{role}`")
    flags = SUBCOMMANDS[sub]
    if flags is not None:
        for a in argv[1:]:
            if a.startswith("--") and a.split("=", 1)[0] not in flags:
                raise Failure(f"{where}: `{sub}` has no flag {a.split('=', 1)[0]} (known: {' '.join(sorted(flags))})")
    return sub


def flag_value(argv, flag):
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


# ---------------------------------------------------------------- kubernetes

def load_manifests(k8s_dir):
    out = {}
    for path in sorted(glob.glob(os.path.join(k8s_dir, "*.yaml")) + glob.glob(os.path.join(k8s_dir, "*.yml"))):
        try:
            with open(path) as f:
                docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            out[path] = Failure("YAML: " + " ".join(str(e).split()))
            continue
        out[path] = docs
    return out


def pod_spec(doc):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return (spec.get("template") or {}).get("spec")
    if kind == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    if kind == "Pod":
        return spec
    return None


def check_container(doc, c, services, secrets):
    name = f"{doc['kind']}/{doc['metadata']['name']} container {c.get('name')}"
    image = c.get("image", "")
    if not re.match(r"^(.*/)?speechmill-", image):
        return
    if c.get("command"):
        raise Failure(f"{name}: sets `command`; the images' entrypoint is speechmill, give `args`")
    args = [str(a) for a in c.get("args") or []]
    sub = check_command(args, name)
    env = {e["name"]: e for e in c.get("env") or []}
    for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", " ".join(args)):
        if var not in env:
            raise Failure(f"{name}: args use $({var}) but env does not define {var}")
    for ref in c.get("envFrom") or []:
        sref = ref.get("secretRef")
        if sref and sref.get("name") not in secrets and not sref.get("optional"):
            raise Failure(f"{name}: envFrom secret {sref.get('name')} is not defined in deploy/k8s")
    gpu = ((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu")
    if gpu and "cuda" not in image:
        raise Failure(f"{name}: asks for nvidia.com/gpu but image {image} is not the CUDA executor")
    if "cuda" in image and not gpu:
        raise Failure(f"{name}: CUDA image without an nvidia.com/gpu limit")
    if sub == "executor":
        sched = flag_value(args, "--scheduler")
        if sched not in services:
            raise Failure(f"{name}: --scheduler {sched} is not a Service in deploy/k8s ({', '.join(sorted(services)) or 'none'})")
        ext = flag_value(args, "--external-host")
        m = re.fullmatch(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", ext or "")
        field = m and (((env.get(m.group(1)) or {}).get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if field != "status.podIP":
            raise Failure(f"{name}: --external-host must be the pod IP (an env var from fieldRef status.podIP), got {ext}"
                          + (f" with {m.group(1)} from {field}" if m else ""))
        ports = {p.get("containerPort") for p in c.get("ports") or []}
        for flag in ("--port", "--grpc-port"):
            v = flag_value(args, flag)
            if v is None or int(v) not in ports:
                raise Failure(f"{name}: {flag} {v} is not a containerPort")
        if AWS_ENV - secret_keys(c, secrets, env):
            raise Failure(f"{name}: S3 settings missing: {', '.join(sorted(AWS_ENV - secret_keys(c, secrets, env)))}")
    if sub == "run":
        cluster = flag_value(args, "--cluster")
        if cluster is not None and cluster.removeprefix("df://") not in services:
            raise Failure(f"{name}: --cluster {cluster} is not df://<a Service in deploy/k8s>")


AWS_ENV = {"AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def secret_keys(c, secrets, env):
    keys = set(env)
    for ref in c.get("envFrom") or []:
        sref = ref.get("secretRef")
        if sref and sref.get("name") in secrets:
            keys |= secrets[sref["name"]]
    return keys


def check_k8s(repo, k8s_dir, report):
    manifests = load_manifests(k8s_dir)
    services, secrets = set(), {}
    for docs in manifests.values():
        if isinstance(docs, Failure):
            continue
        for d in docs:
            if d.get("kind") == "Service":
                for p in (d.get("spec") or {}).get("ports") or []:
                    services.add(f"{d['metadata']['name']}:{p.get('port')}")
            if d.get("kind") == "Secret":
                secrets[d["metadata"]["name"]] = set((d.get("stringData") or {}) | (d.get("data") or {}))
    images_used = set()
    for docs in manifests.values():
        if isinstance(docs, Failure):
            continue
        for d in docs:
            for c in (pod_spec(d) or {}).get("containers") or []:
                images_used.add(c.get("image", "").rsplit(":", 1)[0])
    for path, docs in manifests.items():
        rel = os.path.relpath(path, repo)
        try:
            if isinstance(docs, Failure):
                raise docs
            if not docs:
                raise Failure("no documents")
            what, schema = [], False
            for d in docs:
                if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
                    raise Failure("a document without apiVersion/kind")
                label = f"{d['kind']}/{(d.get('metadata') or {}).get('name', '?')}"
                if d["kind"] == "Kustomization":
                    check_kustomization(d, k8s_dir, images_used)
                    what.append("Kustomization: resources exist, images used")
                    continue
                schema = True
                for v in K8S_VERSIONS:
                    try:
                        kubernetes_validate.validate(d, v, strict=True)
                    except kubernetes_validate.ValidationError as e:
                        at = "/".join(str(p) for p in e.absolute_path)
                        raise Failure(f"{label} (Kubernetes {v}) at {at or '/'}: {e.message}")
                    except kubernetes_validate.SchemaNotFoundError as e:
                        raise Failure(f"{label}: {e.message}")
                ps = pod_spec(d)
                for c in (ps or {}).get("containers") or []:
                    check_container(d, c, services, secrets)
                what.append(label)
            report(True, rel, ", ".join(what) + (f"; schema {'+'.join(K8S_VERSIONS)} strict" if schema else ""))
        except Failure as e:
            report(False, rel, str(e))


def check_kustomization(d, k8s_dir, images_used):
    for r in d.get("resources") or []:
        if not os.path.exists(os.path.join(k8s_dir, r)):
            raise Failure(f"resource {r} does not exist")
    for img in d.get("images") or []:
        if img.get("name") not in images_used:
            raise Failure(f"images: {img.get('name')} is no container's image")
    listed = set(d.get("resources") or [])
    for path in glob.glob(os.path.join(k8s_dir, "*.yaml")):
        base = os.path.basename(path)
        if base != "kustomization.yaml" and base not in listed and not base.endswith(".example.yaml"):
            raise Failure(f"{base} is neither listed in resources nor named *.example.yaml")


# ---------------------------------------------------------------- dockerfiles

def instruction_args(value):
    """Splits an instruction's value: JSON exec form or shell words."""
    v = value.strip()
    if v.startswith("["):
        try:
            return json.loads(v), True
        except ValueError:
            pass
    return shlex.split(v), False


def dockerignore_patterns(dockerfile):
    path = dockerfile + ".dockerignore"
    if not os.path.exists(path):
        raise Failure(f"{os.path.basename(path)} missing (the build context is the repository root: keep target/ and .cache/ out)")
    pats = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                pats.append(line)
    for must in ("target", ".cache"):
        if must not in pats:
            raise Failure(f"{os.path.basename(path)} does not exclude {must}")
    return pats


def ignored(rel, patterns):
    parts = rel.split("/")
    hit = False
    for p in patterns:
        neg = p.startswith("!")
        p = p.lstrip("!").strip("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatch(prefix, p) or (p.startswith("**/") and fnmatch.fnmatch(parts[i - 1], p[3:])):
                hit = not neg
                break
    return hit


def ort_gpu_version(repo):
    with open(os.path.join(repo, "deploy", "onnxruntime-gpu.sh")) as f:
        m = re.search(r'^ORT_GPU_VERSION="([^"]+)"', f.read(), re.M)
    if not m:
        raise Failure("deploy/onnxruntime-gpu.sh has no ORT_GPU_VERSION")
    return m.group(1)


def check_dockerfile(repo, path):
    patterns = dockerignore_patterns(path)
    df = DockerfileParser(path=path, cache_content=True)
    structure = df.structure
    if not structure:
        raise Failure("empty")
    stages, stage, froms = [], None, []
    final = {}
    for ins in structure:
        kind, value, line = ins["instruction"], ins["value"], ins["startline"] + 1
        if kind == "FROM":
            words = [w for w in value.split() if not w.startswith("--platform")]
            image = words[0]
            alias = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            if len(words) not in (1, 3) or (len(words) == 3 and not alias):
                raise Failure(f"line {line}: FROM {value}: expected `FROM image [AS name]`")
            if image not in stages:
                m = IMAGE_RE.match(image)
                if not m:
                    raise Failure(f"line {line}: FROM {image}: not an image reference")
                if not m.group("tag") and "@sha256:" not in image:
                    raise Failure(f"line {line}: FROM {image}: pin a tag")
                if m.group("tag") == "latest":
                    raise Failure(f"line {line}: FROM {image}: `latest` is not a pin")
                froms.append(image)
            if alias:
                if alias in stages:
                    raise Failure(f"line {line}: stage name {alias} used twice")
                stages.append(alias)
            stage = alias
            final = {}
        elif kind in ("COPY", "ADD"):
            words, _ = instruction_args(value)
            flags = [w for w in words if w.startswith("--")]
            rest = [w for w in words if not w.startswith("--")]
            if len(rest) < 2:
                raise Failure(f"line {line}: {kind} {value}: needs a source and a destination")
            src_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
            if src_stage is not None:
                m = IMAGE_RE.match(src_stage)
                if src_stage not in stages and not (m and (m.group("tag") or "@sha256:" in src_stage)):
                    raise Failure(f"line {line}: {kind} --from={src_stage}: no stage of that name before it (nor a pinned image)")
                if src_stage == stage:
                    raise Failure(f"line {line}: {kind} --from={src_stage} copies from its own stage")
                continue
            for src in rest[:-1]:
                matches = glob.glob(os.path.join(repo, src))
                if not matches:
                    raise Failure(f"line {line}: {kind} {src}: no such file in the repository")
                if ignored(os.path.normpath(src), patterns):
                    raise Failure(f"line {line}: {kind} {src}: excluded by the .dockerignore")
        elif kind == "RUN":
            for script in re.findall(r"\b((?:scripts|deploy)/[\w./-]+\.sh)\b", value):
                if not os.path.exists(os.path.join(repo, script)):
                    raise Failure(f"line {line}: RUN uses {script}, which does not exist")
        elif kind == "ENV":
            for key, val in re.findall(r"(\w+)=(\S+)", value):
                if key == "ORT_DYLIB_PATH":
                    want = "libonnxruntime.so." + ort_gpu_version(repo)
                    if not val.endswith("/" + want):
                        raise Failure(f"line {line}: ORT_DYLIB_PATH={val} but deploy/onnxruntime-gpu.sh extracts {want}")
        if kind in ("ENTRYPOINT", "CMD"):
            args, exec_form = instruction_args(value)
            if not exec_form:
                raise Failure(f"line {line}: {kind} must use the exec (JSON) form so signals reach speechmill")
            final[kind] = args
    entry, cmd = final.get("ENTRYPOINT"), final.get("CMD")
    if not entry or os.path.basename(entry[0]) != "speechmill":
        raise Failure(f"final stage: ENTRYPOINT must run speechmill, got {entry}")
    argv = entry[1:] + (cmd or [])
    role = IMAGE_ROLE.get(os.path.basename(path))
    sub = check_command(argv, "final stage ENTRYPOINT/CMD", role)
    if sub == "executor" and "--scheduler" not in argv:
        raise Failure("executor CMD has no --scheduler")
    return f"{len(stages) + 1} stages, FROM {', '.join(froms)}; COPY sources present; runs `speechmill {sub}`"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    repo = os.path.abspath(ap.parse_args().repo)
    failures = 0

    def report(ok, rel, msg):
        nonlocal failures
        if ok:
            print(f"ok    {rel} ({msg})")
        else:
            failures += 1
            print(f"FAIL  {rel}: {msg}")

    check_k8s(repo, os.path.join(repo, "deploy", "k8s"), report)
    dockerfiles = sorted(glob.glob(os.path.join(repo, "deploy", "docker", "*.Dockerfile")))
    if not dockerfiles:
        report(False, "deploy/docker", "no *.Dockerfile")
    for path in dockerfiles:
        rel = os.path.relpath(path, repo)
        try:
            report(True, rel, check_dockerfile(repo, path))
        except Failure as e:
            report(False, rel, str(e))
    for name in IMAGE_ROLE:
        if not os.path.exists(os.path.join(repo, "deploy", "docker", name)):
            report(False, f"deploy/docker/{name}", "missing")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
