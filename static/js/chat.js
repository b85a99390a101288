/** The turns on screen: send one, draw its reply as it streams, Stop, and the error box with Retry. */

import { messageElement, renderStreamingReply, turnErrorElement, updateMessageElement } from './render.js';
import { Turn } from './turn.js';

export class Chat {
  #turn = null;  // the turn in flight; one at a time
  #thread;
  #history;
  #composer;
  #onTurnEnd;

  constructor({ thread, history, composer, onTurnEnd = () => {} }) {
    this.#thread = thread;
    this.#history = history;
    this.#composer = composer;
    this.#onTurnEnd = onTurnEnd;
  }

  get busy() {
    return this.#turn !== null;
  }

  /** Stop button, Escape, or the login form taking over: the server keeps the partial reply marked stopped. */
  stop() {
    this.#turn?.stop();
  }

  /**
   * Send `text` as a new turn and stream the reply into the thread. Retrying a turn whose message
   * the server already stored passes `retryOf` (its id) and that message's element, so it is
   * neither stored nor shown twice.
   */
  async send(text, { retryOf = null, userEl = null } = {}) {
    if (this.#turn || !text.trim()) return;
    const turn = new Turn(text, { retryOf });
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
      this.#turn = null;
      this.#composer.setStreaming(false);
      this.#onTurnEnd();
    }
  }

  /** Connect the turn's events to its two elements. */
  #follow(turn, user, reply) {
    const thread = this.#thread;
    let frame = 0;
    const draw = () => {  // at most once per animation frame, however fast the pieces come
      frame = 0;
      const stick = thread.nearBottom();
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
      this.#show(user, userMessage);
      reply.dataset.replyTo = userMessage.id;
      this.#composer.clearIfStill(turn.text);  // the words are safe on the server now
    });
    turn.on('reasoning', drawSoon);
    turn.on('delta', drawSoon);
    turn.on('done', message => {
      settle();
      if (message) this.#show(reply, message);
    });
    turn.on('stopped', ({ started }) => {
      settle();
      if (!started) {  // stopped before the server took the message: as if never sent
        user.remove();
        reply.remove();
        thread.updateEmpty();
        this.#composer.restore(turn.text);
        return;
      }
      this.#show(reply, { ...reply.message, role: 'assistant', content: turn.content, reasoning: turn.reasoning,
        stopped: true, timestamp: new Date().toISOString() });
    });
    turn.on('error', error => {
      settle();
      this.#showFailure(turn, user, reply, error);
    });
  }

  /** The partial reply (if any), the error and a Retry button; the typed words come back. */
  #showFailure(turn, user, reply, error) {
    if (error.userMessage) this.#show(user, error.userMessage);  // refused after the server stored the words
    if (turn.content || turn.reasoning) {
      this.#show(reply, { ...reply.message, content: turn.content, reasoning: turn.reasoning,
        incomplete: true, error: error.message, timestamp: new Date().toISOString() });
    } else {
      reply.querySelector('.bubble').replaceChildren();
      reply.classList.add('failed');
    }
    if (error.code === 'unauthorized') return;  // the login form takes over
    this.#composer.restore(turn.text);
    const box = turnErrorElement(error, shown => this.#retry(turn, user, reply, shown));
    reply.querySelector('.bubble').after(box);
    this.#thread.scrollToBottom();
  }

  /** Send a failed turn's words again: as a retry of the stored message, or anew if none was stored. */
  #retry(turn, user, reply, box) {
    if (this.#turn) return;
    box.remove();
    if (reply.classList.contains('failed')) reply.remove();
    if (turn.userMessage) {
      this.send(turn.text, { retryOf: turn.userMessage.id, userEl: user });
    } else {
      user.remove();
      this.send(turn.text);
    }
  }

  /** Draw a stored message into its element and note its id, so polling does not add it again. */
  #show(article, message) {
    updateMessageElement(article, message);
    if (message.id) this.#history.remember(message.id);
  }
}
