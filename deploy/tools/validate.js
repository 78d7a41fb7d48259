#!/usr/bin/env node
// Validates rendered Kubernetes manifests (multi-document YAML) for deploy/check.sh:
//
//  1. schema: every object against the Kubernetes OpenAPI schemas (the `kubernetes-models` npm
//     package; prometheus-operator's for PodMonitor and PrometheusRule, cert-manager's for
//     Certificate): types, required fields,
//     enums, formats; a Kubeflow PyTorchJob against schemas/pytorchjob-v1.json (its own fields,
//     with ajv) and each of its pod templates against Kubernetes' PodTemplateSpec;
//  2. strict fields: no field the schema does not know (a misspelt `securityContex` is silently
//     dropped by the API server) - walked through the packages' TypeScript declarations, which
//     carry the full field tree;
//  3. flags: every `--flag` a container passes to a qsr binary is one that binary's --help lists,
//     and every $(VAR) in its arguments is defined in its env (Kubernetes leaves an undefined one
//     as literal text);
//  4. images: in an overlay, every container's image has a tag or a digest;
//  5. consistency: the worker Job's pods times the qsr-worker containers in each equal the run's
//     workers (the recipe's, or the coordinator's --workers).
//
// Usage: node validate.js [--help-file BINARY=FILE ...] MANIFEST.yaml...
// Prints one line per problem and exits 1 when there is any.
'use strict';

const fs = require('fs');
const path = require('path');
const yaml = require('js-yaml');

// ---------------------------------------------------------------------------------------------
// Models and their declaration files.

// apiVersion + kind -> the model's module (its .js validates, its .d.ts describes the fields).
function modelModule(apiVersion, kind) {
  if (apiVersion === 'monitoring.coreos.com/v1') {  // PodMonitor, PrometheusRule
    return `@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/${kind}`;
  }
  if (apiVersion === 'cert-manager.io/v1') {  // Certificate (components/tls)
    return `@kubernetes-models/cert-manager/cert-manager.io/v1/${kind}`;
  }
  return `kubernetes-models/${apiVersion}/${kind}`;
}

// A small parser for the subset of TypeScript these generated .d.ts files use: imports,
// interfaces, type aliases, export aliases; types made of references, Array<T>, T[], object
// literals with optional members and index signatures, unions, literals and primitives.
function tokenize(src) {
  const tokens = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) { i++; continue; }
    if (src.startsWith('/*', i)) { i = src.indexOf('*/', i + 2) + 2; continue; }
    if (src.startsWith('//', i)) { const e = src.indexOf('\n', i); i = e < 0 ? src.length : e; continue; }
    if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < src.length && src[j] !== c) j += src[j] === '\\' ? 2 : 1;
      tokens.push({ t: 'str', v: JSON.parse('"' + src.slice(i + 1, j).replace(/"/g, '\\"') + '"') });
      i = j + 1;
      continue;
    }
    const id = /^[A-Za-z_$][A-Za-z0-9_$]*/.exec(src.slice(i, i + 200));
    if (id) { tokens.push({ t: 'id', v: id[0] }); i += id[0].length; continue; }
    const num = /^-?[0-9][0-9.]*/.exec(src.slice(i, i + 50));
    if (num) { tokens.push({ t: 'num', v: num[0] }); i += num[0].length; continue; }
    if (src.startsWith('=>', i)) { tokens.push({ t: 'p', v: '=>' }); i += 2; continue; }
    tokens.push({ t: 'p', v: c });
    i++;
  }
  return tokens;
}

class DtsParser {
  constructor(src) { this.toks = tokenize(src); this.i = 0; }
  peek(k = 0) { return this.toks[this.i + k]; }
  next() { return this.toks[this.i++]; }
  is(v, k = 0) { const t = this.peek(k); return t && t.v === v && t.t !== 'str'; }
  expect(v) {
    const t = this.next();
    if (!t || t.v !== v) throw new Error(`expected ${v}, got ${t ? t.v : 'end'}`);
    return t;
  }
  skipBalanced(open, close) {
    let depth = 0;
    do {
      const t = this.next();
      if (!t) return;
      if (t.t === 'p' && t.v === open) depth++;
      if (t.t === 'p' && t.v === close) depth--;
    } while (depth > 0);
  }
  // { members } -> {kind: 'object', props: {name: type}, index: type|null}
  parseObject() {
    this.expect('{');
    const obj = { kind: 'object', props: {}, index: null };
    while (!this.is('}')) {
      if (this.is('[')) {  // [key: string]: T
        this.skipBalanced('[', ']');
        this.expect(':');
        obj.index = this.parseType();
      } else {
        const name = this.next().v;
        if (this.is('?')) this.next();
        if (this.is('(')) {  // a method: not data
          this.skipBalanced('(', ')');
          this.expect(':');
          this.parseType();
        } else {
          this.expect(':');
          obj.props[name] = this.parseType();
        }
      }
      if (this.is(';') || this.is(',')) this.next();
    }
    this.expect('}');
    return obj;
  }
  parsePrimary() {
    const t = this.peek();
    if (this.is('{')) return this.parseObject();
    if (this.is('(')) { this.next(); const inner = this.parseType(); this.expect(')'); return inner; }
    if (this.is('[')) { this.skipBalanced('[', ']'); return { kind: 'prim' }; }
    if (t.t === 'str' || t.t === 'num') { this.next(); return { kind: 'prim' }; }
    this.next();
    let name = t.v;
    while (this.is('.')) { this.next(); name += '.' + this.next().v; }
    if (this.is('<')) {
      this.next();
      const args = [this.parseType()];
      while (this.is(',')) { this.next(); args.push(this.parseType()); }
      this.expect('>');
      if (name === 'Array' || name === 'ReadonlyArray') return { kind: 'array', of: args[0] };
      if (name === 'Record') return { kind: 'object', props: {}, index: args[1] };
      return { kind: 'prim' };
    }
    if (['string', 'number', 'boolean', 'any', 'unknown', 'object', 'null', 'undefined', 'true',
         'false', 'never', 'Date'].includes(name)) {
      return { kind: 'prim' };
    }
    return { kind: 'ref', name };
  }
  parsePostfix() {
    let type = this.parsePrimary();
    while (this.is('[')) {
      if (this.is(']', 1)) { this.next(); this.next(); type = { kind: 'array', of: type }; }
      else { this.skipBalanced('[', ']'); type = { kind: 'prim' }; }  // indexed access
    }
    return type;
  }
  parseType() {
    if (this.is('|') || this.is('&')) this.next();
    const options = [this.parsePostfix()];
    while (this.is('|') || this.is('&')) { this.next(); options.push(this.parsePostfix()); }
    return options.length === 1 ? options[0] : { kind: 'union', options };
  }
  // The declarations of one file: {imports: {name: module}, types: {name: type}, aliases}.
  parseFile() {
    const out = { imports: {}, types: {}, aliases: {} };
    while (this.peek()) {
      const t = this.next();
      if (t.v === 'import' && this.is('{')) {
        this.next();
        const names = [];
        while (!this.is('}')) {
          const a = this.next().v;
          let b = a;
          if (this.is('as')) { this.next(); b = this.next().v; }
          names.push(b);
          if (this.is(',')) this.next();
        }
        this.expect('}');
        this.expect('from');
        const mod = this.next().v;
        for (const n of names) out.imports[n] = mod;
      } else if (t.v === 'interface') {
        const name = this.next().v;
        const bases = [];
        while (!this.is('{')) { const x = this.next(); if (x.t === 'id' && x.v !== 'extends') bases.push(x.v); }
        const obj = this.parseObject();
        obj.bases = bases;
        out.types[name] = obj;
      } else if (t.v === 'type' && this.peek() && this.peek().t === 'id' && (this.is('=', 1) || this.is('<', 1))) {
        const name = this.next().v;
        if (this.is('<')) this.skipBalanced('<', '>');
        this.expect('=');
        out.types[name] = this.parseType();
      } else if (t.v === 'class') {
        while (!this.is('{')) this.next();
        this.skipBalanced('{', '}');
      } else if (t.v === 'export' && this.is('{')) {
        this.next();
        while (!this.is('}')) {
          const a = this.next().v;
          let b = a;
          if (this.is('as')) { this.next(); b = this.next().v; }
          out.aliases[b] = a;
          if (this.is(',')) this.next();
        }
        this.next();
      }
    }
    return out;
  }
}

const fileCache = new Map();
function declarations(file) {
  if (!fileCache.has(file)) {
    fileCache.set(file, new DtsParser(fs.readFileSync(file, 'utf8')).parseFile());
  }
  return fileCache.get(file);
}

function resolveDts(mod, fromFile) {
  const base = mod.startsWith('.') ? path.resolve(path.dirname(fromFile), mod)
                                   : require.resolve(mod).replace(/\.(c|m)?js$/, '');
  for (const f of [base + '.d.ts', path.join(base, 'index.d.ts')]) {
    if (fs.existsSync(f)) return f;
  }
  return null;
}

// A type name as seen in `file` -> {file, type} of its declaration, or null (unknown: lenient).
function lookup(name, file, depth = 0) {
  if (depth > 8) return null;
  const d = declarations(file);
  const local = d.aliases[name] || name;
  if (d.types[local]) return { file, type: d.types[local] };
  if (d.imports[name]) {
    const target = resolveDts(d.imports[name], file);
    return target ? lookup(name, target, depth + 1) : null;
  }
  return null;
}

// Reports fields of `value` that `type` (declared in `file`) does not have.
function checkFields(value, type, file, where, problems) {
  if (value === null || value === undefined || !type) return;
  if (type.kind === 'ref') {
    const found = lookup(type.name, file);
    if (found) checkFields(value, found.type, found.file, where, problems);
    return;
  }
  if (type.kind === 'union') {
    // Objects are checked against the union's object-like members, if one of them fits.
    const objectLike = type.options.filter((o) => o.kind !== 'prim');
    if (objectLike.length === 1) checkFields(value, objectLike[0], file, where, problems);
    return;
  }
  if (type.kind === 'array') {
    if (Array.isArray(value)) value.forEach((v, i) => checkFields(v, type.of, file, `${where}[${i}]`, problems));
    return;
  }
  if (type.kind !== 'object' || typeof value !== 'object' || Array.isArray(value)) return;
  const props = Object.assign({}, type.props);
  for (const base of type.bases || []) {
    const found = lookup(base, file);
    if (found && found.type.kind === 'object') Object.assign(props, found.type.props);
    if (base === 'TypeMeta') Object.assign(props, { apiVersion: { kind: 'prim' }, kind: { kind: 'prim' } });
  }
  for (const [key, v] of Object.entries(value)) {
    if (key in props) checkFields(v, props[key], file, `${where}.${key}`, problems);
    else if (type.index) checkFields(v, type.index, file, `${where}.${key}`, problems);
    else problems.push(`${where}.${key}: unknown field (not in the schema)`);
  }
}

// ---------------------------------------------------------------------------------------------
// Flags.

// BINARY -> Set of flag names its --help lists (`  --name   help`).
function readHelp(file) {
  const flags = new Set(['help']);
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^\s+(?:-\w,\s+)?--([a-z0-9][a-z0-9_-]*)\b/.exec(line);
    if (m) flags.add(m[1]);
  }
  return flags;
}

// The pod templates of a workload: [{role, template}] (role: '' or a PyTorchJob replica type).
function podTemplatesOf(obj) {
  const spec = obj.spec || {};
  if (['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job'].includes(obj.kind)) {
    return spec.template ? [{ role: '', template: spec.template }] : [];
  }
  if (obj.kind === 'CronJob' && spec.jobTemplate && spec.jobTemplate.spec) {
    return [{ role: '', template: spec.jobTemplate.spec.template }];
  }
  if (obj.kind === 'PyTorchJob') {
    return Object.entries(spec.pytorchReplicaSpecs || {}).map(
      ([role, r]) => ({ role, template: (r && r.template) || {} }));
  }
  return [];
}

function podSpecsOf(obj) {
  return podTemplatesOf(obj).map((t) => t.template.spec || {});
}

// The first pod spec (the only one of a Job or Deployment).
function podSpecOf(obj) {
  return podSpecsOf(obj)[0] || null;
}

function runs(c, binary) {
  return path.basename((c.command || [])[0] || '') === binary;
}

// A PyTorchJob: its own fields against schemas/pytorchjob-v1.json, each replica's pod template
// against Kubernetes' PodTemplateSpec (schema and strict fields).
let pytorchJobSchema = null;
function checkPyTorchJob(obj, where, problems) {
  if (!pytorchJobSchema) {
    const Ajv = require('ajv');
    const ajv = new Ajv({ allErrors: true, strict: false });
    ajv.addFormat('int32', { type: 'number',
                             validate: (x) => Number.isInteger(x) && x >= -(2 ** 31) && x < 2 ** 31 });
    ajv.addFormat('int64', { type: 'number', validate: (x) => Number.isInteger(x) });
    pytorchJobSchema = ajv.compile(
      JSON.parse(fs.readFileSync(path.join(__dirname, 'schemas', 'pytorchjob-v1.json'), 'utf8')));
  }
  if (!pytorchJobSchema(obj)) {
    for (const e of pytorchJobSchema.errors) {
      const extra = e.params && e.params.additionalProperty ? ` (${e.params.additionalProperty})` : '';
      problems.push(`${where}${e.instancePath.replace(/\//g, '.')}: ${e.message}${extra}`);
    }
  }
  const mod = 'kubernetes-models/v1/PodTemplateSpec';
  const { PodTemplateSpec } = require(mod);
  const dts = resolveDts(mod);
  for (const { role, template } of podTemplatesOf(obj)) {
    const tw = `${where}.spec.pytorchReplicaSpecs.${role}.template`;
    try {
      new PodTemplateSpec(template).validate();
    } catch (e) {
      problems.push(`${tw}: ${e.message}`);
    }
    const found = dts && lookup('IPodTemplateSpec', dts);
    if (!found) problems.push(`${tw}: no field declarations for PodTemplateSpec`);
    else checkFields(template, found.type, found.file, tw, problems);
    if (!((template.spec || {}).containers || []).some((c) => c.name === 'pytorch')) {
      problems.push(`${tw}: no container named pytorch (the Training Operator requires one)`);
    }
  }
}

function checkFlags(obj, where, helps, problems) {
  for (const pod of podSpecsOf(obj)) checkPodFlags(pod, where, helps, problems);
}

function checkPodFlags(pod, where, helps, problems) {
  for (const c of [...(pod.initContainers || []), ...(pod.containers || [])]) {
    const cw = `${where} container ${c.name}`;
    const binary = path.basename((c.command || [])[0] || '');
    const args = [...(c.command || []).slice(1), ...(c.args || [])];
    if (!binary.startsWith('qsr')) continue;  // a helper (cp, sh): not ours to check
    if (!helps.has(binary)) {
      problems.push(`${cw}: runs ${binary}, whose --help was not given (--help-file ${binary}=FILE)`);
      continue;
    }
    const known = helps.get(binary);
    const env = new Set((c.env || []).map((e) => e.name));
    for (const arg of args) {
      for (const m of String(arg).matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) {
        if (!env.has(m[1])) problems.push(`${cw}: ${arg}: $(${m[1]}) is not in the container's env`);
      }
      const f = /^--([^=]+)/.exec(String(arg));
      if (f && !known.has(f[1]) && !known.has(f[1].replace(/_/g, '-'))) {
        problems.push(`${cw}: ${binary} does not accept --${f[1]} (not in its --help)`);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

function main(argv) {
  const helps = new Map();
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--help-file') {
      const [bin, file] = argv[++i].split('=');
      helps.set(bin, readHelp(file));
    } else {
      files.push(argv[i]);
    }
  }
  if (files.length === 0) {
    console.error('usage: validate.js [--help-file BINARY=FILE ...] MANIFEST.yaml...');
    return 2;
  }
  const problems = [];
  let count = 0;
  for (const file of files) {
    let docs;
    try {
      docs = yaml.loadAll(fs.readFileSync(file, 'utf8')).filter((d) => d);
    } catch (e) {
      problems.push(`${file}: not YAML: ${e.message}`);
      continue;
    }
    const recipes = [];
    const jobs = [];
    for (const obj of docs) {
      count++;
      const name = (obj.metadata && obj.metadata.name) || '?';
      const where = `${path.basename(file)}: ${obj.kind}/${name}`;
      if (!obj.apiVersion || !obj.kind) { problems.push(`${where}: no apiVersion or kind`); continue; }
      // kustomize wraps a generated Secret's base64 over several lines; the API server's decoder
      // skips the newlines, so the schema's "byte" format is checked without them.
      if (obj.kind === 'Secret' && obj.data) {
        for (const k of Object.keys(obj.data)) obj.data[k] = String(obj.data[k]).replace(/\s+/g, '');
      }
      if (obj.apiVersion === 'kubeflow.org/v1' && obj.kind === 'PyTorchJob') {
        checkPyTorchJob(obj, where, problems);
      } else {
        const mod = modelModule(obj.apiVersion, obj.kind);
        let Model;
        try {
          Model = require(mod)[obj.kind];
        } catch (e) {
          problems.push(`${where}: no schema for ${obj.apiVersion} ${obj.kind}`);
          continue;
        }
        try {
          new Model(obj).validate();
        } catch (e) {
          problems.push(`${where}: ${e.message}`);
        }
        const dts = resolveDts(mod);
        const found = dts && lookup(`I${obj.kind}`, dts);
        if (!found) problems.push(`${where}: no field declarations for ${obj.kind} (${mod})`);
        else checkFields(obj, found.type, found.file, where, problems);
      }
      checkFlags(obj, where, helps, problems);
      // An overlay is what gets applied: each container's image must say which build it is (a
      // container an overlay adds after its `images:` list would otherwise run `:latest`).
      if (path.basename(file) !== 'base.yaml') {
        for (const pod of podSpecsOf(obj)) {
          for (const c of [...(pod.initContainers || []), ...(pod.containers || [])]) {
            if (c.image && !/[:@]/.test(c.image.split('/').pop())) {
              problems.push(`${where} container ${c.name}: image ${c.image} has no tag or digest`);
            }
          }
        }
      }
      if (obj.kind === 'ConfigMap' && obj.data && obj.data['recipe.yaml']) {
        recipes.push(yaml.load(obj.data['recipe.yaml']));
      }
      if (obj.kind === 'Job' && /qsr-worker/.test(name)) {
        // Each pod runs one worker per container that runs qsr-worker (several behind an agent).
        const perPod = ((podSpecOf(obj) || {}).containers || []).filter(
          (c) => runs(c, 'qsr-worker')).length;
        jobs.push({ where, spec: obj.spec, perPod });
      }
      if (obj.kind === 'PyTorchJob') {
        const replicas = (obj.spec && obj.spec.pytorchReplicaSpecs) || {};
        const worker = replicas.Worker || {};
        const perPod = (((worker.template || {}).spec || {}).containers || []).filter(
          (c) => runs(c, 'qsr-worker')).length;
        const n = worker.replicas === undefined ? 1 : worker.replicas;
        jobs.push({ where: `${where} Worker`, spec: { parallelism: n, completions: n }, perPod });
        // A gang is every pod of the run: fewer would start a run that cannot have all workers.
        const pods = Object.values(replicas).reduce(
          (sum, r) => sum + (r.replicas === undefined ? 1 : r.replicas), 0);
        const policy = ((obj.spec.runPolicy || {}).schedulingPolicy) || {};
        if (policy.minAvailable !== undefined && policy.minAvailable !== pods) {
          problems.push(`${where}: runPolicy.schedulingPolicy.minAvailable is ` +
                        `${policy.minAvailable}; the gang is all ${pods} pods (Master + Workers)`);
        }
      }
      // A coordinator's --workers=N overrides the recipe's.
      for (const c of podSpecsOf(obj).flatMap((pod) => pod.containers || [])) {
        if (!runs(c, 'qsr-coordinator')) continue;
        for (const arg of c.args || []) {
          const m = /^--workers=(\d+)$/.exec(String(arg));
          if (m) recipes.push({ workers: Number(m[1]), override: true });
        }
      }
    }
    const overrides = recipes.filter((r) => r && r.override);
    for (const job of jobs) {
      for (const recipe of overrides.length ? overrides : recipes) {
        const n = recipe && recipe.workers;
        const pods = job.perPod > 0 ? n / job.perPod : NaN;
        if (job.spec.parallelism !== pods || job.spec.completions !== pods) {
          problems.push(`${job.where}: parallelism ${job.spec.parallelism} and completions ` +
                        `${job.spec.completions}, times ${job.perPod} qsr-worker container(s) ` +
                        `per pod, must equal the run's workers (${n}, from ` +
                        `${recipe.override ? "the coordinator's --workers" : 'the recipe'})`);
        }
      }
    }
  }
  for (const p of problems) console.log(`validate: ${p}`);
  console.log(`validate: ${count} objects in ${files.length} files, ${problems.length} problems`);
  return problems.length ? 1 : 0;
}

module.exports = { podTemplatesOf, podSpecsOf, runs };
if (require.main === module) process.exitCode = main(process.argv.slice(2));
