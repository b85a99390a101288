// Which failed turn the page offers to retry, and when Enter means "retry" rather than "ask again".
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { failedTurn, isFailedReply, repeatsFailedTurn } from '../../static/js/retry.js';

const user = (id, content) => ({ id, role: 'user', content });
const reply = (id, replyTo, extra = {}) => ({ id, role: 'assistant', content: 'answer', reply_to: replyTo, ...extra });
// The server's record of a turn that got no reply (GET /api/history).
const stub = (id, replyTo) => ({
  id, role: 'assistant', content: '', reply_to: replyTo, incomplete: true,
  error: 'The model service rejected the API key.', error_code: 'upstream_auth_failed',
});

describe('isFailedReply', () => {
  test('a stub or a cut-off reply failed; a whole, a stopped or a user message did not', () => {
    assert.equal(isFailedReply(stub(2, 1)), true);
    assert.equal(isFailedReply(reply(2, 1, { incomplete: true, error: 'cut off' })), true);
    assert.equal(isFailedReply(reply(2, 1)), false);
    assert.equal(isFailedReply(reply(2, 1, { stopped: true })), false);
    assert.equal(isFailedReply(user(1, 'hi')), false);
    assert.equal(isFailedReply(undefined), false);
  });
});

describe('failedTurn', () => {
  test('the newest question whose reply failed', () => {
    assert.deepEqual(failedTurn([user(1, 'hi'), stub(2, 1)]), { id: 1, text: 'hi' });
    assert.deepEqual(failedTurn([user(1, 'hi'), reply(2, 1, { incomplete: true })]), { id: 1, text: 'hi' });
  });

  test('a reminder after the failure does not hide it', () => {
    const reminder = { id: 3, role: 'assistant', content: 'drink water', is_scheduled: true };
    assert.deepEqual(failedTurn([user(1, 'hi'), stub(2, 1), reminder]), { id: 1, text: 'hi' });
  });

  test('nothing once the question was answered, stopped, or another was asked', () => {
    assert.equal(failedTurn([user(1, 'hi'), stub(2, 1), reply(3, 1)]), null);
    assert.equal(failedTurn([user(1, 'hi'), reply(2, 1, { incomplete: true }), reply(3, 1, { stopped: true })]), null);
    assert.equal(failedTurn([user(1, 'hi'), stub(2, 1), user(3, 'next')]), null);
    assert.equal(failedTurn([user(1, 'hi'), reply(2, 1)]), null);
  });

  test('nothing for a question without any reply (it may still be answering), nor an empty thread', () => {
    assert.equal(failedTurn([user(1, 'hi')]), null);
    assert.equal(failedTurn([]), null);
    assert.equal(failedTurn([{ role: 'user', content: 'not stored' }, stub(2, undefined)]), null);
  });
});

describe('repeatsFailedTurn (Enter after a failure)', () => {
  const failed = { text: '请记住这句话', questionId: 7 };

  test('the same words retry the failed turn', () => {
    assert.equal(repeatsFailedTurn('请记住这句话', failed), true);
  });

  test('other words, or no failure, are a new question', () => {
    assert.equal(repeatsFailedTurn('请记住这句话。', failed), false);
    assert.equal(repeatsFailedTurn('something else', failed), false);
    assert.equal(repeatsFailedTurn('请记住这句话', null), false);
  });

  test('after a reload: the failed turn found in the history, retried with the same words', () => {
    const found = failedTurn([user(1, 'old'), reply(2, 1), user(3, '请记住这句话'), stub(4, 3)]);
    assert.deepEqual(found, { id: 3, text: '请记住这句话' });
    assert.equal(repeatsFailedTurn('请记住这句话', found), true);
  });
});

describe('replies the server could not finish', () => {
  test('a reply interrupted by the death of the process writing it is a failed turn, offered again', () => {
    const question = { id: 7, role: 'user', content: '讲个故事' };
    const interrupted = {
      id: 8, role: 'assistant', content: '从前', incomplete: true, interrupted: true, error_code: 'interrupted', reply_to: 7,
    };
    assert.ok(isFailedReply(interrupted));
    assert.deepEqual(failedTurn([question, interrupted]), { id: 7, text: '讲个故事' });
  });

  test('a reply still being written is not a failure', () => {
    const question = { id: 7, role: 'user', content: '讲个故事' };
    const placeholder = { id: 8, role: 'assistant', content: '', streaming: true, reply_to: 7 };
    assert.equal(isFailedReply(placeholder), false);
    assert.equal(failedTurn([question, placeholder]), null);
  });
});
