/** The turns on screen: send one, draw its reply as it streams, Stop, and Retry (button or Enter) of a failed one. */

import { RETRY_EVENT, messageElement, renderStreamingReply, updateMessageElement } from './render.js';
import { renderReminderExtras } from './reminder_views.js';
import { isFailedReply, repeatsFailedTurn } from './retry.js';
import { Turn } from './turn.js';

export class Chat {
  #turn = null;  // the turn in flight; one at a time
  #failed = null;  // the failed turn Retry answers again: { text, questionId (null if never stored), user, reply }
  #thread;
  #history;
  #composer;
  #onTurnEnd;
  #onReminder;
  #conversationId;

  /**
   * `onReminder()`: a reply changed the reminders (a tool call created, changed or cancelled one);
   * `conversationId()`: the conversation a new turn goes to (null: main).
   */
  constructor({ thread, history, composer, onTurnEnd = () => {}, onReminder = () => {}, conversationId = () => null }) {
    this.#thread = thread;
    this.#conversationId = conversationId;
    this.#onReminder = onReminder;
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
   * Another conversation is shown now, with its own `history`. A turn in flight goes on in the background (the
   * server stores its reply there) but no longer touches this thread, the composer or the new history.
   */
  switchTo(history) {
    this.#offerRetry(null);
    this.#history = history;
    if (this.#turn) {
      this.#turn = null;
      this.#composer.setStreaming(false);
    }
  }

  /** Stop button, Escape, or the login form taking over: the server keeps the partial reply marked stopped. */
  stop() {
    this.#turn?.stop();
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
   * neither stored nor shown twice.
   */
  async send(text, { retryOf = null, userEl = null } = {}) {
    if (this.#turn || !text.trim()) return;
    const turn = new Turn(text, { retryOf, conversationId: this.#conversationId() });
    this.#turn = turn;
    const user = userEl ?? messageElement({ role: 'user', content: text });
    const reply = messageElement({ role: 'assistant', content: '' });
    reply.classList.add('pending');
    if (userEl) this.#thread.add(reply);
    else this.#thread.add(user, reply);
    this.#thread.scrollToBottom();
    this.#composer.setStreaming(true);
    this.#follow(turn, user, reply);
    try {
      await turn.run();
    } finally {
      if (this.#turn === turn) {
        this.#turn = null;
        this.#composer.setStreaming(false);
      }
      this.#onTurnEnd();
    }
  }

  /** Connect the turn's events to its two elements. */
  #follow(turn, user, reply) {
    const thread = this.#thread;
    const history = this.#history;  // this conversation's, also once another one is shown
    const shown = () => this.#turn === turn;  // false once the user switched to another conversation
    let frame = 0;
    const draw = () => {  // at most once per animation frame, however fast the pieces come
      frame = 0;
      const stick = shown() && thread.nearBottom();
      renderStreamingReply(reply, turn);
      if (stick) thread.scrollToBottom();
    };
    const drawSoon = () => { frame ||= requestAnimationFrame(draw); };
    const settle = () => {
      cancelAnimationFrame(frame);
      reply.classList.remove('pending', 'streaming');
    };

    turn.on('start', userMessage => {
      if (!userMessage) return;
      this.#show(user, userMessage, history);
      reply.dataset.replyTo = userMessage.id;
      this.#composer.clearIfStill(turn.text);  // the words are safe on the server now
    });
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
    });
    turn.on('stopped', ({ started }) => {
      settle();
      if (!shown()) return;
      if (!started) {  // stopped before the server took the message: as if never sent
        user.remove();
        reply.remove();
        thread.updateEmpty();
        this.#composer.restore(turn.text);
        return;
      }
      this.#show(reply, { ...reply.message, role: 'assistant', content: turn.content, reasoning: turn.reasoning,
        stopped: true, timestamp: new Date().toISOString() }, history);
    });
    turn.on('error', error => {
      settle();
      if (shown()) this.#showFailure(turn, user, reply, error);
    });
  }

  /** The partial reply (if any) with the error and Retry under it; the typed words come back. */
  #showFailure(turn, user, reply, error) {
    if (error.userMessage) this.#show(user, error.userMessage);  // refused after the server stored the words
    const questionId = turn.userMessage?.id ?? null;
    if (questionId !== null) reply.dataset.replyTo = questionId;  // polling then adopts the server's record of it
    this.#show(reply, { ...reply.message, role: 'assistant', content: turn.content, reasoning: turn.reasoning,
      incomplete: true, error: error.message, error_code: error.code, reply_to: questionId,
      timestamp: new Date().toISOString() });
    this.#thread.scrollToBottom();
    if (error.code === 'unauthorized') return;  // the login form takes over
    this.#composer.restore(turn.text);
    if (error.code === 'message_too_long') return;  // the same words would only be refused again
    this.#offerRetry({ text: turn.text, questionId, user, reply });
  }

  /** Show Retry on this failed turn only (or on none). */
  #offerRetry(failed) {
    this.#failed?.reply.classList.remove('retryable');
    this.#failed = failed?.reply ? failed : null;
    this.#failed?.reply.classList.add('retryable');
  }

  /** Send the failed turn's words again: as a retry of the stored question, or anew if it was never stored. */
  #retryFailed() {
    const { text, questionId, user, reply } = this.#failed;
    this.#offerRetry(null);
    if (reply.classList.contains('failed')) reply.remove();  // no text to keep: the new reply takes its place
    if (questionId !== null) {
      this.send(text, { retryOf: questionId, userEl: user ?? null });  // no element if the question is on an unloaded page
    } else {
      user?.remove();
      this.send(text);
    }
  }

  /** Draw a stored message into its element and note its id in `history`, so polling does not add it again. */
  #show(article, message, history = this.#history) {
    updateMessageElement(article, message);
    if (message.id) history.remember(message.id);
  }
}
