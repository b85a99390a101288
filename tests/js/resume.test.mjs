// A reply that belongs to the server: the page reconnects from the last SSE id, follows a reply already being
// written, and stops it through the server. Fake byte streams and fake server calls instead of fetch.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';

import { ApiError, resumeChatStream, stopChatStream } from '../../static/js/api.js';
import { RECONNECT_DELAYS_MS, Turn, TurnState, reconnectDelay } from '../../static/js/turn.js';

const encoder = new TextEncoder();
const USER = { id: 11, role: 'user', content: 'hi' };
const event = (id, data) => `id: ${id}\ndata: ${JSON.stringify(data)}\n\n`;
const start = (id = 1) => event(id, { type: 'start', message_id: 12, conversation_id: 'main', user_message: USER });
const delta = (id, content) => event(id, { type: 'delta', content });
const done = (id, content) => event(id, { type: 'done', message: { id: 12, role: 'assistant', content, reply_to: 11 } });

/** A byte stream sending `texts`, then (`end`) ending, breaking off like a lost network, or hanging until aborted. */
function stream(texts, { end = 'close', signal } = {}) {
  return (async function* () {
    for (const text of texts) yield encoder.encode(text);
    if (end === 'break') throw new TypeError('network error');
    if (end === 'hang') {
      await new Promise((_, reject) => {
        const abort = () => reject(new DOMException('The operation was aborted.', 'AbortError'));
        if (signal.aborted) abort();
        else signal.addEventListener('abort', abort);
      });
    }
  })();
}

/** A resume route answering each call with the next of `answers` (a stream's texts and end, or an error to throw). */
function resumeRoute(...answers) {
  const calls = [];
  const resume = async request => {
    calls.push(request);
    const answer = answers[calls.length - 1];
    if (answer === undefined) throw new Error('resumed more often than expected');
    if (answer instanceof Error) throw answer;
    return stream(answer.texts, { end: answer.end, signal: request.signal });
  };
  return Object.assign(resume, { calls });
}

/** The pauses a turn asked for (by attempt), without waiting. */
function noPauses() {
  const asked = [];
  const delay = attempt => { asked.push(attempt); return 0; };
  return Object.assign(delay, { asked });
}

/** Every event the turn emits, in order, as [name, detail]. */
function record(turn) {
  const seen = [];
  for (const name of ['start', 'reasoning', 'delta', 'reconnecting', 'done', 'error', 'stopped']) {
    turn.on(name, detail => seen.push([name, detail]));
  }
  return seen;
}

const network = () => new ApiError('', { code: 'network', status: 0 });
const notFound = () => new ApiError('Message not found.', { code: 'message_not_found', status: 404 });

describe('reconnecting', () => {
  test('a body that breaks off is resumed after the last id: no gap and no repeat, even if the server replays', async () => {
    const resume = resumeRoute({ texts: [delta(2, 'a'), delta(3, 'b'), delta(4, 'c'), delta(5, 'd'), done(6, 'abcd')] });
    const delay = noPauses();
    const turn = new Turn('hi', { conversationId: 'c1', resume, delay });
    const seen = record(turn);
    const state = await turn.run(async () => stream([start(), delta(2, 'a'), delta(3, 'b')], { end: 'break' }));
    assert.equal(state, TurnState.DONE);
    assert.equal(turn.content, 'abcd');
    assert.deepEqual(seen.filter(([name]) => name === 'delta').map(([, piece]) => piece), ['a', 'b', 'c', 'd']);
    assert.deepEqual(resume.calls.map(({ messageId, conversationId, after }) => ({ messageId, conversationId, after })),
      [{ messageId: 12, conversationId: 'c1', after: 3 }]);
    assert.deepEqual(seen.filter(([name]) => name === 'reconnecting'), [['reconnecting', true], ['reconnecting', false]]);
    assert.equal(turn.lastEventId, '6');
    assert.equal(seen.filter(([name]) => name === 'error').length, 0);
  });

  test('a stream that ends without a terminal event is resumed too', async () => {
    const resume = resumeRoute({ texts: [delta(3, 'b'), done(4, 'ab')] });
    const turn = new Turn('hi', { resume, delay: noPauses() });
    assert.equal(await turn.run(async () => stream([start(), delta(2, 'a')])), TurnState.DONE);
    assert.equal(resume.calls[0].after, 2);
    assert.equal(turn.content, 'ab');
  });

  test('each failed attempt waits longer, and an answer resets the pauses', async () => {
    const resume = resumeRoute(
      network(), network(),
      { texts: [delta(3, 'b')], end: 'break' },  // progress, then another drop
      network(),
      { texts: [done(4, 'ab')] },
    );
    const delay = noPauses();
    const turn = new Turn('hi', { resume, delay });
    assert.equal(await turn.run(async () => stream([start(), delta(2, 'a')], { end: 'break' })), TurnState.DONE);
    assert.deepEqual(delay.asked, [0, 1, 2, 0, 1]);
    assert.deepEqual(resume.calls.map(call => call.after), [2, 2, 2, 3, 3]);
    assert.equal(turn.content, 'ab');
  });

  test('the pauses: 0.3 s, 1 s, 2 s … capped', () => {
    assert.deepEqual([0, 1, 2].map(reconnectDelay), [300, 1000, 2000]);
    const cap = RECONNECT_DELAYS_MS.at(-1);
    assert.ok(cap <= 5000);
    assert.equal(reconnectDelay(50), cap);
    for (let attempt = 1; attempt < 10; attempt += 1) assert.ok(reconnectDelay(attempt) >= reconnectDelay(attempt - 1));
  });

  test('a 404 (the reply is gone) ends it: failed with message_not_found, no more attempts', async () => {
    const resume = resumeRoute(network(), notFound());
    const turn = new Turn('hi', { resume, delay: noPauses() });
    const seen = record(turn);
    assert.equal(await turn.run(async () => stream([start(), delta(2, 'a')], { end: 'break' })), TurnState.ERROR);
    assert.equal(resume.calls.length, 2);
    assert.equal(turn.error.code, 'message_not_found');
    assert.equal(turn.content, 'a', 'the text so far stays');
    assert.deepEqual(seen.filter(([name]) => name === 'reconnecting').at(-1), ['reconnecting', false]);
  });

  test('a connection lost before start sends the message again with the same key, and that answer drives the turn', async () => {
    const resume = resumeRoute();
    const delay = noPauses();
    const turn = new Turn('hi', { resume, delay });
    const seen = record(turn);
    const sends = [];
    const answers = [
      () => { throw network(); },  // the request never got an answer
      () => stream([], { end: 'break' }),  // an answer whose body broke before any event
      () => stream([]),  // one that ended with no event
      () => stream([start(), delta(2, 'a'), done(3, 'a')]),  // the server answers with the turn it began
    ];
    const state = await turn.run(async request => { sends.push(request); return answers[sends.length - 1](); });
    assert.equal(state, TurnState.DONE);
    assert.equal(sends.length, 4);
    assert.match(turn.idempotencyKey, /^[0-9a-f]{32}$/);
    assert.ok(sends.every(request => request.idempotencyKey === turn.idempotencyKey && request.message === 'hi'));
    assert.deepEqual(delay.asked, [0, 1, 2]);
    assert.equal(resume.calls.length, 0, 'no reply id to resume with: the message itself is sent again');
    assert.equal(turn.content, 'a');
    assert.deepEqual(seen.filter(([name]) => name === 'reconnecting').map(([, on]) => on), [true, false]);
  });

  test('an answer before start, even a 5xx, is not sent again: the server decided', async () => {
    for (const refusal of [
      new ApiError('The model API failed.', { code: 'upstream_error', status: 502, userMessage: USER }),
      new ApiError('Too many requests.', { code: 'rate_limited', status: 429 }),
    ]) {
      let sends = 0;
      const turn = new Turn('hi', { resume: resumeRoute(), delay: noPauses() });
      assert.equal(await turn.run(async () => { sends += 1; throw refusal; }), TurnState.ERROR);
      assert.equal(sends, 1);
      assert.equal(turn.error.code, refusal.code);
    }
  });

  test('each turn gets its own key; Retry passes the first one on', () => {
    const first = new Turn('hi');
    assert.notEqual(first.idempotencyKey, new Turn('hi').idempotencyKey);
    assert.equal(new Turn('hi', { idempotencyKey: first.idempotencyKey }).idempotencyKey, first.idempotencyKey);
  });

  test('retryNow() (online, tab visible) ends the pause at once', async () => {
    const resume = resumeRoute({ texts: [done(3, 'a')] });
    const turn = new Turn('hi', { resume, delay: () => 60_000 });
    turn.on('reconnecting', on => { if (on) setTimeout(() => turn.retryNow(), 10); });
    const began = Date.now();
    assert.equal(await turn.run(async () => stream([start(), delta(2, 'a')], { end: 'break' })), TurnState.DONE);
    assert.ok(Date.now() - began < 5_000, 'did not wait the minute');
  });

  test('dropConnection() (the browser went offline) closes a hanging connection and resumes', async () => {
    const resume = resumeRoute({ texts: [delta(3, 'b'), done(4, 'ab')] });
    const turn = new Turn('hi', { resume, delay: noPauses() });
    let signal;
    turn.on('delta', piece => { if (piece === 'a') setTimeout(() => turn.dropConnection(), 0); });
    const state = await turn.run(async request => {
      signal = request.signal;
      return stream([start(), delta(2, 'a')], { end: 'hang', signal });
    });
    assert.equal(state, TurnState.DONE);
    assert.ok(signal.aborted);
    assert.equal(turn.content, 'ab');
  });

  test('leave() (another conversation shown) closes the connection quietly and asks the server for nothing', async () => {
    const stops = [];
    const turn = new Turn('hi', { requestStop: async id => { stops.push(id); return {}; } });
    const seen = record(turn);
    let signal;
    turn.on('delta', () => setTimeout(() => turn.leave(), 0));
    const state = await turn.run(async request => {
      signal = request.signal;
      return stream([start(), delta(2, 'a')], { end: 'hang', signal });
    });
    assert.equal(state, TurnState.LEFT);
    assert.ok(signal.aborted);
    assert.deepEqual(stops, []);
    assert.deepEqual(seen.map(([name]) => name), ['start', 'delta']);
  });
});

describe('following a reply already being written', () => {
  test('a reminder being worded: from after 0, no user message, the text so far then live, ending stored', async () => {
    const placeholder = { id: 12, role: 'assistant', content: '', streaming: true, is_scheduled: true };
    const stored = { id: 12, role: 'assistant', content: '该喝水了', is_scheduled: true };
    const resume = resumeRoute({
      texts: [event(1, { type: 'start', message_id: 12, conversation_id: 'main', message: placeholder }),
        delta(2, '该') + delta(3, '喝水'), delta(4, '了'), event(5, { type: 'done', message: stored })],
    });
    const turn = new Turn('', { messageId: 12, resume, delay: noPauses() });
    const seen = record(turn);
    assert.equal(await turn.follow(), TurnState.DONE);
    assert.equal(resume.calls[0].after, 0);
    assert.equal(resume.calls[0].messageId, 12);
    assert.deepEqual(seen.map(([name]) => name), ['start', 'delta', 'delta', 'delta', 'done']);
    assert.equal(turn.userMessage, null);
    assert.ok(turn.started, 'the server is writing it: a stop would not make it unsent');
    assert.deepEqual(turn.message, stored);
  });

  test("the question's words come from start, so a failed follow can offer Retry", async () => {
    const resume = resumeRoute({ texts: [start(), delta(2, 'x')], end: 'close' }, notFound());
    const turn = new Turn('', { messageId: 12, resume, delay: noPauses() });
    await turn.follow();
    assert.equal(turn.text, 'hi');
    assert.deepEqual(turn.userMessage, USER);
  });

  test('stopped in another tab: the terminal stopped event ends it with the stored message', async () => {
    const stored = { id: 12, role: 'assistant', content: 'ab', stopped: true, reply_to: 11 };
    const resume = resumeRoute({ texts: [start(), delta(2, 'ab'), event(3, { type: 'stopped', message: stored })] });
    const turn = new Turn('', { messageId: 12, resume, delay: noPauses() });
    const seen = record(turn);
    assert.equal(await turn.follow(), TurnState.STOPPED);
    assert.deepEqual(seen.at(-1), ['stopped', { started: true, message: stored }]);
  });

  test('interrupted (the writing process died): an error carrying the stored message', async () => {
    const stored = { id: 12, role: 'assistant', content: 'ab', incomplete: true, interrupted: true, error_code: 'interrupted', reply_to: 11 };
    const resume = resumeRoute({
      texts: [start(), delta(2, 'ab'), event(3, { type: 'error', error: 'The reply was interrupted.', code: 'interrupted', message: stored })],
    });
    const turn = new Turn('', { messageId: 12, resume, delay: noPauses() });
    assert.equal(await turn.follow(), TurnState.ERROR);
    assert.equal(turn.error.code, 'interrupted');
    assert.deepEqual(turn.error.storedMessage, stored);
  });

  test('follow() needs the reply id', async () => {
    await assert.rejects(new Turn('').follow(), /messageId/);
  });
});

describe('stop', () => {
  test('Stop during the pause before sending again ends the turn at once, not after the pause', { timeout: 2000 }, async () => {
    const turn = new Turn('hi', { delay: () => 60_000 });
    let sends = 0;
    const running = turn.run(async () => { sends += 1; throw network(); });
    while (!turn.reconnecting) await new Promise(resolve => setTimeout(resolve, 5));  // the first send failed
    turn.stop();
    assert.equal(await running, TurnState.STOPPED);
    assert.equal(sends, 1);
  });

  test('Stop while the message is being sent again before start (offline) ends the turn instead of sending on', async () => {
    const turn = new Turn('hi', { requestStop: async () => ({ success: true, message: null }), delay: noPauses() });
    let sends = 0;
    let sendsAfterStop = 0;
    const state = await turn.run(async () => {
      sends += 1;
      if (sends === 2) turn.stop();  // pressed while the page is sending the message again
      else if (sends > 2) sendsAfterStop += 1;
      if (sends > 30) throw new ApiError('gave up', { code: 'test_gave_up', status: 400 });
      throw network();  // still offline
    });
    assert.equal(state, TurnState.STOPPED);
    assert.ok(sendsAfterStop <= 1, `the message was sent ${sendsAfterStop} more times after Stop`);
  });

  test('Stop before start is sent as soon as start names the reply, and the stored reply ends the turn', async () => {
    const stored = { id: 12, role: 'assistant', content: '', stopped: true, reply_to: 11 };
    const stops = [];
    const turn = new Turn('hi', { requestStop: async id => { stops.push(id); return { success: true, message: stored }; } });
    const seen = record(turn);
    let release;
    const open = async ({ signal }) => (async function* () {
      await new Promise(resolve => { release = resolve; });
      yield encoder.encode(start());
      yield* stream([], { end: 'hang', signal });
    })();
    const running = turn.run(open);
    await new Promise(resolve => setTimeout(resolve, 0));
    assert.equal(turn.state, TurnState.SENDING);
    assert.ok(turn.stop());
    assert.deepEqual(stops, [], 'no id to stop yet');
    assert.equal(turn.state, TurnState.SENDING, 'still running: the server is about to start it');
    release();
    assert.equal(await running, TurnState.STOPPED);
    assert.deepEqual(stops, [12]);
    assert.deepEqual(seen.map(([name]) => name), ['start', 'stopped']);
    assert.deepEqual(seen.at(-1)[1], { started: true, message: stored });
  });

  test('Stop before start, then the request is refused: as if never sent', async () => {
    const stops = [];
    const turn = new Turn('hi', { requestStop: async id => { stops.push(id); return {}; } });
    const seen = record(turn);
    let refuse;
    const running = turn.run(() => new Promise((_, reject) => { refuse = reject; }));
    turn.stop();
    refuse(new ApiError('Too many requests', { code: 'rate_limited', status: 429 }));
    assert.equal(await running, TurnState.STOPPED);
    assert.deepEqual(seen, [['stopped', { started: false, message: null }]]);
    assert.deepEqual(stops, []);
  });

  test('the stop route is asked again while the server cannot be reached; a 404 ends with the text the page has', async () => {
    for (const [answers, expected] of [
      [[network(), { message: { id: 12, content: 'a', stopped: true } }], { id: 12, content: 'a', stopped: true }],
      [[network(), notFound()], null],
    ]) {
      const asked = [];
      const requestStop = async id => {
        asked.push(id);
        const answer = answers[asked.length - 1];
        if (answer instanceof Error) throw answer;
        return answer;
      };
      const turn = new Turn('hi', { requestStop, delay: noPauses() });
      turn.on('delta', () => setTimeout(() => turn.stop(), 0));
      const state = await turn.run(async ({ signal }) => stream([start(), delta(2, 'a')], { end: 'hang', signal }));
      assert.equal(state, TurnState.STOPPED);
      assert.deepEqual(asked, [12, 12]);
      assert.deepEqual(turn.message, expected);
      assert.equal(turn.content, 'a');
    }
  });

  test('a terminal stopped event that comes before the stop route answers ends the turn once', async () => {
    const stored = { id: 12, role: 'assistant', content: 'a', stopped: true };
    let answer;
    const turn = new Turn('hi', { requestStop: () => new Promise(resolve => { answer = resolve; }) });
    const seen = record(turn);
    let push;
    const open = async () => (async function* () {
      yield encoder.encode(start() + delta(2, 'a'));
      await new Promise(resolve => { push = resolve; });
      yield encoder.encode(event(3, { type: 'stopped', message: stored }));
    })();
    turn.on('delta', () => setTimeout(() => { turn.stop(); push(); }, 0));
    assert.equal(await turn.run(open), TurnState.STOPPED);
    answer({ message: { ...stored, content: 'late' } });
    await new Promise(resolve => setTimeout(resolve, 0));
    assert.equal(seen.filter(([name]) => name === 'stopped').length, 1);
    assert.deepEqual(turn.message, stored);
  });
});

describe('api', () => {
  const realFetch = globalThis.fetch;
  let calls;
  beforeEach(() => {
    calls = [];
    globalThis.fetch = async (url, init) => {
      calls.push({ url, init });
      if (url.endsWith('/stop')) return new Response(JSON.stringify({ success: true, message: { id: 12 } }), { status: 200 });
      if (url.includes('/999')) {
        return new Response(JSON.stringify({ success: false, error: 'Message not found.', code: 'message_not_found' }), { status: 404 });
      }
      return new Response(event(3, { type: 'done' }), { headers: { 'Content-Type': 'text/event-stream' } });
    };
  });
  afterEach(() => { globalThis.fetch = realFetch; });

  test('resumeChatStream asks for the events after N, as after= and Last-Event-ID', async () => {
    const body = await resumeChatStream({ messageId: 12, conversationId: 'c1', after: 7 });
    assert.equal(typeof body.getReader, 'function');
    assert.equal(calls[0].url, '/api/chat/stream/12?conversation_id=c1&after=7');
    assert.equal(calls[0].init.method, 'GET');
    assert.equal(calls[0].init.headers['Last-Event-ID'], '7');
    await resumeChatStream({ messageId: 12 });
    assert.equal(calls[1].url, '/api/chat/stream/12?after=0');
    const error = await resumeChatStream({ messageId: 999 }).catch(e => e);
    assert.equal(error.status, 404);
    assert.equal(error.code, 'message_not_found');
  });

  test('stopChatStream posts the conversation as JSON and answers the stored message', async () => {
    assert.deepEqual(await stopChatStream(12, { conversationId: 'c1' }), { success: true, message: { id: 12 } });
    await stopChatStream(12);
    assert.equal(calls[0].url, '/api/chat/stream/12/stop');
    assert.equal(calls[0].init.method, 'POST');
    assert.equal(calls[0].init.headers['Content-Type'], 'application/json');
    assert.deepEqual(JSON.parse(calls[0].init.body), { conversation_id: 'c1' });
    assert.deepEqual(JSON.parse(calls[1].init.body), {});
  });
});
