// The push bell's pure helpers: the key bytes subscribe() takes, the channel name, the key check.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { deviceName, keyBytes, madeWithKey } from '../../static/js/push.js';

const SERVER_KEY = 'BDDp4jsFBkM_xC0vDXWaDXLGU7qrxdUGNlurCtn6kRzQ4YZNguCz1Qa8qTL8q_x_T6IzxjsfTddQQ3K1bQ0CQkY';

describe('keyBytes', () => {
  test('decodes unpadded base64url into the 65-byte uncompressed point', () => {
    const bytes = keyBytes(SERVER_KEY);
    assert.equal(bytes.length, 65);
    assert.equal(bytes[0], 4);
    assert.deepEqual([...bytes], [...Buffer.from(SERVER_KEY, 'base64url')]);
  });
  test('reads - and _ as base64url does', () => {
    assert.deepEqual([...keyBytes('-_8')], [0xfb, 0xff]);
  });
});

describe('deviceName', () => {
  const cases = [
    ['Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36', 'Chrome · Android'],
    ['Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1', 'Safari · iPhone'],
    ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 Edg/126.0', 'Edge · Windows'],
    ['Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:127.0) Gecko/20100101 Firefox/127.0', 'Firefox · macOS'],
    ['', 'Browser'],
  ];
  for (const [agent, name] of cases) test(name, () => assert.equal(deviceName(agent), name));
});

describe('madeWithKey', () => {
  test('a subscription made with the server key matches; one made with another does not', () => {
    const same = { options: { applicationServerKey: keyBytes(SERVER_KEY).buffer } };
    const other = keyBytes(SERVER_KEY);
    other[5] ^= 1;
    assert.equal(madeWithKey(same, SERVER_KEY), true);
    assert.equal(madeWithKey({ options: { applicationServerKey: other.buffer } }, SERVER_KEY), false);
    assert.equal(madeWithKey({ options: {} }, SERVER_KEY), true);  // the browser does not say: assume it does
  });
});
