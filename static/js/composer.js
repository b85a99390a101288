/** The message box: grows with its text, IME-safe Enter, the Send/Stop buttons, and the length counter. */

import { t } from './i18n.js';

/** The counter shows from this share of the server's limit on. */
export const COUNTER_FROM = 0.8;

/**
 * Characters as the server counts them (Python's len: code points), so an emoji is one, where
 * String.length would say two.
 */
export function characterCount(text) {
  let count = 0;
  for (const _ of text) count += 1;  // a string iterates by code point
  return count;
}

/** Whether the counter shows (from 80 % of `limit`) and whether `count` is over it; no limit known, nothing. */
export function lengthStatus(count, limit) {
  if (!limit) return { shown: false, over: false };
  return { shown: count >= limit * COUNTER_FROM, over: count > limit };
}

export class Composer {
  #input;
  #send;
  #stop;
  #counter;
  #configured = true;
  #limit = null;  // MAX_MESSAGE_CHARS, from /api/health

  /** `onSubmit()` when the user sends (Enter or the button), `onStop()` on the Stop button. */
  constructor({ form, input, send, stop, counter }, { onSubmit, onStop }) {
    this.#input = input;
    this.#send = send;
    this.#stop = stop;
    this.#counter = counter;
    form.addEventListener('submit', event => {
      event.preventDefault();
      onSubmit();
    });
    input.addEventListener('keydown', event => {
      if (isSendingEnter(event)) {
        event.preventDefault();
        onSubmit();
      }
    });
    input.addEventListener('input', () => {
      this.#autoGrow();
      this.#updateSendState();
    });
    stop.addEventListener('click', onStop);
    this.#updateSendState();
  }

  get text() {
    return this.#input.value;
  }

  focus() {
    this.#input.focus();
  }

  /** The server has the words now: empty the box, unless the user has typed something else meanwhile. */
  clearIfStill(text) {
    if (this.#input.value !== text) return;
    this.#input.value = '';
    this.#autoGrow();
    this.#updateSendState();
  }

  /** Give the words of an unsent or failed turn back, unless the user has typed something new. */
  restore(text) {
    if (this.#input.value.trim() !== '') return;
    this.#input.value = text;
    this.#autoGrow();
    this.#updateSendState();
  }

  /** Whether the text is over the server's limit: it would only be refused, so it is not sent. */
  get tooLong() {
    return lengthStatus(characterCount(this.#input.value), this.#limit).over;
  }

  /** The server's MAX_MESSAGE_CHARS (null: unknown, no counter). */
  setLimit(limit) {
    this.#limit = Number.isInteger(limit) && limit > 0 ? limit : null;
    this.#updateSendState();
  }

  /** Without an API key nothing can be sent. */
  setConfigured(configured) {
    this.#configured = configured;
    this.#updateSendState();
  }

  /** Swap Send for Stop while a reply streams. */
  setStreaming(on) {
    this.#send.hidden = on;
    this.#stop.hidden = !on;
    if (!on) this.#updateSendState();
  }

  #updateSendState() {
    const count = characterCount(this.#input.value);
    const { shown, over } = lengthStatus(count, this.#limit);
    this.#send.disabled = !this.#configured || !this.#input.value.trim() || over;
    this.#counter.hidden = !shown;
    this.#counter.classList.toggle('over', over);
    if (!shown) return;
    const numbers = t('charCount', { count: count.toLocaleString(), limit: this.#limit.toLocaleString() });
    this.#counter.textContent = over ? `${numbers} · ${t('tooLong', { over: (count - this.#limit).toLocaleString() })}` : numbers;
  }

  /** Grow the textarea with its text, up to a limit after which it scrolls. */
  #autoGrow() {
    const input = this.#input;
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, 220)}px`;
  }
}

/** Enter sends; Shift+Enter (or Alt) is a new line; the Enter that ends an IME composition never sends. */
export function isSendingEnter(event) {
  if (event.key !== 'Enter' || event.shiftKey || event.altKey) return false;
  return !(event.isComposing || event.keyCode === 229);
}
