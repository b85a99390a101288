/** One streamed turn as a state machine, free of the DOM: sending → streaming → done | error | stopped. */

import { ApiError, openChatStream } from './api.js';
import { readEvents } from './sse.js';

export const TurnState = Object.freeze({
  READY: 'ready',          // built, not sent yet
  SENDING: 'sending',      // request sent, the server has not confirmed storing the message
  STREAMING: 'streaming',  // the server stored the message (or text is arriving)
  DONE: 'done',
  ERROR: 'error',
  STOPPED: 'stopped',
});

const ACTIVE = new Set([TurnState.SENDING, TurnState.STREAMING]);

/**
 * A user message and the reply streamed for it. Listeners (on(name, fn)) hear:
 * `start` (userMessage), `reasoning` / `delta` (the piece; the totals are in .reasoning / .content),
 * `reminder` (a reminder action the model's tool call ran; all of them are in .reminderActions),
 * `done` (the stored reply), `error` (an ApiError, possibly after partial text), `stopped` ({ started }).
 * Once done, failed or stopped, everything else is ignored, so late events cannot revive a turn.
 * The last SSE `id:` is kept in lastEventId: resuming means reopening the stream with it and
 * feeding the same turn.
 */
export class Turn {
  state = TurnState.READY;
  content = '';
  reasoning = '';
  userMessage = null;  // the user's message as stored by the server, once it says so
  message = null;      // the stored reply, once done
  reminderActions = [];  // reminder tool calls run during this turn: { action, reminder, previous? }
  error = null;
  lastEventId = '';
  #listeners = new Map();
  #controller = new AbortController();

  /** `retryOf`: the id of an already stored user message this turn answers again; `conversationId`: where (none: main). */
  constructor(text, { retryOf = null, conversationId = null } = {}) {
    this.text = text;
    this.retryOf = retryOf;
    this.conversationId = conversationId;
  }

  /** Call `listener(detail)` on event `name`; returns the function that removes it. */
  on(name, listener) {
    if (!this.#listeners.has(name)) this.#listeners.set(name, new Set());
    this.#listeners.get(name).add(listener);
    return () => this.#listeners.get(name).delete(listener);
  }

  get active() {
    return ACTIVE.has(this.state);
  }

  /** Whether the server stored the user's message (a turn stopped before that is as if never sent). */
  get started() {
    return this.userMessage !== null;
  }

  /**
   * Send the message and apply the streamed events until the stream ends; resolves with the final
   * state (it rejects only when run twice). `open` returns the response's byte stream (tests pass their own).
   */
  async run(open = openChatStream) {
    if (this.state !== TurnState.READY) throw new Error(`a turn runs once (this one is ${this.state})`);
    this.state = TurnState.SENDING;
    try {
      const body = await open({
        message: this.text, retryOf: this.retryOf, conversationId: this.conversationId, signal: this.#controller.signal,
      });
      for await (const { data, id } of readEvents(body)) {
        if (id) this.lastEventId = id;
        if (data) this.apply(JSON.parse(data));
      }
      if (this.active) this.fail(new ApiError('', { code: 'stream_ended' }));
    } catch (error) {
      if (error?.name === 'AbortError') this.stop();
      else if (error instanceof ApiError) this.fail(error);
      else this.fail(new ApiError(error?.message ?? String(error), { cause: error }));  // e.g. unreadable JSON
    }
    return this.state;
  }

  /** Apply one server event (`{ type: 'start' | 'reasoning' | 'delta' | 'reminder' | 'done' | 'error', ... }`); false if ignored. */
  apply(event) {
    if (!this.active) return false;
    switch (event?.type) {
      case 'start':
        if (this.state !== TurnState.SENDING) return false;
        this.state = TurnState.STREAMING;
        this.userMessage = event.user_message ?? null;
        this.#emit('start', this.userMessage);
        return true;
      case 'reasoning':
      case 'delta': {
        const piece = String(event.content ?? '');
        this.state = TurnState.STREAMING;
        if (event.type === 'delta') this.content += piece;
        else this.reasoning += piece;
        this.#emit(event.type, piece);
        return true;
      }
      case 'reminder': {
        const { action, reminder, previous } = event;
        const entry = previous === undefined ? { action, reminder } : { action, reminder, previous };
        this.reminderActions.push(entry);
        this.#emit('reminder', entry);
        return true;
      }
      case 'done':
        this.state = TurnState.DONE;
        this.message = event.message ?? null;
        this.#emit('done', this.message);
        return true;
      case 'error':
        return this.fail(new ApiError(event.error ?? '', {
          code: event.code || 'default', status: 200, userMessage: event.user_message ?? null,
        }));
      default:
        return false;  // an event type this page does not know yet
    }
  }

  /** End the turn as failed (keeping any partial text); false if it had already ended. */
  fail(error) {
    if (!this.active) return false;
    if (error?.userMessage) this.userMessage = error.userMessage;  // stored before the refusal
    this.state = TurnState.ERROR;
    this.error = error;
    this.#emit('error', error);
    return true;
  }

  /** Stop: abort the request; the partial reply stays (the server stores it marked stopped). */
  stop() {
    if (!this.active) return false;
    this.state = TurnState.STOPPED;
    this.#controller.abort();
    this.#emit('stopped', { started: this.started });
    return true;
  }

  #emit(name, detail) {
    for (const listener of this.#listeners.get(name) ?? []) listener(detail, this);
  }
}
