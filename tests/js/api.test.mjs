// The API layer with fetch replaced: typed errors, the unauthorized announcement, query building.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';

import {
  ApiError, authEvents, getHistory, logIn, logOut, openChatStream, parseRetryAfter, requestJson,
} from '../../static/js/api.js';

const realFetch = globalThis.fetch;
let calls;

/** Make fetch answer `respond(url, init)` and record each call. */
function fakeFetch(respond) {
  calls = [];
  globalThis.fetch = async (url, init) => {
    calls.push({ url, init });
    return respond(url, init);
  };
}

const json = (body, status = 200, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });

/** How many `unauthorized` announcements `action` causes. */
async function countUnauthorized(action) {
  let count = 0;
  const listener = () => { count += 1; };
  authEvents.addEventListener('unauthorized', listener);
  try {
    await action().catch(() => {});
  } finally {
    authEvents.removeEventListener('unauthorized', listener);
  }
  return count;
}

describe('api', () => {
  beforeEach(() => fakeFetch(() => json({ success: true })));
  afterEach(() => { globalThis.fetch = realFetch; });

  test('answers the parsed JSON body', async () => {
    fakeFetch(() => json({ success: true, messages: [], has_more: false }));
    assert.deepEqual(await requestJson('/api/history'), { success: true, messages: [], has_more: false });
    assert.equal(calls[0].init.credentials, 'same-origin');
  });

  test('an error response becomes an ApiError with status, code, message, user message and Retry-After', async () => {
    const stored = { id: 3, role: 'user', content: 'hi' };
    fakeFetch(() => json({ success: false, error: 'Too many requests.', code: 'rate_limited', user_message: stored },
      429, { 'Retry-After': '7' }));
    const error = await requestJson('/api/chat', { method: 'POST', body: { message: 'hi' } }).catch(e => e);
    assert.ok(error instanceof ApiError);
    assert.deepEqual({ ...error, message: error.message },
      { name: 'ApiError', code: 'rate_limited', status: 429, userMessage: stored, retryAfter: 7, message: 'Too many requests.' });
  });

  test('a body that is not JSON still gives a code from the status', async () => {
    fakeFetch(() => new Response('<h1>Bad gateway</h1>', { status: 502 }));
    const error = await requestJson('/api/health').catch(e => e);
    assert.equal(error.code, 'http_502');
    assert.equal(error.message, 'HTTP 502');
    assert.equal(error.userMessage, null);
    assert.equal(error.retryAfter, null);
  });

  test('a 401 announces unauthorized, and the page decides what to show', async () => {
    fakeFetch(() => json({ success: false, error: 'Log in.', code: 'unauthorized' }, 401));
    assert.equal(await countUnauthorized(() => requestJson('/api/history')), 1);
  });

  test('a wrong token at the login form does not announce unauthorized', async () => {
    fakeFetch(() => json({ success: false, error: 'The access token is wrong.', code: 'invalid_token' }, 401));
    assert.equal(await countUnauthorized(() => logIn('nope')), 0);
    const error = await logIn('nope').catch(e => e);
    assert.equal(error.status, 401);
    assert.deepEqual(JSON.parse(calls.at(-1).init.body), { token: 'nope' });
    assert.equal(calls.at(-1).init.headers['Content-Type'], 'application/json');
  });

  test('every POST says it is JSON, even without a body (the server refuses any other POST, as a form\'s)', async () => {
    await logOut();
    assert.equal(calls[0].init.method, 'POST');
    assert.equal(calls[0].init.headers['Content-Type'], 'application/json');
    await requestJson('/api/history');
    assert.equal(calls[1].init.headers['Content-Type'], undefined);
  });

  test('other failures do not announce unauthorized', async () => {
    fakeFetch(() => json({ success: false, error: 'no', code: 'not_configured' }, 503));
    assert.equal(await countUnauthorized(() => requestJson('/api/chat')), 0);
  });

  test('a network failure is ApiError network with status 0', async () => {
    fakeFetch(() => { throw new TypeError('Failed to fetch'); });
    const error = await requestJson('/api/health').catch(e => e);
    assert.ok(error instanceof ApiError);
    assert.equal(error.code, 'network');
    assert.equal(error.status, 0);
    assert.equal(error.cause.message, 'Failed to fetch');
  });

  test('an abort is passed on as is, not turned into a failure', async () => {
    fakeFetch(() => { throw new DOMException('aborted', 'AbortError'); });
    const error = await requestJson('/api/health').catch(e => e);
    assert.equal(error.name, 'AbortError');
    assert.ok(!(error instanceof ApiError));
  });

  test('getHistory asks for before / after / limit only when given', async () => {
    fakeFetch(() => json({ messages: [], has_more: false }));
    await getHistory();
    await getHistory({ before: 9 });
    await getHistory({ after: 0, limit: 50 });
    assert.deepEqual(calls.map(c => c.url), ['/api/history', '/api/history?before=9', '/api/history?after=0&limit=50']);
  });

  test('openChatStream posts the message, retry_of when retrying, and returns the body', async () => {
    fakeFetch(() => new Response('data: {}\n\n', { headers: { 'Content-Type': 'text/event-stream' } }));
    const signal = new AbortController().signal;
    const body = await openChatStream({ message: 'again', retryOf: 4, signal });
    assert.equal(typeof body.getReader, 'function');
    await openChatStream({ message: 'new' });
    await openChatStream({ message: 'keyed', idempotencyKey: 'abcdef0123456789' });
    assert.equal(calls[0].url, '/api/chat/stream');
    assert.equal(calls[0].init.signal, signal);
    assert.deepEqual(JSON.parse(calls[0].init.body), { message: 'again', retry_of: 4 });
    assert.deepEqual(JSON.parse(calls[1].init.body), { message: 'new' });
    assert.deepEqual(JSON.parse(calls[2].init.body), { message: 'keyed', idempotency_key: 'abcdef0123456789' });
  });

  test('openChatStream throws the refusal with the stored user message', async () => {
    const stored = { id: 8, role: 'user', content: 'x' };
    fakeFetch(() => json({ success: false, error: 'Invalid token', code: 'upstream_auth_failed', user_message: stored }, 502));
    const error = await openChatStream({ message: 'x' }).catch(e => e);
    assert.equal(error.code, 'upstream_auth_failed');
    assert.deepEqual(error.userMessage, stored);
  });
});

describe('parseRetryAfter', () => {
  test('reads seconds and HTTP dates; anything else is null', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    assert.equal(parseRetryAfter('120', now), 120);
    assert.equal(parseRetryAfter(' 3 ', now), 3);
    assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now), 30);
    assert.equal(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now), 0, 'a date in the past means now');
    assert.equal(parseRetryAfter(null, now), null);
    assert.equal(parseRetryAfter('', now), null);
    assert.equal(parseRetryAfter('soon', now), null);
  });
});
