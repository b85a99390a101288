// The conversations' pure logic: the address, the order, the unread dot, short times, search highlighting.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  MAIN_ID, conversationFromSearch, displayTitle, hasUnread, highlightPieces, isConversationId, markSeen,
  relativeTime, searchFor, searchTerms, sortConversations,
} from '../../static/js/conversations.js';
import { createTranslator } from '../../static/js/i18n.js';

const en = createTranslator('en').t;
const zh = createTranslator('zh-CN').t;

describe('the address names the open conversation', () => {
  test('no c is main; c is the id; m the message', () => {
    assert.deepEqual(conversationFromSearch(''), { id: MAIN_ID, messageId: null, malformed: false });
    assert.deepEqual(conversationFromSearch('?c=0123456789ab'), { id: '0123456789ab', messageId: null, malformed: false });
    assert.deepEqual(conversationFromSearch('?poll=300&c=0123456789ab&m=42'), { id: '0123456789ab', messageId: 42, malformed: false });
    assert.deepEqual(conversationFromSearch('?c=main'), { id: MAIN_ID, messageId: null, malformed: false });
  });

  test('a c that is no id falls back to main, marked malformed; a bad m is ignored', () => {
    for (const bad of ['?c=../etc', '?c=ABCDEF012345', '?c=0123', '?c=%3Cscript%3E']) {
      assert.deepEqual(conversationFromSearch(bad), { id: MAIN_ID, messageId: null, malformed: true }, bad);
    }
    assert.equal(conversationFromSearch('?c=0123456789ab&m=x1').messageId, null);
    assert.equal(conversationFromSearch('?c=').malformed, false);
  });

  test('searchFor writes c and m, drops them for main, keeps the other parameters', () => {
    assert.equal(searchFor(MAIN_ID), '');
    assert.equal(searchFor('0123456789ab'), '?c=0123456789ab');
    assert.equal(searchFor('0123456789ab', 7, '?poll=300&c=aaaaaaaaaaaa&m=3'), '?poll=300&c=0123456789ab&m=7');
    assert.equal(searchFor(MAIN_ID, null, '?poll=300&c=aaaaaaaaaaaa&m=3'), '?poll=300');
    assert.equal(searchFor(MAIN_ID, 5), '?m=5');
  });

  test('round trip', () => {
    const { id, messageId } = conversationFromSearch(searchFor('abcdefabcdef', 12, '?poll=1000'));
    assert.deepEqual([id, messageId], ['abcdefabcdef', 12]);
    assert.ok(isConversationId('main') && isConversationId('abcdefabcdef'));
    assert.ok(!isConversationId('abcdefabcde') && !isConversationId(null) && !isConversationId('Main'));
  });
});

describe('the sidebar order', () => {
  test('pinned first, then the newest updated_at, comparing instants across offsets', () => {
    const list = [
      { id: 'a', pinned: false, updated_at: '2026-11-26T09:00:00+08:00' },  // 01:00Z
      { id: 'b', pinned: false, updated_at: '2026-11-26T02:00:00+00:00' },  // 02:00Z: newer, though "smaller" text
      { id: 'c', pinned: true, updated_at: '2020-01-01T00:00:00+00:00' },
      { id: 'main', pinned: false, updated_at: '2026-11-26T09:30:00.123+08:00' },
      { id: 'd', pinned: true, updated_at: '2021-01-01T00:00:00+00:00' },
      { id: 'e', pinned: false, updated_at: null },
    ];
    assert.deepEqual(sortConversations(list).map(c => c.id), ['d', 'c', 'b', 'main', 'a', 'e']);
    assert.equal(list[0].id, 'a', 'the input is not reordered');
  });
});

describe('titles', () => {
  test('its own title, or the fallback of main and of an untitled one, in both languages', () => {
    assert.equal(displayTitle({ id: 'main', title: '' }, zh), '主对话');
    assert.equal(displayTitle({ id: 'main', title: '' }, en), 'Main conversation');
    assert.equal(displayTitle({ id: 'abcdefabcdef', title: '  ' }, zh), '新对话');
    assert.equal(displayTitle({ id: 'abcdefabcdef', title: '' }, en), 'New chat');
    assert.equal(displayTitle({ id: 'abcdefabcdef', title: '旅行计划' }, en), '旅行计划');
  });
});

describe('the unread dot', () => {
  const meta = (id, reminderAt) => ({ id, reminder_at: reminderAt });

  test('a reminder newer than the newest seen there, in a conversation not open', () => {
    const seen = { x: '2026-11-26T09:00:00+08:00' };
    assert.equal(hasUnread(meta('x', '2026-11-26T09:05:00+08:00'), seen, 'main'), true);
    assert.equal(hasUnread(meta('x', '2026-11-26T09:00:00+08:00'), seen, 'main'), false);
    assert.equal(hasUnread(meta('x', '2026-11-26T01:00:00+00:00'), seen, 'main'), false, 'same instant, other offset');
    assert.equal(hasUnread(meta('x', '2026-11-26T09:05:00+08:00'), seen, 'x'), false, 'the open one has none');
    assert.equal(hasUnread(meta('x', null), seen, 'main'), false);
    assert.equal(hasUnread(meta('y', '2026-11-26T09:05:00+08:00'), seen, 'main'), true, 'never seen there');
  });

  test('markSeen: the open one is seen; a first visit sees everything; deleted ones are forgotten', () => {
    const list = [meta('main', '2026-11-26T09:00:00+08:00'), meta('x', '2026-11-26T10:00:00+08:00'), meta('y', null)];
    assert.deepEqual(markSeen({}, list, 'main'), { main: '2026-11-26T09:00:00+08:00' });
    assert.deepEqual(markSeen({}, list, 'main', { baseline: true }),
      { main: '2026-11-26T09:00:00+08:00', x: '2026-11-26T10:00:00+08:00' });
    assert.deepEqual(markSeen({ gone: '2026-01-01T00:00:00Z', x: '2026-11-26T11:00:00+08:00' }, list, 'x'),
      { x: '2026-11-26T11:00:00+08:00' }, 'never moves back');
    const seen = markSeen({}, list, 'main');
    assert.equal(hasUnread(list[1], seen, 'main'), true);
    assert.equal(hasUnread(list[1], markSeen(seen, list, 'x'), 'main'), false, 'seen once it was open');
  });
});

describe('relative times', () => {
  const now = new Date(2026, 10, 26, 15, 30, 0);  // local time, as the page sees it
  const ago = ms => new Date(now.getTime() - ms).toISOString();

  test('just now, minutes, hours today, yesterday, days, then a date', () => {
    assert.equal(relativeTime(ago(20_000), now, en, 'en'), 'now');
    assert.equal(relativeTime(ago(-90_000), now, en, 'en'), 'now', 'a clock a little ahead');
    assert.equal(relativeTime(ago(5 * 60_000), now, en, 'en'), '5 min');
    assert.equal(relativeTime(ago(5 * 60_000), now, zh, 'zh-CN'), '5 分钟前');
    assert.equal(relativeTime(ago(3 * 3_600_000), now, zh, 'zh-CN'), '3 小时前');
    assert.equal(relativeTime(new Date(2026, 10, 25, 23, 0).toISOString(), now, zh, 'zh-CN'), '昨天');
    assert.equal(relativeTime(new Date(2026, 10, 22, 12, 0).toISOString(), now, en, 'en'), '4 d');
    assert.equal(relativeTime(new Date(2026, 2, 2, 12, 0).toISOString(), now, en, 'en'), 'Mar 2');
    assert.equal(relativeTime(new Date(2026, 2, 2, 12, 0).toISOString(), now, zh, 'zh-CN'), '3月2日');
    assert.match(relativeTime(new Date(2024, 2, 2, 12, 0).toISOString(), now, en, 'en'), /2024/);
    assert.equal(relativeTime(null, now, en, 'en'), '');
    assert.equal(relativeTime('soon', now, en, 'en'), '');
  });
});

describe('search highlighting', () => {
  test('terms: split on spaces (also the ideographic one), no duplicates, longest first', () => {
    assert.deepEqual(searchTerms('  吃药　提醒 吃药 '), ['吃药', '提醒']);
    assert.deepEqual(searchTerms('a pill'), ['pill', 'a']);
    assert.deepEqual(searchTerms(''), []);
  });

  test('pieces mark every occurrence, any case, and keep the text whole', () => {
    const pieces = highlightPieces('Take the PILL, then another pill. 记得吃药！', searchTerms('pill 吃药'));
    assert.deepEqual(pieces, [
      { text: 'Take the ', hit: false }, { text: 'PILL', hit: true }, { text: ', then another ', hit: false },
      { text: 'pill', hit: true }, { text: '. 记得', hit: false }, { text: '吃药', hit: true }, { text: '！', hit: false },
    ]);
    assert.equal(pieces.map(p => p.text).join(''), 'Take the PILL, then another pill. 记得吃药！');
  });

  test('regex characters in a term are plain text; markup stays text', () => {
    assert.deepEqual(highlightPieces('cost (a+b)*2 <b>x</b>', ['(a+b)*', '<b>']), [
      { text: 'cost ', hit: false }, { text: '(a+b)*', hit: true }, { text: '2 ', hit: false },
      { text: '<b>', hit: true }, { text: 'x</b>', hit: false },
    ]);
    assert.deepEqual(highlightPieces('', ['x']), []);
    assert.deepEqual(highlightPieces('nothing here', []), [{ text: 'nothing here', hit: false }]);
  });
});
