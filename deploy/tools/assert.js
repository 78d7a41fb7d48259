#!/usr/bin/env node
// What deploy/check.sh asserts about each rendered overlay beyond schemas (validate.js), so that
// what is applied works as a run:
//
//  - token: every container that runs a qsr binary passes --token-file=PATH, and PATH is a file
//    of a Secret volume mounted in that container (a Secret, not a placeholder or a ConfigMap);
//    the coordinator also passes --token-protect-reads;
//  - one run, one folder: the coordinator's --state-dir has $(RUN_ID) in it, from a label that is
//    new for each run (the Job's controller-uid, or the PyTorchJob's name);
//  - storage: the coordinator and every worker mount the same ReadWriteMany claim at the same
//    path, and the recipe's checkpoint_dir (or <state dir>/checkpoints) lies under it; the claim
//    leaves storageClassName to the user;
//  - lifecycle: Jobs have a podFailurePolicy that fails the Job on exit code 2 (restartPolicy
//    Never, as that needs), and ttlSecondsAfterFinished; a PyTorchJob has runPolicy's TTL and
//    its Workers restartPolicy ExitCode;
//  - a PodDisruptionBudget over the workers with minAvailable = ceil(min_workers / qsr-worker
//    containers per pod), none that forbids every eviction;
//  - every pod template carries app.kubernetes.io/name, /component and /part-of;
//  - a NetworkPolicy over the part-of=qsr pods.
//
// Usage: node assert.js OVERLAY.yaml...   Prints one line per problem; exit 1 when there is any.
'use strict';

const fs = require('fs');
const path = require('path');
const yaml = require('js-yaml');
const { podTemplatesOf, runs } = require('./validate.js');

function argValue(args, flag) {
  for (const a of args || []) {
    const m = new RegExp(`^--${flag}=(.*)$`).exec(String(a));
    if (m) return m[1];
  }
  return null;
}

// The volume (by name) a container has mounted at a path that contains `file`, with the mount.
function mountOf(pod, c, file) {
  let best = null;
  for (const m of c.volumeMounts || []) {
    const dir = m.mountPath.replace(/\/$/, '');
    if (file === dir || file.startsWith(dir + '/')) {
      if (!best || dir.length > best.mount.mountPath.length) {
        best = { mount: m, volume: (pod.volumes || []).find((v) => v.name === m.name) };
      }
    }
  }
  return best;
}

function checkFile(file) {
  const problems = [];
  const docs = yaml.loadAll(fs.readFileSync(file, 'utf8')).filter((d) => d);
  const base = path.basename(file);
  const say = (msg) => problems.push(`${base}: ${msg}`);
  const claims = new Map(docs.filter((d) => d.kind === 'PersistentVolumeClaim')
    .map((d) => [d.metadata.name, d]));
  let recipe = {};
  for (const d of docs) {
    if (d.kind === 'ConfigMap' && d.data && d.data['recipe.yaml']) recipe = yaml.load(d.data['recipe.yaml']);
  }
  let coordinatorMount = null;  // {claim, mountPath, checkpointDir}
  const workerMounts = [];
  let workerPods = 0;
  let workersPerPod = 0;

  for (const obj of docs) {
    const where = `${obj.kind}/${obj.metadata.name}`;
    const templates = podTemplatesOf(obj);
    for (const { role, template } of templates) {
      const tw = role ? `${where} ${role}` : where;
      const labels = (template.metadata && template.metadata.labels) || {};
      for (const l of ['name', 'component', 'part-of']) {
        if (!labels[`app.kubernetes.io/${l}`]) say(`${tw}: the pod template has no app.kubernetes.io/${l} label`);
      }
      const pod = template.spec || {};
      const containers = [...(pod.initContainers || []), ...(pod.containers || [])];
      for (const c of containers) {
        const binary = path.basename((c.command || [])[0] || '');
        if (!binary.startsWith('qsr')) continue;
        const cw = `${tw} container ${c.name} (${binary})`;
        const token = argValue(c.args, 'token-file');
        if (!token) {
          say(`${cw}: no --token-file`);
        } else {
          const m = mountOf(pod, c, token);
          if (!m || !m.volume || !m.volume.secret) {
            say(`${cw}: --token-file=${token} is not in a Secret volume mounted in the container`);
          } else if (m.volume.secret.optional) {
            say(`${cw}: the token's Secret is optional: a pod without it would start open`);
          }
        }
        const env = new Map((c.env || []).map((e) => [e.name, e]));
        if (binary === 'qsr-coordinator') {
          if (!(c.args || []).includes('--token-protect-reads')) say(`${cw}: no --token-protect-reads`);
          const state = argValue(c.args, 'state-dir');
          const runId = env.get('RUN_ID');
          const ref = runId && runId.valueFrom && runId.valueFrom.fieldRef &&
                      runId.valueFrom.fieldRef.fieldPath;
          if (!state || !state.includes('$(RUN_ID)')) {
            say(`${cw}: --state-dir must hold $(RUN_ID), so that each run has its own folder`);
          } else if (!/batch\.kubernetes\.io\/controller-uid|training\.kubeflow\.org\/job-name/.test(ref || '')) {
            say(`${cw}: RUN_ID must come from the Job's controller-uid (or the PyTorchJob's name) label`);
          } else {
            const ckpt = recipe.checkpoint_dir || `${state}/checkpoints`;
            const m = mountOf(pod, c, ckpt);
            if (!m || !m.volume || !m.volume.persistentVolumeClaim) {
              say(`${cw}: checkpoint_dir ${ckpt} is not on a PersistentVolumeClaim`);
            } else {
              coordinatorMount = { claim: m.volume.persistentVolumeClaim.claimName,
                                   mountPath: m.mount.mountPath, checkpointDir: ckpt };
            }
          }
        }
        if (binary === 'qsr-worker') {
          workerMounts.push({ where: cw, pod, c });
        }
      }
      const perPod = (pod.containers || []).filter((c) => runs(c, 'qsr-worker')).length;
      if (perPod > 0) {
        workersPerPod = perPod;
        if (obj.kind === 'Job') workerPods = obj.spec.parallelism;
        if (obj.kind === 'PyTorchJob') workerPods = obj.spec.pytorchReplicaSpecs[role].replicas;
      }
    }
    if (obj.kind === 'Job') {
      const rules = ((obj.spec.podFailurePolicy || {}).rules) || [];
      const failsOn2 = rules.some((r) => r.action === 'FailJob' && r.onExitCodes &&
        r.onExitCodes.operator === 'In' && r.onExitCodes.values.includes(2));
      if (!failsOn2) say(`${where}: no podFailurePolicy rule that fails the Job on exit code 2`);
      if (obj.spec.template.spec.restartPolicy !== 'Never') {
        say(`${where}: restartPolicy must be Never (podFailurePolicy needs it)`);
      }
      if (!(obj.spec.ttlSecondsAfterFinished >= 0)) say(`${where}: no ttlSecondsAfterFinished`);
    }
    if (obj.kind === 'PyTorchJob') {
      if (!((obj.spec.runPolicy || {}).ttlSecondsAfterFinished >= 0)) {
        say(`${where}: no runPolicy.ttlSecondsAfterFinished`);
      }
      const worker = obj.spec.pytorchReplicaSpecs.Worker || {};
      if (worker.restartPolicy !== 'ExitCode') {
        say(`${where}: Worker restartPolicy must be ExitCode (exit 2 fails the run at once)`);
      }
    }
  }

  // Storage: one RWX claim for all, at the same path.
  if (!coordinatorMount) {
    say('no coordinator with its checkpoint_dir on a claim');
  } else {
    const claim = claims.get(coordinatorMount.claim);
    if (!claim) {
      say(`the claim ${coordinatorMount.claim} is not in the overlay`);
    } else {
      if (!(claim.spec.accessModes || []).includes('ReadWriteMany')) {
        say(`PersistentVolumeClaim/${claim.metadata.name}: not ReadWriteMany (workers on several nodes write checkpoints)`);
      }
      if (claim.spec.storageClassName !== undefined) {
        say(`PersistentVolumeClaim/${claim.metadata.name}: storageClassName is the user's to set`);
      }
    }
    if (workerMounts.length === 0) say('no qsr-worker container');
    for (const { where, pod, c } of workerMounts) {
      const m = mountOf(pod, c, coordinatorMount.checkpointDir);
      if (!m || !m.volume || !m.volume.persistentVolumeClaim ||
          m.volume.persistentVolumeClaim.claimName !== coordinatorMount.claim ||
          m.mount.mountPath !== coordinatorMount.mountPath || m.mount.readOnly) {
        say(`${where}: does not mount claim ${coordinatorMount.claim} writable at ` +
            `${coordinatorMount.mountPath} (the coordinator's), where checkpoint_dir ` +
            `${coordinatorMount.checkpointDir} is`);
      }
    }
  }

  // Disruption budgets.
  const minWorkers = recipe.min_workers === undefined ? 1 : recipe.min_workers;
  const want = workersPerPod > 0 ? Math.ceil(minWorkers / workersPerPod) : NaN;
  let workerPdb = null;
  for (const obj of docs.filter((d) => d.kind === 'PodDisruptionBudget')) {
    if (obj.spec.maxUnavailable === 0 || obj.spec.maxUnavailable === '0%') {
      say(`PodDisruptionBudget/${obj.metadata.name}: maxUnavailable 0 blocks every node drain`);
    }
    if (((obj.spec.selector || {}).matchLabels || {})['app.kubernetes.io/name'] === 'qsr-worker') workerPdb = obj;
  }
  if (!workerPdb) {
    say('no PodDisruptionBudget selecting app.kubernetes.io/name=qsr-worker');
  } else if (workerPdb.spec.minAvailable !== want) {
    say(`PodDisruptionBudget/${workerPdb.metadata.name}: minAvailable ${workerPdb.spec.minAvailable}; ` +
        `min_workers ${minWorkers} with ${workersPerPod} worker(s) per pod needs ${want}`);
  } else if (!(want <= workerPods)) {
    say(`PodDisruptionBudget/${workerPdb.metadata.name}: minAvailable ${want} > ${workerPods} worker pods`);
  }

  // Network.
  const np = docs.find((d) => d.kind === 'NetworkPolicy' &&
    ((d.spec.podSelector || {}).matchLabels || {})['app.kubernetes.io/part-of'] === 'qsr');
  if (!np) say('no NetworkPolicy over the app.kubernetes.io/part-of=qsr pods');
  return problems;
}

function main(files) {
  if (files.length === 0) {
    console.error('usage: assert.js OVERLAY.yaml...');
    return 2;
  }
  const problems = files.flatMap(checkFile);
  for (const p of problems) console.log(`assert: ${p}`);
  console.log(`assert: ${files.length} overlays, ${problems.length} problems`);
  return problems.length ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
