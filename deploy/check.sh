#!/usr/bin/env bash
# deploy/check.sh: checks everything under deploy/ without a cluster (ctest runs it as
# deploy_check; CI has it through scripts/install-deps.sh, which installs its tools):
#   - renders the kustomize base and every overlay with `kubectl kustomize`;
#   - validates each object against the Kubernetes schemas, with no unknown field, and the
#     PodMonitor against prometheus-operator's (deploy/tools/validate.js, npm packages in
#     deploy/tools/node_modules);
#   - checks that every --flag the manifests pass to qsr-coordinator / qsr-worker / qsr-agent is
#     in that binary's --help, that their $(VARS) are defined, and that the worker Job's pods
#     times its worker containers are the run's workers;
#   - plans the manifests' recipe with qsrctl, parses the Prometheus scrape config and the Grafana
#     dashboard, and checks that every qsr_* metric the dashboard queries is one the coordinator
#     serves;
#   - checks that the files the Dockerfiles COPY exist.
# Usage: deploy/check.sh [--bin-dir DIR]   (default: build/bin)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPLOY=$ROOT/deploy
BIN=$ROOT/build/bin
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) BIN=$2; shift 2 ;;
    *) echo "usage: deploy/check.sh [--bin-dir DIR]" >&2; exit 2 ;;
  esac
done

failures=0
checks=0
pass() { checks=$((checks + 1)); echo "deploy-check: ok   $*"; }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); echo "deploy-check: FAIL $*"; }
need() {
  if ! command -v "$1" >/dev/null; then
    echo "deploy-check: $1 not found: $2" >&2
    exit 1
  fi
}
need kubectl "install it with scripts/install-deps.sh"
need node "install it with scripts/install-deps.sh"
if [ ! -d "$DEPLOY/tools/node_modules/kubernetes-models" ]; then
  echo "deploy-check: $DEPLOY/tools/node_modules is missing: run scripts/install-deps.sh" \
       "(or: npm ci --prefix deploy/tools)" >&2
  exit 1
fi
for b in qsr-coordinator qsr-worker qsr-agent qsrctl; do
  [ -x "$BIN/$b" ] || { echo "deploy-check: $BIN/$b not built (--bin-dir?)" >&2; exit 1; }
done

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$BIN/qsr-coordinator" --help > "$TMP/qsr-coordinator.help"
"$BIN/qsr-worker" --help > "$TMP/qsr-worker.help"
"$BIN/qsr-agent" --help > "$TMP/qsr-agent.help"

# 1. Render.
rendered=()
for dir in "$DEPLOY/k8s/base" "$DEPLOY"/k8s/overlays/*/; do
  dir=${dir%/}
  name=$(basename "$dir")
  if kubectl kustomize "$dir" > "$TMP/$name.yaml" 2> "$TMP/$name.err"; then
    pass "kubectl kustomize ${dir#"$ROOT"/}: $(grep -c '^kind:' "$TMP/$name.yaml") objects"
    rendered+=("$TMP/$name.yaml")
  else
    fail "kubectl kustomize ${dir#"$ROOT"/}: $(cat "$TMP/$name.err")"
  fi
done

# 2, 3. Schemas, fields, flags, worker count.
if (cd "$DEPLOY/tools" && node validate.js \
      --help-file "qsr-coordinator=$TMP/qsr-coordinator.help" \
      --help-file "qsr-worker=$TMP/qsr-worker.help" \
      --help-file "qsr-agent=$TMP/qsr-agent.help" \
      "${rendered[@]}" "$DEPLOY/prometheus/podmonitor.yaml") > "$TMP/validate.out"; then
  pass "$(tail -1 "$TMP/validate.out" | sed 's/^validate: //') (schemas, fields, flags)"
else
  fail "validation:"
  sed 's/^/    /' "$TMP/validate.out"
fi

# 4. The recipe, the scrape config, the dashboard.
if out=$("$BIN/qsrctl" plan --recipe "$DEPLOY/k8s/base/recipe.yaml" 2>&1 | tail -1); then
  pass "the manifests' recipe plans: $out"
else
  fail "deploy/k8s/base/recipe.yaml does not plan: $out"
fi
if (cd "$DEPLOY/tools" && node -e '
    const yaml = require("js-yaml"), fs = require("fs");
    const c = yaml.load(fs.readFileSync(process.argv[1], "utf8"));
    if (!c || !Array.isArray(c.scrape_configs) || !c.scrape_configs.every((j) => j.job_name))
      throw new Error("no scrape_configs with job_name");' "$DEPLOY/prometheus/scrape-config.yaml"); then
  pass "prometheus/scrape-config.yaml parses"
else
  fail "prometheus/scrape-config.yaml"
fi
dashboard=$DEPLOY/grafana/qsr-dashboard.json
if metrics=$(cd "$DEPLOY/tools" && node -e '
    const d = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const names = new Set();
    const walk = (p) => { for (const t of p.targets || []) for (const m of (t.expr || "").matchAll(/qsr_[a-z_]+/g)) names.add(m[0]);
                          for (const q of p.panels || []) walk(q); };
    d.panels.forEach(walk);
    if (!d.uid || !d.title || names.size === 0) throw new Error("no uid, title or queries");
    console.log([...names].join(" "));' "$dashboard"); then
  missing=""
  for m in $metrics; do
    grep -q "\"$m\"" "$ROOT/coordinator/metrics_server.cc" || missing="$missing $m"
  done
  if [ -z "$missing" ]; then
    pass "grafana/qsr-dashboard.json: $(wc -w <<<"$metrics") metrics, all served by the coordinator"
  else
    fail "grafana/qsr-dashboard.json queries metrics the coordinator does not serve:$missing"
  fi
else
  fail "grafana/qsr-dashboard.json is not a dashboard"
fi

# 5. What the Dockerfiles copy from the build context (the repository root).
for f in "$DEPLOY"/docker/Dockerfile*; do
  case $f in *.dockerignore) continue ;; esac
  bad=""
  while read -r src; do
    [ -e "$ROOT/$src" ] || bad="$bad $src"
  done < <(awk '$1 == "COPY" && $2 !~ /^--from/ && $2 != "." {print $2}' "$f")
  if [ -z "$bad" ]; then
    pass "${f#"$ROOT"/}: every COPY source exists"
  else
    fail "${f#"$ROOT"/}: COPY sources missing:$bad"
  fi
done

echo "deploy-check: $((checks - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]
