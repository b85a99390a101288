/** The message box: grows with its text, IME-safe Enter, and the Send/Stop buttons. */

export class Composer {
  #input;
  #send;
  #stop;
  #configured = true;

  /** `onSubmit()` when the user sends (Enter or the button), `onStop()` on the Stop button. */
  constructor({ form, input, send, stop }, { onSubmit, onStop }) {
    this.#input = input;
    this.#send = send;
    this.#stop = stop;
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
  }

  /** Give the words of an unsent or failed turn back, unless the user has typed something new. */
  restore(text) {
    if (this.#input.value.trim() !== '') return;
    this.#input.value = text;
    this.#autoGrow();
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
    this.#send.disabled = !this.#configured || !this.#input.value.trim();
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
