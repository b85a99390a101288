/** A pure text/event-stream parser (the WHATWG rules): bytes in, `{ event, data, id }` objects out. No I/O. */

/**
 * Feed it chunks as they arrive with push(); each call returns the events its chunk completed. An
 * event is complete at its blank line, so one split across chunks (even inside a multi-byte
 * character) comes out whole, and a last event the stream never terminated is dropped, as the spec
 * says. `lastEventId` outlives the stream, so a reconnect can send it as Last-Event-ID.
 */
export class SseParser {
  #decoder = new TextDecoder('utf-8');  // stream mode keeps a character's first bytes for the next chunk
  #partialLine = '';
  #skipLineFeed = false;  // the last chunk ended in \r: a \n opening the next one ends the same line
  #dataLines = [];
  #eventType = '';
  lastEventId = '';
  retry = null;  // the reconnection delay (ms) the server asked for, if any

  /** Parse a chunk (Uint8Array, ArrayBuffer or already decoded string); returns the events it completed. */
  push(chunk) {
    const text = typeof chunk === 'string' ? chunk : this.#decoder.decode(chunk, { stream: true });
    return this.#parseText(text);
  }

  /** The stream ended: returns what is still complete and drops an unterminated event. */
  end() {
    const events = this.#parseText(this.#decoder.decode());
    this.#partialLine = '';
    this.#skipLineFeed = false;
    this.#dataLines = [];
    this.#eventType = '';
    return events;
  }

  #parseText(text) {
    const events = [];
    let start = 0;
    if (this.#skipLineFeed && text.length) {
      this.#skipLineFeed = false;
      if (text[0] === '\n') start = 1;
    }
    const lineEnd = /[\r\n]/g;
    lineEnd.lastIndex = start;
    for (let match; (match = lineEnd.exec(text));) {
      const line = this.#partialLine + text.slice(start, match.index);
      this.#partialLine = '';
      start = match.index + 1;
      if (match[0] === '\r') {
        if (start === text.length) this.#skipLineFeed = true;
        else if (text[start] === '\n') start += 1;
        lineEnd.lastIndex = start;
      }
      this.#parseLine(line, events);
    }
    this.#partialLine += text.slice(start);
    return events;
  }

  #parseLine(line, events) {
    if (line === '') {
      this.#dispatch(events);
      return;
    }
    if (line.startsWith(':')) return;  // a comment, e.g. a keep-alive
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.#dataLines.push(value);
    else if (field === 'event') this.#eventType = value;
    else if (field === 'id' && !value.includes('\0')) this.lastEventId = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retry = Number(value);
    // Any other field is ignored, as the spec says.
  }

  #dispatch(events) {
    const dataLines = this.#dataLines;
    const event = this.#eventType || 'message';
    this.#dataLines = [];
    this.#eventType = '';
    if (dataLines.length === 0) return;  // an event without data (e.g. only an id) is not dispatched
    events.push({ event, data: dataLines.join('\n'), id: this.lastEventId });
  }
}

/**
 * The events of a byte stream as they complete: a fetch body (ReadableStream) or any (async)
 * iterable of chunks. Cancels the stream if the consumer stops early.
 */
export async function* readEvents(stream, parser = new SseParser()) {
  if (typeof stream.getReader !== 'function') {
    for await (const chunk of stream) yield* parser.push(chunk);
    yield* parser.end();
    return;
  }
  const reader = stream.getReader();
  let finished = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      yield* parser.push(value);
    }
    finished = true;
    yield* parser.end();
  } finally {
    if (!finished) reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
