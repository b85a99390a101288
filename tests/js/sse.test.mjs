// The server-sent-events parser: chunk boundaries anywhere, multi-byte text, the field rules.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { readEvents, SseParser } from '../../static/js/sse.js';

const encoder = new TextEncoder();
const bytes = text => encoder.encode(text);

/** Every event the parser yields for these chunks, then the end of the stream. */
function parse(chunks, parser = new SseParser()) {
  const events = [];
  for (const chunk of chunks) events.push(...parser.push(chunk));
  events.push(...parser.end());
  return events;
}

/** `data` split into pieces at the given byte offsets. */
function splitAt(data, offsets) {
  const pieces = [];
  let start = 0;
  for (const offset of offsets) {
    pieces.push(data.slice(start, offset));
    start = offset;
  }
  pieces.push(data.slice(start));
  return pieces;
}

// A stream with everything at once: a comment, CRLF and LF lines, ids, a named event, two data
// lines, Chinese and emoji (3- and 4-byte UTF-8), blank lines between events.
const MIXED = ': keep-alive\r\n'
  + 'id: 1\r\n'
  + 'data: {"type":"delta","content":"你好"}\r\n'
  + '\r\n'
  + '\n'
  + 'event: note\n'
  + 'id: 2\n'
  + 'data: 第一行 😀\n'
  + 'data: 第二行\n'
  + '\n'
  + ':comment without space\n'
  + 'data: 🎉 end\n'
  + '\n';
const MIXED_EVENTS = [
  { event: 'message', data: '{"type":"delta","content":"你好"}', id: '1' },
  { event: 'note', data: '第一行 😀\n第二行', id: '2' },
  { event: 'message', data: '🎉 end', id: '2' },
];

describe('SseParser', () => {
  test('parses a whole stream in one chunk', () => {
    assert.deepEqual(parse([bytes(MIXED)]), MIXED_EVENTS);
  });

  test('gives the same events however the bytes are split in two', () => {
    const data = bytes(MIXED);
    for (let offset = 0; offset <= data.length; offset += 1) {
      assert.deepEqual(parse(splitAt(data, [offset])), MIXED_EVENTS, `split at byte ${offset}`);
    }
  });

  test('gives the same events however the bytes are split in three', () => {
    const data = bytes(MIXED);
    for (let first = 0; first <= data.length; first += 1) {
      for (let second = first; second <= data.length; second += 1) {
        assert.deepEqual(parse(splitAt(data, [first, second])), MIXED_EVENTS, `split at ${first} and ${second}`);
      }
    }
  });

  test('gives the same events fed one byte at a time', () => {
    const data = bytes(MIXED);
    const chunks = Array.from(data, byte => Uint8Array.of(byte));
    assert.deepEqual(parse(chunks), MIXED_EVENTS);
  });

  test('keeps Chinese and emoji whole when a chunk ends inside their bytes', () => {
    for (const text of ['你', '好', '😀', '👩‍💻', '中文和🎉混合']) {
      const data = bytes(`data: ${text}\n\n`);
      for (let offset = 0; offset <= data.length; offset += 1) {
        const [event] = parse(splitAt(data, [offset]));
        assert.equal(event.data, text, `${text} split at byte ${offset}`);
        assert.ok(!event.data.includes('\uFFFD'), 'no replacement character');
      }
    }
  });

  test('ignores comment lines and extra blank lines', () => {
    assert.deepEqual(parse([bytes(': ping\n\n:\n\n\n\n')]), []);
    assert.deepEqual(parse([bytes('\n\n: a\ndata: x\n: b\n\n\n')]), [{ event: 'message', data: 'x', id: '' }]);
  });

  test('accepts CRLF, LF and bare CR line endings', () => {
    const expected = [{ event: 'message', data: 'a\nb', id: '' }];
    assert.deepEqual(parse([bytes('data: a\r\ndata: b\r\n\r\n')]), expected);
    assert.deepEqual(parse([bytes('data: a\ndata: b\n\n')]), expected);
    assert.deepEqual(parse([bytes('data: a\rdata: b\r\r')]), expected);
  });

  test('a CRLF split between chunks is one line end, not an empty line', () => {
    // Were the \n read as a line of its own, "a" would be dispatched alone, early.
    const events = parse([bytes('data: a\r'), bytes('\ndata: b\r'), bytes('\n\r'), bytes('\n')]);
    assert.deepEqual(events, [{ event: 'message', data: 'a\nb', id: '' }]);
  });

  test('joins several data lines with \\n and strips exactly one space after the colon', () => {
    const events = parse([bytes('data:  two spaces\ndata:none\ndata\ndata: \n\n')]);
    assert.deepEqual(events, [{ event: 'message', data: ' two spaces\nnone\n\n', id: '' }]);
  });

  test('event names one event; id carries over to later events until changed', () => {
    const events = parse([bytes('event: start\nid: 7\ndata: a\n\ndata: b\n\nid: 8\nevent: done\ndata: c\n\n')]);
    assert.deepEqual(events, [
      { event: 'start', data: 'a', id: '7' },
      { event: 'message', data: 'b', id: '7' },
      { event: 'done', data: 'c', id: '8' },
    ]);
  });

  test('an event without data is not dispatched, but its id is kept', () => {
    const parser = new SseParser();
    assert.deepEqual(parser.push(bytes('id: 42\nevent: ping\n\n')), []);
    assert.equal(parser.lastEventId, '42');
    assert.deepEqual(parser.push(bytes('data: next\n\n')), [{ event: 'message', data: 'next', id: '42' }]);
  });

  test('an empty id resets it; an id with NUL is ignored', () => {
    const parser = new SseParser();
    parser.push(bytes('id: 5\ndata: a\n\n'));
    assert.deepEqual(parser.push(bytes('id: 6\0x\ndata: b\n\n')), [{ event: 'message', data: 'b', id: '5' }]);
    assert.deepEqual(parser.push(bytes('id\ndata: c\n\n')), [{ event: 'message', data: 'c', id: '' }]);
  });

  test('retry sets the reconnection delay when it is digits only; unknown fields are ignored', () => {
    const parser = new SseParser();
    assert.deepEqual(parser.push(bytes('retry: 1500\nfoo: bar\ndata: x\n\n')), [{ event: 'message', data: 'x', id: '' }]);
    assert.equal(parser.retry, 1500);
    parser.push(bytes('retry: soon\n\n'));
    assert.equal(parser.retry, 1500);
  });

  test('a last event without its blank line is not emitted until terminated', () => {
    const parser = new SseParser();
    assert.deepEqual(parser.push(bytes('data: {"type":"done"}')), []);
    assert.deepEqual(parser.push(bytes('\n')), [], 'a line end alone does not finish the event');
    assert.deepEqual(parser.push(bytes('\n')), [{ event: 'message', data: '{"type":"done"}', id: '' }]);
  });

  test('the end of the stream drops an unterminated event', () => {
    assert.deepEqual(parse([bytes('data: one\n\ndata: cut')]), [{ event: 'message', data: 'one', id: '' }]);
    assert.deepEqual(parse([bytes('data: one\n\ndata: cut\n')]), [{ event: 'message', data: 'one', id: '' }]);
  });

  test('after end() the parser starts clean but remembers the last id (for Last-Event-ID)', () => {
    const parser = new SseParser();
    parser.push(bytes('id: 9\ndata: a\n\nevent: half\ndata: cut'));
    parser.end();
    assert.equal(parser.lastEventId, '9');
    assert.deepEqual(parser.push(bytes('data: b\n\n')), [{ event: 'message', data: 'b', id: '9' }]);
  });

  test('a leading byte order mark is skipped', () => {
    assert.deepEqual(parse([Uint8Array.of(0xef, 0xbb), Uint8Array.of(0xbf), bytes('data: x\n\n')]),
      [{ event: 'message', data: 'x', id: '' }]);
  });

  test('a field name is case-sensitive', () => {
    assert.deepEqual(parse([bytes('Data: x\nDATA: y\n\n')]), []);
  });
});

describe('readEvents', () => {
  const chunks = () => splitAt(bytes('data: 你好\n\nid: 3\ndata: 😀\n\ndata: cut'), [8, 9, 20, 22]);

  test('reads a ReadableStream (a fetch body) event by event', async () => {
    const pieces = chunks();
    const stream = new ReadableStream({
      pull(controller) {
        if (pieces.length) controller.enqueue(pieces.shift());
        else controller.close();
      },
    });
    const events = [];
    for await (const event of readEvents(stream)) events.push(event);
    assert.deepEqual(events, [{ event: 'message', data: '你好', id: '' }, { event: 'message', data: '😀', id: '3' }]);
  });

  test('reads any async iterable of chunks', async () => {
    async function* source() {
      yield* chunks();
    }
    const events = [];
    for await (const event of readEvents(source())) events.push(event);
    assert.deepEqual(events.map(e => e.data), ['你好', '😀']);
  });

  test('cancels the stream when the reader stops early', async () => {
    let cancelled = false;
    const stream = new ReadableStream({
      start(controller) { controller.enqueue(bytes('data: a\n\ndata: b\n\n')); },
      cancel() { cancelled = true; },
    });
    for await (const event of readEvents(stream)) {
      assert.equal(event.data, 'a');
      break;
    }
    assert.ok(cancelled);
  });
});
