// Pipelined reserves/s of the Node client: batches of BATCH reserves
// (pipeline().execute()) on one connection for SECONDS, over SKUS SKUs.
// Prints one JSON line. Usage: node pipeline.js HOST:PORT [SECONDS] [SKUS] [BATCH] [TOKEN]
import { randomBytes } from 'node:crypto';
import { Client } from '../index.js';

const [addr = '127.0.0.1:7400', seconds = '5', skus = '100', batch = '1000', token] = process.argv.slice(2);
const c = new Client(addr, { token });
const run = `bnode${randomBytes(3).toString('hex')}`;
const nSkus = Number(skus);
const p = c.pipeline();
for (let i = 0; i < nSkus; i++) p.skuPut(`${run}-${i}`, { ownOnHand: 1000000000 });
for (const r of await p.execute()) if (r instanceof Error) throw r;
let n = 0;
let errors = 0;
const t0 = performance.now();
while (performance.now() - t0 < Number(seconds) * 1000) {
  for (let i = n; i < n + Number(batch); i++) p.reserve(`${run}-o${i}`, `${run}-${i % nSkus}`, 1);
  errors += (await p.execute()).filter((r) => r instanceof Error).length;
  n += Number(batch);
}
const dt = (performance.now() - t0) / 1000;
c.close();
console.log(JSON.stringify({ client: 'node', reserves: n, errors, seconds: Number(dt.toFixed(3)),
  per_s: Math.round(n / dt) }));
