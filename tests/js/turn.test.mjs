// The streamed turn's state machine, fed by fake streams instead of fetch.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ApiError } from '../../static/js/api.js';
import { Turn, TurnState } from '../../static/js/turn.js';

const encoder = new TextEncoder();
const USER = { id: 11, role: 'user', content: 'hi' };
const REPLY = { id: 12, role: 'assistant', content: 'Hello world', reply_to: 11 };
const sse = event => `data: ${JSON.stringify(event)}\n\n`;

/** An opener whose stream sends `texts` (one chunk each), recording what it was asked to open. */
function streamOf(...texts) {
  const calls = [];
  const open = async request => {
    calls.push(request);
    return (async function* () {
      for (const text of texts) yield encoder.encode(text);
    })();
  };
  return Object.assign(open, { calls });
}

/** An opener whose stream sends `texts`, then hangs until the request is aborted, as fetch does. */
function hangingStreamOf(...texts) {
  return async ({ signal }) => (async function* () {
    for (const text of texts) yield encoder.encode(text);
    await new Promise((_, reject) => {
      const abort = () => reject(new DOMException('The user aborted a request.', 'AbortError'));
      if (signal.aborted) abort();
      else signal.addEventListener('abort', abort);
    });
  })();
}

/** Every event the turn emits, in order, as [name, detail]. */
function record(turn) {
  const seen = [];
  for (const name of ['start', 'reasoning', 'delta', 'done', 'error', 'stopped']) {
    turn.on(name, detail => seen.push([name, detail]));
  }
  return seen;
}

describe('Turn', () => {
  test('start, reasoning and deltas, then done', async () => {
    const turn = new Turn('hi');
    const seen = record(turn);
    const states = [];
    turn.on('delta', () => states.push(turn.state));
    assert.equal(turn.state, TurnState.READY);
    const open = streamOf(
      sse({ type: 'start', user_message: USER }),
      sse({ type: 'reasoning', content: 'think' }),
      sse({ type: 'delta', content: 'Hello' }) + sse({ type: 'delta', content: ' world' }),
      sse({ type: 'done', message: REPLY }),
    );
    assert.equal(await turn.run(open), TurnState.DONE);
    assert.deepEqual(open.calls.map(({ message, retryOf }) => ({ message, retryOf })), [{ message: 'hi', retryOf: null }]);
    assert.deepEqual(seen, [
      ['start', USER], ['reasoning', 'think'], ['delta', 'Hello'], ['delta', ' world'], ['done', REPLY],
    ]);
    assert.deepEqual(states, [TurnState.STREAMING, TurnState.STREAMING]);
    assert.equal(turn.content, 'Hello world');
    assert.equal(turn.reasoning, 'think');
    assert.deepEqual(turn.userMessage, USER);
    assert.deepEqual(turn.message, REPLY);
    assert.ok(turn.started && !turn.active);
  });

  test('is sending until the server confirms the message with start', () => {
    const turn = new Turn('hi');
    turn.state = TurnState.SENDING;  // as run() leaves it while the request is out
    assert.equal(turn.started, false);
    assert.ok(turn.apply({ type: 'start', user_message: USER }));
    assert.equal(turn.state, TurnState.STREAMING);
    assert.equal(turn.apply({ type: 'start', user_message: { id: 99 } }), false, 'a second start is ignored');
    assert.equal(turn.userMessage.id, 11);
  });

  test('an error after partial text keeps the text and carries the code', async () => {
    const turn = new Turn('hi');
    const seen = record(turn);
    const open = streamOf(
      sse({ type: 'start', user_message: USER }),
      sse({ type: 'delta', content: '半句' }),
      sse({ type: 'error', error: 'The model service timed out.', code: 'upstream_timeout' }),
    );
    assert.equal(await turn.run(open), TurnState.ERROR);
    assert.equal(turn.content, '半句');
    assert.ok(turn.error instanceof ApiError);
    assert.equal(turn.error.code, 'upstream_timeout');
    assert.equal(turn.error.message, 'The model service timed out.');
    assert.deepEqual(seen.map(([name]) => name), ['start', 'delta', 'error']);
    assert.deepEqual(turn.userMessage, USER, 'Retry can still answer the stored message');
  });

  test('a stream that ends without done or error is an error stream_ended', async () => {
    const turn = new Turn('hi');
    const open = streamOf(sse({ type: 'start', user_message: USER }), sse({ type: 'delta', content: 'cut' }));
    assert.equal(await turn.run(open), TurnState.ERROR);
    assert.equal(turn.error.code, 'stream_ended');
    assert.equal(turn.content, 'cut');
  });

  test('an unterminated last event does not count: the turn ends as stream_ended', async () => {
    const turn = new Turn('hi');
    const open = streamOf(sse({ type: 'start', user_message: USER }), `data: ${JSON.stringify({ type: 'done', message: REPLY })}\n`);
    assert.equal(await turn.run(open), TurnState.ERROR);
    assert.equal(turn.error.code, 'stream_ended');
  });

  test('a refused request fails the turn and keeps the stored user message for Retry', async () => {
    const turn = new Turn('hi', { retryOf: 5 });
    const refusal = new ApiError('Invalid token', { code: 'upstream_auth_failed', status: 502, userMessage: USER });
    const calls = [];
    const state = await turn.run(async request => {
      calls.push(request);
      throw refusal;
    });
    assert.equal(state, TurnState.ERROR);
    assert.equal(calls[0].retryOf, 5);
    assert.equal(turn.error, refusal);
    assert.deepEqual(turn.userMessage, USER);
    assert.ok(turn.started);
  });

  test('unreadable event data fails the turn with an ApiError', async () => {
    const turn = new Turn('hi');
    assert.equal(await turn.run(streamOf('data: {not json\n\n')), TurnState.ERROR);
    assert.ok(turn.error instanceof ApiError);
    assert.equal(turn.error.code, 'default');
  });

  test('stop mid-stream asks the server to stop the reply and ends with the reply it stored', async () => {
    const stored = { ...REPLY, content: '第0段', stopped: true };
    const stops = [];
    const turn = new Turn('hi', {
      conversationId: 'c1',
      requestStop: async (id, options) => { stops.push([id, options]); return { success: true, message: stored }; },
    });
    const seen = record(turn);
    let signal;
    const open = async request => {
      signal = request.signal;
      return hangingStreamOf(sse({ type: 'start', message_id: 12, user_message: USER }), sse({ type: 'delta', content: '第0段' }))(request);
    };
    turn.on('delta', () => setTimeout(() => turn.stop(), 0));
    assert.equal(await turn.run(open), TurnState.STOPPED);
    assert.deepEqual(stops, [[12, { conversationId: 'c1' }]], 'the stop route, with the reply id from start');
    assert.ok(signal.aborted, 'the stream is closed once the turn ended');
    assert.deepEqual(turn.message, stored);
    assert.deepEqual(seen.at(-1), ['stopped', { started: true, message: stored }]);
    assert.equal(seen.filter(([name]) => name === 'stopped').length, 1);
    assert.equal(seen.filter(([name]) => name === 'error').length, 0, 'a stop is not an error');
  });

  test('an abort from elsewhere (e.g. the page unloading) leaves the reply to the server: not stopped, not failed', async () => {
    const stops = [];
    const turn = new Turn('hi', { requestStop: async id => { stops.push(id); return {}; } });
    const seen = record(turn);
    const open = async () => (async function* () {
      yield encoder.encode(sse({ type: 'start', message_id: 12, user_message: USER }) + sse({ type: 'delta', content: 'a' }));
      throw new DOMException('The operation was aborted.', 'AbortError');
    })();
    assert.equal(await turn.run(open), TurnState.LEFT);
    assert.deepEqual(seen.map(([name]) => name), ['start', 'delta']);
    assert.deepEqual(stops, []);
  });

  test('events after done are ignored, and so are stop and fail', () => {
    const turn = new Turn('hi');
    turn.state = TurnState.SENDING;
    turn.apply({ type: 'start', user_message: USER });
    turn.apply({ type: 'delta', content: 'Hello world' });
    turn.apply({ type: 'done', message: REPLY });
    const seen = record(turn);
    assert.equal(turn.apply({ type: 'delta', content: ' again' }), false);
    assert.equal(turn.apply({ type: 'error', error: 'late', code: 'x' }), false);
    assert.equal(turn.apply({ type: 'done', message: { id: 99 } }), false);
    assert.equal(turn.stop(), false);
    assert.equal(turn.fail(new ApiError('late')), false);
    assert.equal(turn.state, TurnState.DONE);
    assert.equal(turn.content, 'Hello world');
    assert.deepEqual(turn.message, REPLY);
    assert.deepEqual(seen, []);
  });

  test('events after an error or a stop are ignored', () => {
    for (const end of [t => t.fail(new ApiError('x')), t => t.apply({ type: 'stopped', message: { ...REPLY, content: 'a' } })]) {
      const turn = new Turn('hi');
      turn.state = TurnState.SENDING;
      turn.apply({ type: 'delta', content: 'a' });
      end(turn);
      const ended = turn.state;
      assert.equal(turn.apply({ type: 'delta', content: 'b' }), false);
      assert.equal(turn.apply({ type: 'done', message: REPLY }), false);
      assert.equal(turn.state, ended);
      assert.equal(turn.content, 'a');
    }
  });

  test('nothing is applied before the turn runs, and a turn runs once', async () => {
    const turn = new Turn('hi');
    assert.equal(turn.apply({ type: 'delta', content: 'early' }), false);
    assert.equal(turn.content, '');
    await turn.run(streamOf(sse({ type: 'start', user_message: USER }), sse({ type: 'done', message: REPLY })));
    await assert.rejects(turn.run(streamOf()), /runs once/);
  });

  test('unknown event types are ignored', async () => {
    const turn = new Turn('hi');
    const open = streamOf(
      sse({ type: 'start', user_message: USER }),
      sse({ type: 'usage', tokens: 3 }),
      sse({ type: 'delta', content: 'ok' }),
      sse({ type: 'done', message: REPLY }),
    );
    assert.equal(await turn.run(open), TurnState.DONE);
    assert.equal(turn.content, 'ok');
  });

  test('keeps the last SSE id, so the turn could resume from it', async () => {
    const turn = new Turn('hi');
    const open = streamOf(
      `id: 1\n${sse({ type: 'start', user_message: USER })}`,
      `id: 2\n${sse({ type: 'delta', content: 'a' })}`,
      `id: 3\n${sse({ type: 'done', message: REPLY })}`,
    );
    await turn.run(open);
    assert.equal(turn.lastEventId, '3');
  });

  test('on() returns a function that removes the listener', () => {
    const turn = new Turn('hi');
    turn.state = TurnState.SENDING;
    const pieces = [];
    const off = turn.on('delta', piece => pieces.push(piece));
    turn.apply({ type: 'delta', content: 'a' });
    off();
    turn.apply({ type: 'delta', content: 'b' });
    assert.deepEqual(pieces, ['a']);
    assert.equal(turn.content, 'ab');
  });
});

describe('reminder events', () => {
  test('a reminder tool call reaches the page before the final words, and stays on the turn', async () => {
    const reminder = { id: '3', text: '喝水', at: '2026-11-26T08:00:00', next_runs: ['2026-11-26T08:00:00+08:00'] };
    const previous = { text: '喝水', at: null, cron: '0 8 * * *' };
    const turn = new Turn('20分钟后提醒我喝水');
    const order = [];
    turn.on('reminder', entry => order.push(['reminder', entry]));
    turn.on('delta', piece => order.push(['delta', piece]));
    await turn.run(streamOf(
      sse({ type: 'start', user_message: USER }),
      sse({ type: 'reminder', action: 'created', reminder }),
      sse({ type: 'reminder', action: 'updated', reminder, previous }),
      sse({ type: 'delta', content: '好的' }),
      sse({ type: 'done', message: { ...REPLY, reminder_actions: [] } }),
    ));
    assert.deepEqual(order, [
      ['reminder', { action: 'created', reminder }],
      ['reminder', { action: 'updated', reminder, previous }],
      ['delta', '好的'],
    ]);
    assert.deepEqual(turn.reminderActions.map(a => a.action), ['created', 'updated']);
    assert.equal(turn.state, TurnState.DONE);
  });

  test('a reminder event after the turn ended is ignored', () => {
    const turn = new Turn('hi');
    turn.stop();
    assert.equal(turn.apply({ type: 'reminder', action: 'created', reminder: { id: '1' } }), false);
    assert.deepEqual(turn.reminderActions, []);
  });
});
