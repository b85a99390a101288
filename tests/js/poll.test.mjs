// The poll timer: the interval setting, regular ticks, soon(), stop(), failures.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { MAX_POLL_MS, MIN_POLL_MS, Poller, pollInterval } from '../../static/js/poll.js';

describe('pollInterval', () => {
  test('?poll= wins, then data-poll-ms, then the fallback', () => {
    assert.equal(pollInterval('?poll=3000', '5000'), 3000);
    assert.equal(pollInterval('', '2000'), 2000);
    assert.equal(pollInterval('?poll=abc', undefined), 5000);
    assert.equal(pollInterval('?poll=0', '-1', 7000), 7000);
  });

  test('never below one second, however small the setting', () => {
    assert.equal(MIN_POLL_MS, 1000);
    for (const search of ['?poll=1', '?poll=0.001', '?poll=999', '?poll=5e-324']) {
      assert.equal(pollInterval(search, '5000'), 1000, search);
    }
    assert.equal(pollInterval('', '1'), 1000);
    assert.equal(pollInterval('', undefined, 10), 1000);
    assert.equal(pollInterval('?poll=1001', '5000'), 1001);
  });

  test('never beyond an hour: a timer past 2^31 - 1 ms would fire at once', () => {
    assert.equal(MAX_POLL_MS, 3_600_000);
    for (const search of ['?poll=3e9', '?poll=1e300', '?poll=3600001']) {
      assert.equal(pollInterval(search, '5000'), MAX_POLL_MS, search);
    }
    assert.equal(pollInterval('?poll=Infinity', '5000'), 5000); // not a number of ms: the next choice
    assert.equal(pollInterval('', 'Infinity', 7000), 7000);
  });
});

describe('Poller', () => {
  test('ticks every interval while started, and not after stop', async () => {
    let ticks = 0;
    const poller = new Poller(() => { ticks += 1; }, 20);
    poller.start();
    await sleep(110);
    poller.stop();
    const stoppedAt = ticks;
    assert.ok(stoppedAt >= 2 && stoppedAt <= 6, `ticked ${stoppedAt} times in 110 ms at 20 ms`);
    await sleep(60);
    assert.equal(ticks, stoppedAt);
    assert.equal(poller.running, false);
  });

  test('soon() ticks before the interval would', async () => {
    let ticks = 0;
    const poller = new Poller(() => { ticks += 1; }, 10_000);
    poller.start();
    poller.soon(5);
    await sleep(40);
    poller.stop();
    assert.equal(ticks, 1);
  });

  test('soon() does nothing while stopped', async () => {
    let ticks = 0;
    const poller = new Poller(() => { ticks += 1; }, 10_000);
    poller.soon(1);
    await sleep(20);
    assert.equal(ticks, 0);
  });

  test('soon() during a tick runs another right after it, never two at once', async () => {
    let running = 0;
    let most = 0;
    let ticks = 0;
    const poller = new Poller(async () => {
      running += 1;
      most = Math.max(most, running);
      ticks += 1;
      await sleep(30);
      running -= 1;
    }, 10_000);
    poller.start(0);
    await sleep(10);
    poller.soon(0);
    poller.soon(0);
    await sleep(100);
    poller.stop();
    assert.equal(most, 1);
    assert.equal(ticks, 2);
  });

  test('a failing tick does not stop the polling', async () => {
    let ticks = 0;
    const poller = new Poller(() => {
      ticks += 1;
      throw new Error('offline');
    }, 10);
    poller.start(0);
    await sleep(60);
    poller.stop();
    assert.ok(ticks >= 2, `ticked ${ticks} times`);
  });
});
