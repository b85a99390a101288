// Push channels in words: the service named from the scheme, who may edit, a run's pushes as warnings and a count.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { isDeletable, isEditable, pushOutcome, serviceLabel } from '../../static/js/channel_views.js';
import { createTranslator } from '../../static/js/i18n.js';

const zh = createTranslator('zh-CN').t;
const en = createTranslator('en').t;

describe('serviceLabel', () => {
  test('known schemes by their service, in the page language', () => {
    assert.equal(serviceLabel({ service: 'barks' }, zh), 'Bark');
    assert.equal(serviceLabel({ service: 'wecombot' }, zh), '企业微信');
    assert.equal(serviceLabel({ service: 'wecombot' }, en), 'WeCom');
    assert.equal(serviceLabel({ service: 'dingtalk' }, zh), '钉钉');
    assert.equal(serviceLabel({ service: 'feishu' }, zh), '飞书');
    assert.equal(serviceLabel({ service: 'ntfys' }, zh), 'ntfy');
    assert.equal(serviceLabel({ service: 'tgram' }, zh), 'Telegram');
    assert.equal(serviceLabel({ service: 'mailtos' }, zh), '邮件');
    assert.equal(serviceLabel({ service: 'json' }, zh), 'Webhook');
  });

  test('a browser subscription is a browser; an unknown scheme is shown as it is', () => {
    assert.equal(serviceLabel({ kind: 'webpush', service: 'webpush' }, zh), '浏览器');
    assert.equal(serviceLabel({ kind: 'webpush' }, en), 'Browser');
    assert.equal(serviceLabel({ service: 'Gotify' }, zh), 'gotify');
    assert.equal(serviceLabel({ url: 'pover://•••' }, zh), 'pover', 'from the masked URL when there is no service');
  });
});

describe('isEditable', () => {
  test('only channels added through the page or the API', () => {
    assert.equal(isEditable({ source: 'user', kind: 'apprise' }), true);
    assert.equal(isEditable({ source: 'env', kind: 'apprise' }), false);
    assert.equal(isEditable({ source: 'browser', kind: 'webpush' }), false);
  });
});

describe('pushOutcome', () => {
  const run = channels => ({ status: 'ok', channels });

  test('a failed or retrying channel is a warning naming it and its answer', () => {
    const { warnings, sent } = pushOutcome(run({
      1: { channel_name: '手机', status: 'failed', attempts: 3, answer: 'HTTP 500 from the service' },
      2: { channel_name: '工作群', status: 'retrying', attempts: 1, answer: 'timed out' },
      3: { channel_name: '邮箱', status: 'sent', attempts: 1, answer: 'Sent.' },
    }), zh);
    assert.deepEqual(warnings, ['推送到 手机 失败：HTTP 500 from the service', '推送到 工作群 失败，正在重试（已试 1 次）：timed out']);
    assert.equal(sent, 1);
  });

  test('sent and pending channels warn of nothing; a run pushed nowhere says nothing', () => {
    assert.deepEqual(pushOutcome(run({ 1: { channel_name: 'a', status: 'sent' }, 2: { status: 'pending' } }), en),
      { warnings: [], sent: 1 });
    assert.deepEqual(pushOutcome({ status: 'ok' }, en), { warnings: [], sent: 0 });
    assert.deepEqual(pushOutcome(null, en), { warnings: [], sent: 0 });
  });
});

describe('isDeletable', () => {
  test('lets added channels and browser subscriptions go, never NOTIFY_URLS', () => {
    assert.equal(isDeletable({ source: 'user', kind: 'apprise' }), true);
    assert.equal(isDeletable({ source: 'browser', kind: 'webpush' }), true);
    assert.equal(isDeletable({ source: 'env', kind: 'apprise' }), false);
  });
});
