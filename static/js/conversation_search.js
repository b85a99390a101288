/**
 * The search box at the top of the sidebar: asks the server as the user types (debounced), lists the matching
 * messages in place of the conversations (title, time, snippet with the words marked), and opens the one chosen.
 */

import { searchMessages } from './api.js';
import { highlightPieces, relativeTime, searchFor, searchTerms } from './conversations.js';
import { LANG, apiErrorText, t } from './i18n.js';
import { make } from './render.js';
import { debounce } from './schedule.js';

const SEARCH_DELAY_MS = 250;
const RESULT_LIMIT = 50;

/** `snippet` as text nodes with each of `terms` in a <mark>: the server's text is never parsed as HTML. */
export function snippetNodes(snippet, terms) {
  return highlightPieces(snippet, terms).map(piece => (piece.hit ? make('mark', '', piece.text) : document.createTextNode(piece.text)));
}

export class ConversationSearch {
  #el;
  #on;
  #call = 0;  // numbers the requests: only the newest one's answer is shown
  #abort = null;
  #search = debounce(() => this.#run(), SEARCH_DELAY_MS);

  /**
   * `el`: `input`, `results` (a <ul>), `list` (what the results replace while searching);
   * `on`: `titleOf(id)`, `choose({ conversationId, messageId })`.
   */
  constructor(el, on) {
    this.#el = el;
    this.#on = on;
    el.input.addEventListener('input', () => {
      if (el.input.value.trim()) this.#search();
      else this.clear();
    });
    el.input.addEventListener('keydown', event => {
      if (event.key === 'Escape' && el.input.value) {
        event.preventDefault();
        event.stopPropagation();  // clears the box first; a second Escape closes the drawer
        el.input.value = '';
        this.clear();
      } else if (event.key === 'Enter') {
        event.preventDefault();
        this.#run();
      } else if (event.key === 'ArrowDown' && !el.results.hidden) {
        event.preventDefault();
        el.results.querySelector('a')?.focus();
      }
    });
    el.results.addEventListener('keydown', event => {
      const links = [...el.results.querySelectorAll('a')];
      const at = links.indexOf(document.activeElement);
      if (at < 0 || !['ArrowDown', 'ArrowUp'].includes(event.key)) return;
      event.preventDefault();
      if (event.key === 'ArrowUp' && at === 0) el.input.focus();
      else links[Math.min(links.length - 1, Math.max(0, at + (event.key === 'ArrowDown' ? 1 : -1)))].focus();
    });
  }

  /** Back to the list of conversations. */
  clear() {
    this.#search.cancel();
    this.#abort?.abort();
    this.#call++;
    this.#el.results.replaceChildren();
    this.#el.results.hidden = true;
    this.#el.list.hidden = false;
    this.#el.input.removeAttribute('aria-busy');
  }

  async #run() {
    this.#search.cancel();
    const query = this.#el.input.value.trim();
    if (!query) return this.clear();
    this.#abort?.abort();
    const abort = new AbortController();
    this.#abort = abort;
    const call = ++this.#call;
    this.#el.input.setAttribute('aria-busy', 'true');
    let results;
    try {
      ({ results } = await searchMessages(query, { limit: RESULT_LIMIT, signal: abort.signal }));
    } catch (error) {
      if (error?.name === 'AbortError' || call !== this.#call) return;
      this.#show([make('li', 'search-note failed', apiErrorText(error))]);
      return;
    } finally {
      if (call === this.#call) this.#el.input.removeAttribute('aria-busy');
    }
    if (call !== this.#call) return;
    const terms = searchTerms(query);
    const items = results.map(result => this.#item(result, terms));
    this.#show(items.length ? items : [make('li', 'search-note', t('searchNothing'))]);
  }

  #show(items) {
    this.#el.results.replaceChildren(...items);
    this.#el.results.hidden = false;
    this.#el.list.hidden = true;
  }

  /** One result: a link to the message in its conversation (title, time, role, snippet). */
  #item(result, terms) {
    const item = make('li', 'search-result');
    const link = make('a', 'search-link');
    link.href = searchFor(result.conversation_id, result.message_id, location.search) || location.pathname;
    link.dataset.conversation = result.conversation_id;
    link.dataset.message = result.message_id;
    const head = make('span', 'search-head');
    head.append(make('span', 'search-title', this.#on.titleOf(result.conversation_id)));
    const time = make('time', 'search-time', relativeTime(result.timestamp, new Date(), t, LANG));
    time.dateTime = result.timestamp ?? '';
    head.append(time);
    const snippet = make('span', 'search-snippet');
    if (result.role === 'user') snippet.append(make('span', 'search-role', `${t('you')}: `));
    snippet.append(...snippetNodes(result.snippet, terms));
    link.append(head, snippet);
    link.addEventListener('click', event => {
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      this.#on.choose({ conversationId: result.conversation_id, messageId: result.message_id });
    });
    item.append(link);
    return item;
  }
}
