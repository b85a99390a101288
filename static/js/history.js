/** Which messages the page holds, and paging through the conversation: newest page, before, after, has_more. */

import { getHistory } from './api.js';

/**
 * The paging state of one conversation. It fetches pages and says which messages are new; what to
 * do with them (draw, notify) is the caller's. `onChange` hears when loading starts or ends.
 */
export class MessageHistory {
  #known = new Set();
  #newestId = 0;
  #loadingOlder = null;  // the request for an older page in flight
  #fetchPage;
  #onChange;
  oldestId = null;
  hasMore = false;

  constructor({ fetchPage = getHistory, onChange = () => {} } = {}) {
    this.#fetchPage = fetchPage;
    this.#onChange = onChange;
  }

  knows(id) {
    return this.#known.has(id);
  }

  /**
   * Note messages the page shows by other ways (a streamed turn), so polling does not add them again.
   * They do not move newestId: a reminder stored while a turn streamed has a smaller id than the
   * reply, and polling must still find it.
   */
  remember(...ids) {
    for (const id of ids) {
      if (id !== null && id !== undefined) this.#known.add(id);
    }
  }

  /** The newest id of the pages read from the server; polling asks for anything after it. */
  get newestId() {
    return this.#newestId;
  }

  get loadingOlder() {
    return this.#loadingOlder !== null;
  }

  /** Whether an older page exists to ask for. */
  get canLoadOlder() {
    return this.hasMore && this.oldestId !== null;
  }

  /** The newest page, starting over: everything known before is forgotten. */
  loadNewest() {
    return this.#loadFirst(this.#fetchPage());
  }

  /**
   * Starting over at message `id` (a search result): the page that ends with it. The messages after it are
   * then newerPages(), so the thread stays one unbroken run.
   */
  loadEndingAt(id) {
    return this.#loadFirst(this.#fetchPage({ before: id + 1 }));
  }

  async #loadFirst(request) {
    const data = await request;
    this.#known.clear();
    this.#newestId = 0;
    this.#read(data.messages);
    this.oldestId = data.messages.length ? data.messages[0].id : null;
    this.hasMore = Boolean(data.has_more);
    this.#onChange();
    return data.messages;
  }

  /**
   * Fetch the page before the oldest message and hand its new messages to `show`. While one is in
   * flight, returns that same request instead of starting another.
   */
  loadOlder(show) {
    if (!this.#loadingOlder && this.canLoadOlder) {
      this.#loadingOlder = this.#fetchOlder(show).finally(() => {
        this.#loadingOlder = null;
        this.#onChange();
      });
      this.#onChange();
    }
    return this.#loadingOlder ?? Promise.resolve();
  }

  async #fetchOlder(show) {
    const data = await this.#fetchPage({ before: this.oldestId });
    const fresh = data.messages.filter(m => !this.knows(m.id));
    this.remember(...data.messages.map(m => m.id));
    show(fresh);
    if (data.messages.length) this.oldestId = data.messages[0].id;
    this.hasMore = Boolean(data.has_more) && data.messages.length > 0;
  }

  /** Pages of messages after newestId (reminders, other tabs, the page's own turns), each without the known ones. */
  async *newerPages() {
    for (let more = true; more;) {
      const data = await this.#fetchPage({ after: this.#newestId });
      const fresh = data.messages.filter(m => !this.knows(m.id));
      this.#read(data.messages);
      more = Boolean(data.has_more) && data.messages.length > 0;
      yield fresh;
    }
  }

  /** The conversation was cleared: nothing older to load. Known ids stay known; they never come back. */
  cleared() {
    this.oldestId = null;
    this.hasMore = false;
    this.#onChange();
  }

  /** Messages read in order from the server: known, and the newest of them is where polling goes on. */
  #read(messages) {
    this.remember(...messages.map(m => m.id));
    for (const message of messages) this.#newestId = Math.max(this.#newestId, message.id);
  }
}
