/** One streamed turn as a state machine, free of the DOM: sending → streaming → done | error | stopped. */

import { ApiError, openChatStream, resumeChatStream, stopChatStream } from './api.js';
import { readEvents } from './sse.js';

export const TurnState = Object.freeze({
  READY: 'ready',          // built, not sent yet
  SENDING: 'sending',      // request sent, the server has not confirmed storing the message
  STREAMING: 'streaming',  // the server stored the message (or text is arriving)
  DONE: 'done',
  ERROR: 'error',
  STOPPED: 'stopped',
  LEFT: 'left',            // this page stopped following; the server goes on writing the reply
});

const ACTIVE = new Set([TurnState.SENDING, TurnState.STREAMING]);

/** Waits before reconnecting, in ms, by attempt: quick at first (a blip), then capped (a long outage). */
export const RECONNECT_DELAYS_MS = Object.freeze([300, 1000, 2000, 4000, 5000]);

/** How long to wait before reconnection attempt `attempt` (0 = the first after a drop). */
export function reconnectDelay(attempt) {
  return RECONNECT_DELAYS_MS[Math.min(attempt, RECONNECT_DELAYS_MS.length - 1)];
}

/** A fresh idempotency key (32 hex digits): the server stores a message once however often it is sent with it. */
export function newIdempotencyKey() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), byte => byte.toString(16).padStart(2, '0')).join('');
}

/**
 * Whether the connection itself was lost, not answered: the network failed, or the body ended without a terminal
 * event. Before `start` that is all the page can tell: the message may or may not have reached the server.
 */
function connectionLost(error) {
  if (error instanceof ApiError) return error.code === 'network' || error.code === 'stream_ended';
  return error instanceof TypeError;  // fetch's "network error" mid-body
}

/**
 * Whether a failed connection is worth opening again: the network (fetch rejected, a body that broke
 * off, or our own abort of a dead connection), or a server briefly unable to answer (5xx, 429). A 4xx
 * (404: the reply is gone, 401: logged out) or unreadable data would only fail again.
 */
function worthRetrying(error) {
  if (error instanceof ApiError) return error.code === 'network' || error.status >= 500 || error.status === 429;
  return error instanceof TypeError || error?.name === 'AbortError';  // fetch's "network error" mid-body is a TypeError
}

/**
 * A user message and the reply streamed for it, or (follow()) a reply already being written that this
 * page joins: after a reload, another tab's turn, a reminder being worded. Listeners (on(name, fn)) hear:
 * `start` (userMessage), `reasoning` / `delta` (the piece; the totals are in .reasoning / .content),
 * `reminder` (a reminder action the model's tool call ran; all of them are in .reminderActions),
 * `reconnecting` (true while the connection is lost and being opened again, then false),
 * `done` (the stored reply), `error` (an ApiError, possibly after partial text; `.storedMessage` when the
 * server stored the reply, e.g. `interrupted`), `stopped` ({ started, message }: the reply as the server
 * stored it, or null if it could not say).
 * Once done, failed, stopped or left, everything else is ignored, so late events cannot revive a turn.
 *
 * The reply belongs to the server: a dropped connection is opened again from the last SSE `id:`
 * (kept in lastEventId) with a growing pause, until a terminal event or a 404; events already seen are
 * skipped, so nothing is shown twice. Only Stop (the server's stop route) ends the reply early. A connection
 * lost before `start` sends the message again with the same idempotency key: the server stores it once and
 * answers with the turn it already began, if it did.
 */
export class Turn {
  state = TurnState.READY;
  content = '';
  reasoning = '';
  userMessage = null;  // the user's message as stored by the server, once it says so
  messageId = null;    // the id of the reply being written, from the `start` event (or given to follow)
  message = null;      // the stored reply, once done or stopped
  reminderActions = [];  // reminder tool calls run during this turn: { action, reminder, previous? }
  error = null;
  lastEventId = '';
  reconnecting = false;
  idempotencyKey;
  #listeners = new Map();
  #connection = null;  // the current request's controller: aborting it drops that connection only
  #wakers = new Set();  // pauses to cut short (the network is back)
  #startSeen = false;
  #stopWanted = false;
  #resume;
  #requestStop;
  #delay;

  /**
   * `retryOf`: the id of an already stored user message this turn answers again; `conversationId`: where
   * (none: main); `messageId`: the reply to follow(); `idempotencyKey`: the key the message was first sent with
   * (Retry), else a new one. The rest replace the server calls and the pauses in tests.
   */
  constructor(text, {
    retryOf = null, conversationId = null, messageId = null, idempotencyKey = null,
    resume = resumeChatStream, requestStop = stopChatStream, delay = reconnectDelay,
  } = {}) {
    this.text = text;
    this.retryOf = retryOf;
    this.idempotencyKey = idempotencyKey ?? newIdempotencyKey();
    this.conversationId = conversationId;
    this.messageId = messageId;
    this.#resume = resume;
    this.#requestStop = requestStop;
    this.#delay = delay;
  }

  /** On event `name` call `listener(detail, turn)`; returns the function that removes it. */
  on(name, listener) {
    if (!this.#listeners.has(name)) this.#listeners.set(name, new Set());
    this.#listeners.get(name).add(listener);
    return () => this.#listeners.get(name).delete(listener);
  }

  get active() {
    return ACTIVE.has(this.state);
  }

  /** Whether the server took the turn (stored the user's message, or is writing the reply). */
  get started() {
    return this.userMessage !== null || this.messageId !== null;
  }

  /**
   * Send the message and apply the streamed events until the reply ends, reconnecting as needed; resolves
   * with the final state (it rejects only when run twice). `open` returns the response's byte stream.
   */
  async run(open = openChatStream) {
    this.#begin(TurnState.SENDING);
    return this.#drive(signal => open({
      message: this.text, retryOf: this.retryOf, conversationId: this.conversationId,
      idempotencyKey: this.idempotencyKey, signal,
    }));
  }

  /** Join the reply `messageId` already being written: its events from the first (the text so far at once), then live. */
  async follow() {
    if (this.messageId === null) throw new Error('follow() needs the messageId of the reply');
    this.#begin(TurnState.STREAMING);
    return this.#drive(signal => this.#reopen(signal));
  }

  /** The connection is probably dead (the browser went offline): drop it now and reconnect. */
  dropConnection() {
    if (this.active) this.#connection?.abort();
  }

  /** The network is back (online, the tab visible again): end any pause before reconnecting now. */
  retryNow() {
    for (const wake of this.#wakers) wake();
  }

  /** Stop following without stopping the reply (another conversation is shown): no event, no request. */
  leave() {
    if (!this.active) return false;
    this.state = TurnState.LEFT;
    this.#finish();
    return true;
  }

  /** Apply one server event (`{ type: 'start' | 'reasoning' | 'delta' | 'reminder' | 'done' | 'stopped' | 'error', ... }`); false if ignored. */
  apply(event) {
    if (!this.active) return false;
    switch (event?.type) {
      case 'start':
        if (this.#startSeen) return false;
        this.#startSeen = true;
        this.state = TurnState.STREAMING;
        this.messageId = event.message_id ?? this.messageId;
        this.userMessage = event.user_message ?? this.userMessage;
        if (!this.text && this.userMessage) this.text = this.userMessage.content ?? '';
        this.#emit('start', this.userMessage);
        if (this.#stopWanted) this.#stopOnServer();  // Stop was pressed before the reply had an id
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
        this.#finish();
        this.#emit('done', this.message);
        return true;
      case 'stopped':  // Stop pressed here or in another tab: the server says what it kept
        return this.#stopped(event.message ?? null);
      case 'error': {
        const error = new ApiError(event.error ?? '', {
          code: event.code || 'default', status: 200, userMessage: event.user_message ?? null,
        });
        error.storedMessage = event.message ?? null;
        return this.fail(error);
      }
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
    this.#finish();
    this.#emit('error', error);
    return true;
  }

  /**
   * Stop (the Stop button, Escape): the server's stop route ends the reply and answers it as stored; the
   * turn ends with that. Pressed before the reply has an id, the stop is sent once `start` brings one.
   * True if the turn was running.
   */
  stop() {
    if (!this.active) return false;
    if (!this.#stopWanted) {
      this.#stopWanted = true;
      if (this.messageId !== null) this.#stopOnServer();
      else if (this.reconnecting) this.retryNow();  // sending again after a lost connection: give up now
    }
    return true;
  }

  #begin(state) {
    if (this.state !== TurnState.READY) throw new Error(`a turn runs once (this one is ${this.state})`);
    this.state = state;
  }

  /** Read connection after connection (the first from `openFirst`, then resumed ones) until the reply ends. */
  async #drive(openFirst) {
    let open = openFirst;
    for (let attempt = 0; this.active;) {
      const connection = new AbortController();
      this.#connection = connection;
      const after = Number(this.lastEventId) || 0;
      let problem = new ApiError('', { code: 'stream_ended' });  // why this connection ended, if not by a terminal event
      try {
        const body = await open(connection.signal);
        for await (const { data, id } of readEvents(body)) {
          if (id && Number(id) <= after) continue;  // a replay of what this turn already has
          if (id) this.lastEventId = id;
          if (data) this.apply(JSON.parse(data));
          attempt = 0;  // it answered: the next drop starts with a short pause again
          this.#setReconnecting(false);
          if (!this.active) break;
        }
      } catch (error) {
        problem = error;
      }
      if (!this.active) break;
      const ours = connection.signal.aborted;  // dropConnection(): the network went away
      if (problem?.name === 'AbortError' && !ours) {
        this.leave();  // aborted by the browser (the page is unloading): the server goes on anyway
        break;
      }
      const lost = ours || connectionLost(problem);
      // Before start only a lost connection is sent again (an answer, even a 5xx, came from a server that
      // decided); once the reply has an id, a server briefly unable to answer is asked again too.
      const again = this.messageId !== null ? lost || worthRetrying(problem) : lost && !this.#startSeen;
      if (!again) {
        this.#failWith(problem);  // a refusal that would only come again
        break;
      }
      if (this.#stoppedUnsent()) break;
      this.#setReconnecting(true);
      await this.#pause(this.#delay(attempt));
      if (this.#stoppedUnsent()) break;
      attempt += 1;
      if (this.messageId !== null) open = signal => this.#reopen(signal);
    }
    return this.state;
  }

  /**
   * Stop pressed while the message is being sent again after a lost connection: the server may never have had
   * it, so the turn ends here and nothing more is sent (if it did arrive, polling shows it and its reply).
   */
  #stoppedUnsent() {
    return this.#stopWanted && this.messageId === null && this.#stopped(null);
  }

  /** The stream of this reply's events after lastEventId. */
  #reopen(signal) {
    return this.#resume({
      messageId: this.messageId, conversationId: this.conversationId, after: Number(this.lastEventId) || 0, signal,
    });
  }

  /** Ask the server to stop the reply, again after a pause while it cannot be reached; end with what it stored. */
  async #stopOnServer() {
    for (let attempt = 0; this.active; attempt += 1) {
      try {
        const answer = await this.#requestStop(this.messageId, { conversationId: this.conversationId });
        this.#stopped(answer?.message ?? null);
        return;
      } catch (error) {
        if (!this.active) return;
        if (!worthRetrying(error)) {  // e.g. 404: gone meanwhile; keep the text this page has
          this.#stopped(null);
          return;
        }
      }
      await this.#pause(this.#delay(attempt));
    }
  }

  /** End the turn as stopped with the reply as stored (null: the server could not say). */
  #stopped(message) {
    if (!this.active) return false;
    this.state = TurnState.STOPPED;
    this.message = message;
    this.#finish();
    this.#emit('stopped', { started: this.started, message });
    return true;
  }

  /** A connection ended for good without a terminal event: stopped if Stop was pressed, else failed. */
  #failWith(problem) {
    if (this.#stopWanted) {
      if (problem?.userMessage) this.userMessage = problem.userMessage;
      this.#stopped(null);
    } else if (problem instanceof ApiError) this.fail(problem);
    else this.fail(new ApiError(problem?.message ?? String(problem), { cause: problem }));  // e.g. unreadable JSON
  }

  #setReconnecting(on) {
    if (this.reconnecting === on) return;
    this.reconnecting = on;
    this.#emit('reconnecting', on);
  }

  /** Wait `ms`, less if retryNow() or the end of the turn comes first. */
  #pause(ms) {
    return new Promise(resolve => {
      const wake = () => {
        clearTimeout(timer);
        this.#wakers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#wakers.add(wake);
    });
  }

  /** The turn ended: close its connection and any pause, and no longer say it is reconnecting. */
  #finish() {
    this.#connection?.abort();
    this.retryNow();
    if (this.reconnecting) {
      this.reconnecting = false;
      this.#emit('reconnecting', false);
    }
  }

  #emit(name, detail) {
    for (const listener of this.#listeners.get(name) ?? []) listener(detail, this);
  }
}
