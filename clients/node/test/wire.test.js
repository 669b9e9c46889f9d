// Framing of untrusted replies, without a server: limits hold before decoding.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encode } from '@msgpack/msgpack';
import * as stockd from '../index.js';
import { MAX_DEPTH, frameEnd, request, reserveParams } from '../lib/wire.js';

test('the ping request is the protocol vector', () => {
  // proto/PROTOCOL.md §2, vector `ping`.
  assert.equal(Buffer.from(request(1, 'ping', {}, null)).toString('hex'), '940001a470696e679180');
});

test('frameEnd finds one message and waits for the rest', () => {
  const m = Buffer.from(encode([1, 7, null, { lines: [{ sku: 'a', qty: 1 }], order_id: 'o-1' }]));
  const two = Buffer.concat([m, m]);
  assert.equal(frameEnd(two, 0, 1 << 20), m.length);
  assert.equal(frameEnd(two, m.length, 1 << 20), 2 * m.length);
  for (let cut = 0; cut < m.length; cut++) assert.equal(frameEnd(m.subarray(0, cut), 0, 1 << 20), -1, `cut at ${cut}`);
});

test('a header claiming 4 GiB is refused at once', () => {
  assert.throws(() => frameEnd(Buffer.from('940101c0dbffffffff', 'hex'), 0, 4 << 20), stockd.ProtocolError);
  assert.throws(() => frameEnd(Buffer.from('dd7fffffff', 'hex'), 0, 1 << 20), stockd.ProtocolError);
});

test('nesting beyond the limit and malformed bytes are refused', () => {
  const deep = Buffer.concat([Buffer.alloc(MAX_DEPTH + 1, 0x91), Buffer.from([0])]);
  assert.throws(() => frameEnd(deep, 0, 1 << 20), stockd.ProtocolError);
  assert.throws(() => frameEnd(Buffer.from('9401c1', 'hex'), 0, 1 << 20), stockd.ProtocolError);
});

test('lines as a map, pairs or objects give the same params', () => {
  const want = [{ sku: '123', qty: 1 }, { sku: 'cap', qty: 2 }];
  assert.deepEqual(reserveParams('o', { 123: 1, cap: 2 }, undefined, { holdMs: 60000 }).lines, want);
  assert.deepEqual(reserveParams('o', [['123', 1], ['cap', 2]]).lines, want);
  assert.deepEqual(reserveParams('o', [{ sku: '123', qty: 1 }, { sku: 'cap', qty: 2 }]).lines, want);
});

test('unknown codes fall back on the retryable flag', () => {
  assert.equal(stockd.fromWire({ code: 'new_thing', message: 'm', retryable: true }).constructor, stockd.Retryable);
  assert.equal(stockd.fromWire({ code: 'new_thing', message: 'm', retryable: false }).constructor, stockd.Refused);
  assert.ok(stockd.fromWire('junk') instanceof stockd.ProtocolError);
});

test('check is sent only as true, and only a boolean is taken', () => {
  assert.equal(reserveParams('o', 'a', 1, { check: true }).check, true);
  assert.equal(reserveParams('o', { a: 1, b: 2 }, undefined, { holdMs: 60000, check: true }).check, true);
  assert.ok(!('check' in reserveParams('o', 'a', 1, { check: false })));
  assert.ok(!('check' in reserveParams('o', 'a', 1)));
  for (const bad of [null, 0, 1, 'true', [true]]) {
    assert.throws(() => reserveParams('o', 'a', 1, { check: bad }), { name: 'TypeError', message: /must be a boolean/ });
  }
});

test('check_failed is a refusal of its own', () => {
  const e = stockd.fromWire({ code: 'check_failed', message: 'check refused: x 500_004 y', retryable: false, order_id: 'o-1' });
  assert.equal(e.constructor, stockd.CheckFailed);
  assert.ok(e instanceof stockd.Refused);
  assert.deepEqual([e.code, e.retryable, e.orderId], ['check_failed', false, 'o-1']);
  const u = stockd.fromWire({ code: 'unavailable', message: 'm', retryable: true, reason: 'check_unavailable' });
  assert.equal(u.constructor, stockd.Unavailable);
  assert.equal(u.reason, 'check_unavailable');
});

test('a set-aside unavailable is final', () => {
  const e = stockd.fromWire({ code: 'unavailable', message: 'sku x set aside', retryable: false, set_aside: true });
  assert.equal(e.constructor, stockd.SetAside);
  assert.ok(e instanceof stockd.Refused && !(e instanceof stockd.Retryable));
  assert.equal(e.code, 'unavailable');
});
