#!/usr/bin/env bash
# deploy/check.sh: checks everything under deploy/ without a cluster (ctest runs it as
# deploy_check; CI has it through scripts/install-deps.sh, which installs its tools):
#   - renders the kustomize base, every overlay and each component on the cpu overlay with
#     `kubectl kustomize` (kustomize v4 or later), with a throwaway run token when
#     deploy/k8s/base/run.token does not exist;
#   - validates each object against the Kubernetes schemas, with no unknown field, the
#     PodMonitor and PrometheusRule against prometheus-operator's, the PyTorchJob against
#     tools/schemas/pytorchjob-v1.json and its pod templates against Kubernetes'
#     (deploy/tools/validate.js, npm packages in deploy/tools/node_modules);
#   - asserts what makes an overlay work as a run (deploy/tools/assert.js): the token from a
#     Secret on every qsr container, one folder per run, the same ReadWriteMany claim at
#     checkpoint_dir for coordinator and workers, podFailurePolicy, TTL, the worker PDB against
#     min_workers, pod-template labels, the NetworkPolicy;
#   - checks that every --flag the manifests pass to qsr-coordinator / qsr-worker / qsr-agent is
#     in that binary's --help, that their $(VARS) are defined, and that the worker Job's pods
#     times its worker containers are the run's workers;
#   - plans the manifests' recipe with qsrctl, parses the Prometheus scrape config and the Grafana
#     dashboard, and checks that every metric the dashboard and the alert rules query is one the
#     C++ serves (its name in the sources of coordinator/, agent/ or metrics/prometheus_text.cc);
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
# Components, `labels` with includeTemplates and patches that delete need kustomize v4 or later
# (Debian 12's kubernetes-client has v2, which renders these wrongly or not at all).
kustomize_version=$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\{0,1\}//p')
kustomize_major=$(sed -n 's/^\([0-9][0-9]*\)\..*/\1/p' <<<"$kustomize_version")
if [ -z "$kustomize_major" ] || [ "$kustomize_major" -lt 4 ]; then
  echo "deploy-check: kubectl's kustomize is '${kustomize_version:-unknown}'; v4 or later is" \
       "needed: put a newer kubectl on PATH (Debian 12's kubernetes-client has v2)" >&2
  exit 1
fi
if [ ! -d "$DEPLOY/tools/node_modules/kubernetes-models" ]; then
  echo "deploy-check: $DEPLOY/tools/node_modules is missing: run scripts/install-deps.sh" \
       "(or: npm ci --prefix deploy/tools)" >&2
  exit 1
fi
for b in qsr-coordinator qsr-worker qsr-agent qsrctl; do
  [ -x "$BIN/$b" ] || { echo "deploy-check: $BIN/$b not built (--bin-dir?)" >&2; exit 1; }
done

TMP=$(mktemp -d)
# The overlays read the run's token from deploy/k8s/base/run.token, which each user creates and
# never commits: render with a throwaway one when there is none, and remove only that one.
TOKEN=$DEPLOY/k8s/base/run.token
made_token=""
if [ ! -e "$TOKEN" ]; then
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TOKEN")
  made_token=$TOKEN
fi
trap 'rm -rf "$TMP"; [ -z "$made_token" ] || rm -f "$made_token"' EXIT
"$BIN/qsr-coordinator" --help > "$TMP/qsr-coordinator.help"
"$BIN/qsr-worker" --help > "$TMP/qsr-worker.help"
"$BIN/qsr-agent" --help > "$TMP/qsr-agent.help"

# 1. Render: the base, every overlay, and each component on top of the cpu overlay.
render() {  # DIR NAME [LABEL]
  local label=${3:-${1#"$ROOT"/}}
  if kubectl kustomize "$1" > "$TMP/$2.yaml" 2> "$TMP/$2.err"; then
    pass "kubectl kustomize $label: $(grep -c '^kind:' "$TMP/$2.yaml") objects"
    rendered+=("$TMP/$2.yaml")
    [ "$2" = base ] || overlays+=("$TMP/$2.yaml")
  else
    fail "kubectl kustomize $label: $(cat "$TMP/$2.err")"
  fi
}
rendered=()
overlays=()
render "$DEPLOY/k8s/base" base
for dir in "$DEPLOY"/k8s/overlays/*/; do
  dir=${dir%/}
  render "$dir" "$(basename "$dir")"
done
for dir in "$DEPLOY"/k8s/components/*/; do
  dir=${dir%/}
  name=$(basename "$dir")
  case $name in four-workers) continue ;; esac  # in cpu-agent and gpu-agent already
  mkdir -p "$TMP/with-$name"
  # kustomize takes only relative paths to other kustomizations.
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s\ncomponents:\n  - %s\n' \
    "$(realpath --relative-to="$TMP/with-$name" "$DEPLOY/k8s/overlays/cpu")" \
    "$(realpath --relative-to="$TMP/with-$name" "$dir")" > "$TMP/with-$name/kustomization.yaml"
  render "$TMP/with-$name" "cpu+$name" "deploy/k8s/overlays/cpu + components/$name"
done

# 2, 3. Schemas, fields, flags, worker count.
if (cd "$DEPLOY/tools" && node validate.js \
      --help-file "qsr-coordinator=$TMP/qsr-coordinator.help" \
      --help-file "qsr-worker=$TMP/qsr-worker.help" \
      --help-file "qsr-agent=$TMP/qsr-agent.help" \
      "${rendered[@]}" "$DEPLOY/prometheus/podmonitor.yaml" \
      "$DEPLOY/prometheus/prometheusrule.yaml") > "$TMP/validate.out"; then
  pass "$(tail -1 "$TMP/validate.out" | sed 's/^validate: //') (schemas, fields, flags)"
else
  fail "validation:"
  sed 's/^/    /' "$TMP/validate.out"
fi

# 3b. What makes each overlay work as a run.
if (cd "$DEPLOY/tools" && node assert.js "${overlays[@]}") > "$TMP/assert.out"; then
  pass "token, run folder, RWX checkpoints, podFailurePolicy, TTL, PDB, labels, NetworkPolicy in" \
       "${#overlays[@]} overlays"
else
  fail "overlay assertions:"
  sed 's/^/    /' "$TMP/assert.out"
fi

# 4. The recipe, the scrape config, the dashboard, the alert rules.
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
# The metric names (a histogram's _bucket/_sum/_count as its family) that no C++ source of a
# /metrics endpoint spells as a string: those nothing serves.
unserved() {
  local m family missing=""
  for m in "$@"; do
    family=$m
    case $m in *_bucket|*_sum|*_count)
      grep -rqs "\"${m%_*}\"" "$ROOT"/coordinator/*.cc && family=${m%_*} ;;
    esac
    grep -qs "\"$family\"" "$ROOT"/coordinator/*.cc "$ROOT"/agent/*.cc \
      "$ROOT/metrics/prometheus_text.cc" || missing="$missing $m"
  done
  echo "$missing"
}
rules=$DEPLOY/prometheus/prometheusrule.yaml
if names=$(cd "$DEPLOY/tools" && node -e '
    const yaml = require("js-yaml"), fs = require("fs");
    const r = yaml.load(fs.readFileSync(process.argv[1], "utf8"));
    const names = new Set(), alerts = [];
    for (const g of r.spec.groups) for (const rule of g.rules) {
      alerts.push(rule.alert);
      for (const m of rule.expr.matchAll(/\b(qsr|process)_[a-z_]+/g)) names.add(m[0]);
    }
    for (const want of ["QsrRunFailed", "QsrParameterMismatch", "QsrWorkerHeartbeatStale", "QsrNoRoundCommitted"])
      if (!alerts.includes(want)) throw new Error("no alert " + want);
    console.log([...names].join(" "));' "$rules"); then
  missing=$(unserved $names)
  if [ -z "$missing" ]; then
    pass "prometheus/prometheusrule.yaml: 4 alerts over $(wc -w <<<"$names") metrics, all served"
  else
    fail "prometheus/prometheusrule.yaml uses metrics nothing serves:$missing"
  fi
else
  fail "prometheus/prometheusrule.yaml: not the four alerts (run failed, parameter mismatch," \
       "stale heartbeats, no round committed)"
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
  missing=$(unserved $metrics)
  if [ -z "$missing" ]; then
    pass "grafana/qsr-dashboard.json: $(wc -w <<<"$metrics") metrics, all served by the coordinator"
  else
    fail "grafana/qsr-dashboard.json queries metrics the coordinator does not serve:$missing"
  fi
  if ! grep -q '"name": "run_id"' "$dashboard"; then
    fail "grafana/qsr-dashboard.json has no run_id variable"
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
