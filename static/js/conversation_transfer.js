/** The sidebar's footer: Export all (a plain download link) and Import (a file picker, then an upload). */

import { EXPORT_ALL_URL, importConversations } from './api.js';
import { apiErrorText, t } from './i18n.js';

export class ConversationTransfer {
  #el;
  #onImported;

  /** `el`: `exportLink`, `importButton`, `file` (a hidden file input), `status`; `onImported(conversations)`: take in those created. */
  constructor(el, { onImported = () => {} } = {}) {
    this.#el = el;
    this.#onImported = onImported;
    el.exportLink.href = EXPORT_ALL_URL;
    el.importButton.addEventListener('click', () => el.file.click());
    el.file.addEventListener('change', () => {
      const [file] = el.file.files;
      el.file.value = '';  // choosing the same file again still fires `change`
      if (file) this.upload(file);
    });
  }

  /** Send `file`; say how many conversations were imported and skipped, or the server's sentence. */
  async upload(file) {
    const el = this.#el;
    el.importButton.disabled = true;
    this.#say(t('importing'));
    try {
      const { imported, skipped, conversations } = await importConversations(file);
      this.#say(t('importDone', { imported, skipped }));
      await this.#onImported(conversations ?? []);
    } catch (error) {
      this.#say(apiErrorText(error), true);
    } finally {
      el.importButton.disabled = false;
    }
  }

  #say(text, failed = false) {
    this.#el.status.textContent = text;
    this.#el.status.hidden = !text;
    this.#el.status.classList.toggle('failed', failed);
  }
}
