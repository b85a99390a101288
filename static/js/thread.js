/** The conversation on screen: message elements in order, stored replies adopted, the notes, scrolling. */

import { t } from './i18n.js';
import { messageElement, updateMessageElement } from './render.js';
import { failedTurn } from './retry.js';

export class Thread {
  #scroller;
  #list;
  #empty;
  #edge;

  /** `scroller`: the scrolling box; `list`: the messages' parent; `empty`/`edge`: the two notes. */
  constructor({ scroller, list, empty, edge }) {
    this.#scroller = scroller;
    this.#list = list;
    this.#empty = empty;
    this.#edge = edge;
  }

  /** Show exactly these messages (a freshly loaded page). */
  replace(messages) {
    this.#list.replaceChildren(...messages.map(messageElement));
    this.updateEmpty();
  }

  /** Add newer messages at the end; returns those added, not the ones adopted by local replies. */
  append(messages) {
    const shown = messages.filter(message => !this.#adoptStoredReply(message));
    this.#list.append(...shown.map(messageElement));
    this.updateEmpty();
    return shown;
  }

  /** Add older messages at the start, keeping what the user looks at where it is. */
  prepend(messages) {
    const box = this.#scroller;
    const fromBottom = box.scrollHeight - box.scrollTop;
    const shown = messages.filter(message => !this.#adoptStoredReply(message));
    this.#list.prepend(...shown.map(messageElement));
    this.updateEmpty();
    box.scrollTop = box.scrollHeight - fromBottom;
    return shown;
  }

  /** Add elements built elsewhere (a turn being streamed). */
  add(...elements) {
    this.#list.append(...elements);
    this.updateEmpty();
  }

  clear() {
    this.#list.replaceChildren();
    this.updateEmpty();
  }

  /** A stored reply to a turn this page streamed (e.g. stopped, found by polling): fill in the local element. */
  #adoptStoredReply(message) {
    if (message.role !== 'assistant' || !message.reply_to) return false;
    const local = [...this.#list.querySelectorAll('article.assistant:not([data-id])')]
      .find(node => node.dataset.replyTo === String(message.reply_to));
    if (!local) return false;
    updateMessageElement(local, message);
    return true;
  }

  /** The element of stored message `id`, or null. */
  element(id) {
    return this.#list.querySelector(`article[data-id="${CSS.escape(String(id))}"]`);
  }

  /** Listen to an event that bubbles up from the messages (e.g. a Retry button's). */
  listen(name, listener) {
    this.#list.addEventListener(name, listener);
  }

  /** The newest turn if it failed unanswered, with its elements: `{ id, text, user, reply }`, else null. */
  failedTurn() {
    const articles = [...this.#list.children];
    const found = failedTurn(articles.map(article => article.message));
    if (!found) return null;
    const user = articles.find(article => article.message?.role === 'user' && article.message.id === found.id);
    const reply = articles.findLast(article => article.message?.reply_to === found.id);
    return { ...found, user, reply };
  }

  /** Show or hide the "empty conversation" hint. */
  updateEmpty() {
    this.#empty.hidden = this.#list.children.length > 0;
  }

  /** The note at the top: loading older messages, start of conversation, or nothing. */
  updateEdge({ loadingOlder, hasMore }) {
    const edge = this.#edge;
    if (loadingOlder) edge.textContent = t('loadingOlder');
    else if (!hasMore && this.#list.children.length) edge.textContent = t('historyStart');
    else edge.textContent = '';
    edge.hidden = !edge.textContent;
  }

  /** Say in the top note that the conversation could not be loaded. */
  showEdgeError(text) {
    this.#edge.textContent = text;
    this.#edge.hidden = false;
  }

  /** Whether the list is scrolled (nearly) to the bottom, so new text should keep it there. */
  nearBottom() {
    const box = this.#scroller;
    return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  }

  /** Whether the user is close enough to the top that older messages should load. */
  nearTop() {
    return this.#scroller.scrollTop < 120;
  }

  /** Whether the messages do not fill the box (no scrollbar to scroll up with). */
  underfilled() {
    const box = this.#scroller;
    return box.scrollHeight <= box.clientHeight + 10;
  }

  scrollToBottom() {
    this.#scroller.scrollTop = this.#scroller.scrollHeight;
  }
}
