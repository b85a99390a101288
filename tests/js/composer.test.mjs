// The composer's length rules: characters counted as the server counts them, the counter near the limit.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { COUNTER_FROM, characterCount, isSendingEnter, lengthStatus } from '../../static/js/composer.js';

describe('characterCount', () => {
  test('counts code points, as Python len() does on the server', () => {
    assert.equal(characterCount(''), 0);
    assert.equal(characterCount('hello'), 5);
    assert.equal(characterCount('你好'), 2);
    assert.equal(characterCount('😀'), 1);  // String.length says 2
    assert.equal(characterCount('😀'.repeat(100)), 100);
    assert.equal(characterCount('a😀b👍🏽'), 5);  // the skin tone is a code point of its own, as in Python
  });
});

describe('lengthStatus', () => {
  test('hidden below 80 % of the limit, shown from there, over past the limit', () => {
    assert.equal(COUNTER_FROM, 0.8);
    assert.deepEqual(lengthStatus(79, 100), { shown: false, over: false });
    assert.deepEqual(lengthStatus(80, 100), { shown: true, over: false });
    assert.deepEqual(lengthStatus(100, 100), { shown: true, over: false });
    assert.deepEqual(lengthStatus(101, 100), { shown: true, over: true });
  });

  test('without a known limit, no counter and nothing refused', () => {
    assert.deepEqual(lengthStatus(1_000_000, null), { shown: false, over: false });
  });
});

describe('isSendingEnter', () => {
  test('Enter sends; Shift+Enter, Alt+Enter and the Enter ending an IME composition do not', () => {
    assert.equal(isSendingEnter({ key: 'Enter' }), true);
    assert.equal(isSendingEnter({ key: 'Enter', shiftKey: true }), false);
    assert.equal(isSendingEnter({ key: 'Enter', altKey: true }), false);
    assert.equal(isSendingEnter({ key: 'Enter', isComposing: true }), false);
    assert.equal(isSendingEnter({ key: 'Enter', keyCode: 229 }), false);
    assert.equal(isSendingEnter({ key: 'a' }), false);
  });
});
