#!/usr/bin/env node
// Server reflection and health checking with a gRPC client that is not ours: Node's
// @grpc/grpc-js with grpc-js-reflection-client (npm packages in deploy/tools/node_modules).
// Starts a qsr-coordinator on an OS-chosen loopback port, lists its services through reflection
// (v1alpha, what gRPC 1.51 serves), builds the qsr.v1.Coordinator client from the descriptors the
// server sends (no qsr .proto file here), calls GetStatus and the standard health check (what
// the Kubernetes gRPC probes call), and stops the coordinator. Every wait has a deadline.
//
// Usage: node reflection_test.js QSR_COORDINATOR RECIPE
'use strict';

const path = require('path');
const fs = require('fs');
const os = require('os');
const { spawn } = require('child_process');

const TOOLS = path.resolve(__dirname, '../../deploy/tools/node_modules');
const req = (m) => require(path.join(TOOLS, m));
const grpc = req('@grpc/grpc-js');
const { GrpcReflection } = req('grpc-js-reflection-client');

const [coordinatorBin, recipe] = process.argv.slice(2);
const CALL_MS = 10000;

let passed = 0;
let failed = 0;
function check(what, ok, detail = '') {
  if (ok) passed++; else failed++;
  console.log(`reflection: ${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? ': ' + detail : ''}`);
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function withDeadline(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + CALL_MS }, (err, reply) => {
      if (err) reject(err); else resolve(reply);
    });
  });
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qsr-reflection-'));
  const portFile = path.join(dir, 'port');
  const coordinator = spawn(coordinatorBin,
      ['--recipe', recipe, '--listen', '127.0.0.1:0', '--port-file', portFile, '--run-dir',
       path.join(dir, 'run'), '--run-id', 'reflection-test', '--workers', '2', '--epochs', '1'],
      { stdio: ['ignore', 'inherit', 'inherit'] });
  let exited = false;
  coordinator.on('exit', () => { exited = true; });
  try {
    let port = '';
    for (const end = Date.now() + 30000; !port && !exited && Date.now() < end;) {
      await sleep(50);
      if (fs.existsSync(portFile)) port = fs.readFileSync(portFile, 'utf8').trim();
    }
    if (!port) throw new Error('the coordinator did not write its port within 30 s');
    const address = `127.0.0.1:${port}`;

    const reflection = new GrpcReflection(address, grpc.ChannelCredentials.createInsecure());
    const services = await withDeadline(reflection.listServices(), CALL_MS, 'listServices');
    for (const s of ['qsr.v1.Coordinator', 'grpc.health.v1.Health']) {
      check(`lists ${s}`, services.includes(s), services.join(', '));
    }

    const descriptor = await withDeadline(reflection.getDescriptorBySymbol('qsr.v1.Coordinator'),
                                          CALL_MS, 'getDescriptorBySymbol');
    const pkg = descriptor.getPackageObject({ keepCase: true, longs: String, enums: String,
                                             defaults: true, oneofs: true });
    const Coordinator = pkg.qsr.v1.Coordinator;
    check('qsr.v1.Coordinator has GetStatus and Stop',
          typeof Coordinator === 'function' && 'GetStatus' in Coordinator.service &&
          'Stop' in Coordinator.service);
    const client = new Coordinator(address, grpc.credentials.createInsecure());
    const status = await unary(client, 'GetStatus', {});
    check('GetStatus answers state WAITING', status.state === 'WAITING', status.state);
    check('GetStatus answers run_id', status.run_id === 'reflection-test', status.run_id);
    check('GetStatus answers world_size 2', status.world_size === 2, String(status.world_size));
    check('GetStatus answers total_steps', Number(status.total_steps) > 0, status.total_steps);
    client.close();

    // gRPC C++'s built-in health service has no descriptor to reflect: use the standard
    // definition (grpc/health/v1/health.proto), as any health client does.
    const healthProto = path.join(dir, 'health.proto');
    fs.writeFileSync(healthProto, `syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
  ServingStatus status = 1;
}
service Health { rpc Check(HealthCheckRequest) returns (HealthCheckResponse); }
`);
    const Health = grpc.loadPackageDefinition(req('@grpc/proto-loader').loadSync(
        healthProto, { keepCase: true, enums: String })).grpc.health.v1.Health;
    const health = new Health(address, grpc.credentials.createInsecure());
    const serving = await unary(health, 'Check', { service: '' });
    check('grpc.health.v1.Health/Check is SERVING', serving.status === 'SERVING', serving.status);
    health.close();
  } catch (e) {
    check('no error', false, e.stack || String(e));
  } finally {
    if (!exited) {
      coordinator.kill('SIGTERM');
      for (const end = Date.now() + 10000; !exited && Date.now() < end;) await sleep(50);
      if (!exited) coordinator.kill('SIGKILL');
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  console.log(`reflection: ${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

if (!coordinatorBin || !recipe) {
  console.error('usage: node reflection_test.js QSR_COORDINATOR RECIPE');
  process.exit(2);
}
main();
