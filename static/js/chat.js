/** The turns on screen: send one, draw its reply as it streams, follow replies being written, Stop, and Retry. */

import { RETRY_EVENT, messageElement, renderReconnecting, renderStreamingReply, updateMessageElement } from './render.js';
import { renderReminderExtras } from './reminder_views.js';
import { isFailedReply, repeatsFailedTurn } from './retry.js';
import { Turn } from './turn.js';

export class Chat {
  #turn = null;  // the turn in flight that the composer's Stop ends; one at a time
  #followed = new Map();  // reply id → the turn following it: never two for one reply
  #failed = null;  // the failed turn Retry answers again: { text, questionId (null if never stored), user, reply }
  #thread;
  #history;
  #composer;
  #ownQuestions = new Set();  // ids of the turn in flight's question, as polling found it (by its key)
  #onTurnEnd;
  #onReminder;
  #onFollowedEnd;
  #conversationId;

  /**
   * `onReminder()`: a reply changed the reminders (a tool call created, changed or cancelled one);
   * `onFollowedEnd(message)`: a reply this page joined (another tab's, a reminder's) is stored complete;
   * `conversationId()`: the conversation a new turn goes to (null: main).
   */
  constructor({
    thread, history, composer, onTurnEnd = () => {}, onReminder = () => {}, onFollowedEnd = () => {},
    conversationId = () => null,
  }) {
    this.#thread = thread;
    this.#conversationId = conversationId;
    this.#onReminder = onReminder;
    this.#onFollowedEnd = onFollowedEnd;
    this.#history = history;
    this.#composer = composer;
    this.#onTurnEnd = onTurnEnd;
    thread.listen(RETRY_EVENT, event => {
      if (event.target.closest('article') === this.#failed?.reply) this.#retryFailed();
    });
  }

  get busy() {
    return this.#turn !== null;
  }

  /**
   * Another conversation is shown now, with its own `history`. Replies being written go on on the server (it
   * stores them there) but this page stops following them: no request, nothing drawn into this thread.
   */
  switchTo(history) {
    this.#offerRetry(null);
    this.#history = history;
    for (const turn of [this.#turn, ...this.#followed.values()]) turn?.leave();
    this.#followed.clear();
    if (this.#turn) {
      this.#turn = null;
      this.#composer.setStreaming(false);
    }
  }

  /** Stop button, Escape, or the login form taking over: the server stops the reply and keeps it marked stopped. */
  stop() {
    this.#turn?.stop();
  }

  /**
   * Follow the replies among `messages` (just drawn in the thread) that the server is still writing
   * (`streaming: true`): after a load, another tab's turn, a reminder being worded. Each is drawn as it
   * streams, from its first event on; one that answers a question (not a reminder) takes Stop.
   */
  followStreaming(messages) {
    for (const message of messages) {
      if (!message?.streaming || message.role !== 'assistant' || this.#followed.has(message.id)) continue;
      const reply = this.#thread.element(message.id);
      if (!reply) continue;
      const user = message.reply_to ? this.#thread.element(message.reply_to) : null;
      const turn = new Turn(user?.message?.content ?? '', { messageId: message.id, conversationId: this.#conversationId() });
      const owns = !this.#turn && Boolean(message.reply_to) && !message.is_scheduled;  // the user's turn here: Stop is for it
      this.#track(turn, user, reply, { owns, joined: true }, () => turn.follow());
    }
  }

  /** The network is back (online, tab visible): every reply waiting to reconnect tries now. */
  retryNow() {
    for (const turn of this.#turns()) turn.retryNow();
  }

  /** The browser went offline: drop the connections now (they are dead) and reconnect when it can. */
  dropConnections() {
    for (const turn of this.#turns()) turn.dropConnection();
  }

  /**
   * What the user sends (Enter or Send): the failed turn again when the words are the same (the
   * failure put them back in the box), so the question is not stored twice; else a new turn.
   */
  submit(text) {
    if (this.#turn || !text.trim()) return;
    if (repeatsFailedTurn(text, this.#failed)) this.#retryFailed();
    else {
      this.#offerRetry(null);  // a new question: the old one would be answered out of place
      this.send(text);
    }
  }

  /**
   * Offer Retry on a failed turn found in the loaded history (`{ id, text, user, reply }` from the
   * thread), or on none.
   */
  offerRetryOf(found) {
    if (this.#turn) return;
    this.#offerRetry(found && { text: found.text, questionId: found.id, user: found.user, reply: found.reply });
  }

  /**
   * Messages polling brought, less the turn in flight's own question and reply: a poll sent just before Send can
   * bring them before `start` does, and the turn draws them itself. Its idempotency key tells its question.
   */
  withoutOwnTurn(messages) {
    const key = this.#turn?.idempotencyKey;
    if (!key) return messages;
    for (const message of messages) {
      if (message.role === 'user' && message.idempotency_key === key) this.#ownQuestions.add(message.id);
    }
    return messages.filter(message => !this.#ownQuestions.has(message.id) && !this.#ownQuestions.has(message.reply_to));
  }

  /** Messages polling added (other tabs, reminders): a new question, or an answer to the failed one, ends the offer. */
  noteNewMessages(messages) {
    const failed = this.#failed;
    const moved = message => message.role === 'user'
      || (failed.questionId !== null && message.reply_to === failed.questionId && !isFailedReply(message));
    if (failed && messages.some(moved)) this.#offerRetry(null);
  }

  /**
   * Send `text` as a new turn and stream the reply into the thread. Retrying a turn whose message
   * the server already stored passes `retryOf` (its id) and that message's element, so it is
   * neither stored nor shown twice; and the key it was first sent with, if known.
   */
  async send(text, { retryOf = null, userEl = null, idempotencyKey = null } = {}) {
    if (this.#turn || !text.trim()) return;
    const turn = new Turn(text, { retryOf, idempotencyKey, conversationId: this.#conversationId() });
    const user = userEl ?? messageElement({ role: 'user', content: text });
    const reply = messageElement({ role: 'assistant', content: '' });
    if (userEl) this.#thread.add(reply);
    else this.#thread.add(user, reply);
    this.#thread.scrollToBottom();
    await this.#track(turn, user, reply, { owns: true, joined: false }, () => turn.run());
  }

  /** Run `turn` (`begin()` starts it) drawn into its elements; `owns`: it takes the composer's Stop until it ends. */
  async #track(turn, user, reply, { owns, joined }, begin) {
    if (owns) {
      this.#turn = turn;
      this.#ownQuestions.clear();
      if (turn.retryOf !== null) this.#ownQuestions.add(turn.retryOf);  // a retry's question is old: no poll brings it
      this.#composer.setStreaming(true);
    }
    if (turn.messageId !== null) this.#followed.set(turn.messageId, turn);
    reply.classList.add('pending');
    this.#wire(turn, user, reply, joined);
    try {
      await begin();
    } finally {
      if (this.#followed.get(turn.messageId) === turn) this.#followed.delete(turn.messageId);
      if (this.#turn === turn) {
        this.#turn = null;
        this.#composer.setStreaming(false);
      }
      this.#onTurnEnd();
    }
  }

  #turns() {
    return new Set([this.#turn, ...this.#followed.values()].filter(Boolean));
  }

  /** Connect the turn's events to its two elements (`user` may be null: a reminder, or a question not loaded). */
  #wire(turn, user, reply, joined) {
    const thread = this.#thread;
    const history = this.#history;  // this conversation's; a turn left behind by a switch hears nothing more
    let frame = 0;
    const draw = () => {  // at most once per animation frame, however fast the pieces come
      frame = 0;
      const stick = reply.isConnected && thread.nearBottom();  // not once another conversation is shown
      renderStreamingReply(reply, turn);
      if (stick) thread.scrollToBottom();
    };
    const drawSoon = () => { frame ||= requestAnimationFrame(draw); };
    const settle = () => {
      cancelAnimationFrame(frame);
      reply.classList.remove('pending', 'streaming');
    };

    turn.on('start', userMessage => {
      if (turn.messageId !== null && !this.#followed.has(turn.messageId)) this.#followed.set(turn.messageId, turn);
      history.remember(turn.messageId);  // polling must not draw the reply a second time
      if (!userMessage || joined) return;
      this.#show(user, userMessage, history);
      reply.dataset.replyTo = userMessage.id;
      this.#composer.clearIfStill(turn.text);  // the words are safe on the server now
    });
    turn.on('reconnecting', on => renderReconnecting(reply, on));
    turn.on('reasoning', drawSoon);
    turn.on('delta', drawSoon);
    turn.on('reminder', () => {  // the card shows at once, before the model's final words
      reply.message = { ...reply.message, reminder_actions: [...turn.reminderActions] };
      renderReminderExtras(reply, reply.message);
      this.#onReminder();
    });
    turn.on('done', message => {
      settle();
      if (!message) return;
      // The stored message carries the actions; a server that did not store them still shows the streamed cards.
      const actions = message.reminder_actions ?? (turn.reminderActions.length ? turn.reminderActions : undefined);
      this.#show(reply, actions ? { ...message, reminder_actions: actions } : message, history);
      if (joined) this.#onFollowedEnd(message);
    });
    turn.on('stopped', ({ started, message }) => {
      settle();
      if (!started) {  // stopped before the server took the message: as if never sent
        user.remove();
        reply.remove();
        thread.updateEmpty();
        this.#composer.restore(turn.text);
        return;
      }
      // The server's record of it (what it received before the stop); this page's text only if it could not say.
      this.#show(reply, message ?? { ...reply.message, role: 'assistant', content: turn.content, reasoning: turn.reasoning,
        stopped: true, streaming: false, timestamp: new Date().toISOString() }, history);
    });
    turn.on('error', error => {
      settle();
      this.#showFailure(turn, user, reply, error, { history, joined });
    });
  }

  /**
   * The partial reply (if any) with the error and Retry under it; the typed words come back. A reply the
   * server stored as failed (e.g. `interrupted`: the process writing it died) is drawn as stored.
   */
  #showFailure(turn, user, reply, error, { history, joined }) {
    if (error.userMessage && user) this.#show(user, error.userMessage, history);  // refused after the server stored the words
    const stored = error.storedMessage ?? null;
    const questionId = turn.userMessage?.id ?? stored?.reply_to ?? reply.message?.reply_to ?? null;
    if (questionId !== null) reply.dataset.replyTo = questionId;  // polling then adopts the server's record of it
    this.#show(reply, stored ?? { ...reply.message, role: 'assistant', content: turn.content, reasoning: turn.reasoning,
      incomplete: true, error: error.message, error_code: error.code, reply_to: questionId, streaming: false,
      timestamp: new Date().toISOString() }, history);
    this.#thread.scrollToBottom();
    if (error.code === 'unauthorized' || !turn.text) return;  // the login form takes over; a reminder has no question
    if (!joined) this.#composer.restore(turn.text);  // another tab's words stay out of this tab's box
    if (error.code === 'message_too_long') return;  // the same words would only be refused again
    this.#offerRetry({ text: turn.text, questionId, user, reply, key: turn.idempotencyKey });
  }

  /** Show Retry on this failed turn only (or on none). */
  #offerRetry(failed) {
    this.#failed?.reply.classList.remove('retryable');
    this.#failed = failed?.reply ? failed : null;
    this.#failed?.reply.classList.add('retryable');
  }

  /**
   * Send the failed turn's words again: as a retry of the stored question, or anew if it was never stored; with
   * the key they were first sent with, so a retry that loses its connection too is still answered once.
   */
  #retryFailed() {
    const { text, questionId, user, reply } = this.#failed;
    const idempotencyKey = user?.message?.idempotency_key ?? this.#failed.key ?? null;  // the stored one first
    this.#offerRetry(null);
    if (reply.classList.contains('failed')) reply.remove();  // no text to keep: the new reply takes its place
    if (questionId !== null) {  // no element if the question is on an unloaded page
      this.send(text, { retryOf: questionId, userEl: user ?? null, idempotencyKey });
    } else {
      user?.remove();
      this.send(text, { idempotencyKey });
    }
  }

  /** Draw a stored message into its element and note its id in `history`, so polling does not add it again. */
  #show(article, message, history = this.#history) {
    updateMessageElement(article, message);
    if (message.id) history.remember(message.id);
  }
}
