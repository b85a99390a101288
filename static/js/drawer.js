/**
 * A panel in a modal <dialog> opened from a header button (the reminders and push channels panels): the
 * button, the close button and the backdrop, focus on the way in and back to the button on the way out, and
 * the status line at the top.
 */

export class Drawer {
  #el;
  #onOpen;

  /**
   * `el`: `dialog`, `openButton`, `closeButton`, `newButton` (focused on opening) and `status`;
   * `onOpen()`: load what the panel shows; `onClose()`: after the dialog closed, however it was closed.
   */
  constructor(el, { onOpen, onClose = () => {} }) {
    this.#el = el;
    this.#onOpen = onOpen;
    el.openButton.addEventListener('click', () => this.open());
    el.closeButton.addEventListener('click', () => this.close());
    el.dialog.addEventListener('click', event => { if (event.target === el.dialog) this.close(); });  // the backdrop
    el.dialog.addEventListener('close', () => { onClose(); el.openButton.focus(); });
  }

  /** Show the panel (focus on its first control) and load it. */
  open() {
    this.status('');
    if (!this.#el.dialog.open) this.#el.dialog.showModal();
    this.#el.newButton.focus();
    return this.#onOpen();
  }

  close() {
    this.#el.dialog.close();
  }

  /** The status line: `text` (none hides it), marked failed or not. */
  status(text, { failed = false } = {}) {
    this.#el.status.textContent = text;
    this.#el.status.hidden = !text;
    this.#el.status.classList.toggle('failed', failed);
  }

  /** Clear the status line if it tells of a failure (a load that works again). */
  clearFailure() {
    if (this.#el.status.classList.contains('failed')) this.status('');
  }
}
