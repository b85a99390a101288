/** The login form, shown instead of the chat while the server wants its ACCESS_TOKEN; and logging out. */

import { logIn, logOut } from './api.js';
import { errorText, t } from './i18n.js';

export class Login {
  #app;
  #panel;
  #token;
  #error;
  #onShow;
  #onLoggedIn;
  #markReady;

  /**
   * `onShow()` when the form takes over (stop what runs), `onLoggedIn()` once the cookie is set
   * (load the chat), `markReady(done)` sets or clears <html data-ready>.
   */
  constructor({ app, panel, form, token, error }, { onShow, onLoggedIn, markReady }) {
    this.#app = app;
    this.#panel = panel;
    this.#token = token;
    this.#error = error;
    this.#onShow = onShow;
    this.#onLoggedIn = onLoggedIn;
    this.#markReady = markReady;
    form.addEventListener('submit', event => {
      event.preventDefault();
      this.#submit();
    });
  }

  get shown() {
    return !this.#panel.hidden;
  }

  show() {
    this.#onShow();
    this.#app.hidden = true;
    this.#panel.hidden = false;
    this.#token.focus();
  }

  async logOut() {
    await logOut();
    this.show();
  }

  /** Send the token; the server answers with an HttpOnly cookie. */
  async #submit() {
    this.#markReady(false);
    const token = this.#token.value.trim();
    this.#error.hidden = true;
    if (!token) {
      this.#fail(t('loginRequired'));
      return;
    }
    try {
      await logIn(token);
    } catch (error) {
      this.#fail(error.status === 401 ? t('loginFailed') : errorText(error.code));
      return;
    }
    this.#token.value = '';
    this.#panel.hidden = true;
    this.#app.hidden = false;
    await this.#onLoggedIn();
  }

  #fail(text) {
    this.#error.textContent = text;
    this.#error.hidden = false;
    this.#markReady(true);
  }
}
