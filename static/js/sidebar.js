/**
 * The conversations in the sidebar: one entry each (title, short time, pin, unread dot), the open one marked;
 * New; and each entry's menu: rename in place, pin, export, clear, delete. Which one is open is main.js's.
 */

import { changeConversation, conversationExportUrl, createConversation, deleteConversation, listConversations } from './api.js';
import { MAIN_ID, displayTitle, hasUnread, markSeen, relativeTime, searchFor, sortConversations } from './conversations.js';
import { LANG, apiErrorText, t } from './i18n.js';
import { make } from './render.js';

const SEEN_KEY = 'chat.seenReminders';  // localStorage: { id: reminder_at of the newest reminder seen there }
const SVG = 'http://www.w3.org/2000/svg';

/** The seen reminders stored in this browser, or null when none were ever stored. */
function readSeen() {
  try {
    const value = JSON.parse(localStorage.getItem(SEEN_KEY));
    return value && typeof value === 'object' ? value : null;
  } catch {
    return null;
  }
}

function writeSeen(seen) {
  try {
    localStorage.setItem(SEEN_KEY, JSON.stringify(seen));
  } catch { /* private mode: the dots come back after a reload, nothing worse */ }
}

/** A small inline icon: `paths` are SVG path data. */
function icon(...paths) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  for (const d of paths) {
    const path = document.createElementNS(SVG, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}

const PIN_ICON = ['M12 17v5', 'M9 10.8V5h6v5.8l2 3.2H7z', 'M8 2h8'];
const MORE_ICON = ['M5 12h.01', 'M12 12h.01', 'M19 12h.01'];

export class Sidebar {
  #el;
  #on;
  #conversations = [];
  #loaded = false;
  #openId = MAIN_ID;
  #items = new Map();  // id → its <li>
  #menu = null;  // the entry menu shown: { item, button, menu }
  #refreshing = null;
  #changes = 0;  // local changes made (create, rename, pin, delete): a list asked for before one is stale

  /**
   * `el`: `list` (the <ul>), `newButton`, `status` (a line for failures); `on`: `open(id)` (the user chose one),
   * `deleted(id)`, `clear(id)` (clear its messages: main.js asks and does it), `changed()` (titles may differ),
   * `openIsEmpty()` (the open conversation shows no message: New reuses it).
   */
  constructor(el, on) {
    this.#el = el;
    this.#on = on;
    el.newButton.addEventListener('click', () => this.createNew());
    document.addEventListener('click', event => {
      if (this.#menu && !this.#menu.menu.contains(event.target) && !this.#menu.button.contains(event.target)) this.#closeMenu();
    });
    window.addEventListener('resize', () => this.#closeMenu());
    document.addEventListener('scroll', () => this.#closeMenu(), { passive: true, capture: true });  // it would float away
  }

  /** Whether the list was loaded at least once (so `has()` means something). */
  get loaded() {
    return this.#loaded;
  }

  has(id) {
    return this.#conversations.some(meta => meta.id === id);
  }

  /** The conversation's title as shown (its own, or the fallback). */
  titleOf(id) {
    return displayTitle(this.#conversations.find(meta => meta.id === id) ?? { id, title: '' }, t);
  }

  /** Mark `id` open; its reminders count as seen. */
  setOpen(id) {
    this.#openId = id;
    this.#noteSeen();
    this.#draw();
  }

  /** Load the list again (polling, focus, after a turn); one request at a time. */
  refresh() {
    this.#refreshing ??= this.#load().finally(() => { this.#refreshing = null; });
    return this.#refreshing;
  }

  async #load() {
    const changes = this.#changes;
    try {
      const { conversations } = await listConversations();
      if (changes !== this.#changes) return this.#conversations;  // answered before a change here: keep ours
      this.#conversations = conversations;
      this.#loaded = true;
      this.#status('');
    } catch (error) {
      if (!this.#loaded) this.#status(t('conversationsLoadFailed', { reason: apiErrorText(error) }), true);
      throw error;
    }
    this.#noteSeen();
    this.#draw();
    return this.#conversations;
  }

  /** Create a conversation and open it; an empty, untitled one already open is reused instead of making another. */
  async createNew() {
    const open = this.#conversations.find(meta => meta.id === this.#openId);
    if (open && open.id !== MAIN_ID && !open.title && this.#on.openIsEmpty()) {
      this.#on.open(open.id);
      return;
    }
    this.#el.newButton.disabled = true;
    try {
      const { conversation } = await createConversation({});
      this.#put(conversation);
      this.#on.open(conversation.id);
    } catch (error) {
      this.#status(apiErrorText(error), true);
    } finally {
      this.#el.newButton.disabled = false;
    }
  }

  /** Take a changed or new meta into the list and draw it. */
  #put(meta) {
    this.#changes += 1;
    this.#conversations = [...this.#conversations.filter(each => each.id !== meta.id), meta];
    this.#draw();
  }

  /** The line at the top of the list: a failure, or nothing. */
  #status(text, failed = false) {
    this.#el.status.textContent = text;
    this.#el.status.hidden = !text;
    this.#el.status.classList.toggle('failed', failed);
  }

  /** Conversations this page just imported: their reminders are history, not news (no unread dot). */
  seeImported(conversations) {
    const seen = readSeen() ?? {};
    for (const meta of conversations) if (meta.reminder_at) seen[meta.id] = meta.reminder_at;
    writeSeen(seen);
  }

  #noteSeen() {
    if (!this.#loaded) return;
    const stored = readSeen();
    writeSeen(markSeen(stored ?? {}, this.#conversations, this.#openId, { baseline: stored === null }));
  }

  // ---- drawing ----------------------------------------------------------------------------

  /** Entries in order, each updated in place (an entry being renamed, or with its menu open, survives a poll). */
  #draw() {
    const list = this.#el.list;
    const seen = readSeen() ?? {};
    const now = new Date();
    const ordered = sortConversations(this.#conversations);
    for (const [id, item] of this.#items) {
      if (!ordered.some(meta => meta.id === id)) {
        if (this.#menu?.item === item) this.#closeMenu();
        item.remove();
        this.#items.delete(id);
      }
    }
    const items = ordered.map(meta => {
      const item = this.#items.get(meta.id) ?? this.#item(meta.id);
      this.#fill(item, meta, { unread: hasUnread(meta, seen, this.#openId), now });
      return item;
    });
    if (items.some((item, index) => list.children[index] !== item) || list.children.length !== items.length) {
      const focused = document.activeElement;
      list.replaceChildren(...items);
      if (focused && list.contains(focused)) focused.focus();
    }
    this.#on.changed?.();
  }

  /** A new, empty entry for conversation `id`: the link, the menu button and its menu (filled by #fill). */
  #item(id) {
    const item = make('li', 'conversation');
    item.dataset.id = id;
    const link = make('a', 'conversation-link');
    link.href = searchFor(id, null, location.search) || location.pathname;
    const title = make('span', 'conversation-title');
    title.id = `conversation-title-${id}`;
    const meta = make('span', 'conversation-meta');
    const pin = make('span', 'conversation-pin');
    pin.append(icon(...PIN_ICON));
    const time = make('time', 'conversation-time');
    meta.append(pin, time, make('span', 'conversation-count'));
    const dot = make('span', 'unread-dot');
    dot.setAttribute('role', 'img');
    dot.setAttribute('aria-label', t('unreadReminder'));
    link.append(title, dot, meta);
    link.addEventListener('click', event => {
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;  // a new tab
      event.preventDefault();
      this.#on.open(id);
    });
    const more = make('button', 'icon-button conversation-more');
    more.type = 'button';
    more.setAttribute('aria-haspopup', 'menu');
    more.setAttribute('aria-expanded', 'false');
    more.append(icon(...MORE_ICON));
    more.addEventListener('click', () => (this.#menu?.item === item ? this.#closeMenu() : this.#openMenu(item, more)));
    item.append(link, more);
    this.#items.set(id, item);
    return item;
  }

  /** Bring an entry up to date with `meta`. */
  #fill(item, meta, { unread, now }) {
    item.meta = meta;
    const title = displayTitle(meta, t);
    const link = item.querySelector('.conversation-link');
    item.querySelector('.conversation-title').textContent = title;
    item.classList.toggle('untitled', !meta.title);
    item.classList.toggle('pinned', Boolean(meta.pinned));
    item.classList.toggle('unread', unread);
    item.querySelector('.unread-dot').hidden = !unread;
    item.querySelector('.conversation-pin').hidden = !meta.pinned;
    const time = item.querySelector('.conversation-time');
    time.textContent = relativeTime(meta.updated_at, now, t, LANG);
    time.dateTime = meta.updated_at ?? '';
    time.title = meta.updated_at ? new Date(meta.updated_at).toLocaleString(LANG) : '';
    const count = item.querySelector('.conversation-count');
    count.textContent = meta.message_count ? t('messageCount', { n: meta.message_count }) : '';
    count.hidden = !meta.message_count;
    if (meta.id === this.#openId) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
    link.title = title;
    const more = item.querySelector('.conversation-more');
    more.title = t('conversationActions');
    more.setAttribute('aria-label', t('conversationActionsOf', { title }));
  }

  // ---- an entry's menu --------------------------------------------------------------------

  #openMenu(item, button) {
    this.#closeMenu();
    const meta = item.meta;
    const menu = make('div', 'conversation-menu');
    menu.setAttribute('role', 'menu');
    menu.setAttribute('aria-label', t('conversationActionsOf', { title: displayTitle(meta, t) }));
    const entry = (label, action, className = '') => {
      const node = make('button', `menu-item ${className}`.trim(), label);
      node.type = 'button';
      node.setAttribute('role', 'menuitem');
      node.addEventListener('click', () => { this.#closeMenu(false); action(); });
      menu.append(node);
    };
    const download = (label, format) => {
      const node = make('a', 'menu-item', label);
      node.setAttribute('role', 'menuitem');
      node.href = conversationExportUrl(meta.id, format);
      node.download = '';
      node.addEventListener('click', () => this.#closeMenu(false));
      menu.append(node);
    };
    entry(t('renameConversation'), () => this.#rename(item));
    entry(t(meta.pinned ? 'unpinConversation' : 'pinConversation'), () => this.#change(meta.id, { pinned: !meta.pinned }));
    download(t('exportMarkdown'), 'markdown');
    download(t('exportJson'), 'json');
    entry(t('clearConversation'), () => this.#on.clear(meta.id));
    if (meta.id !== MAIN_ID) entry(t('deleteConversation'), () => this.#delete(meta), 'danger');
    menu.addEventListener('keydown', event => this.#menuKey(event));
    document.body.append(menu);
    const box = button.getBoundingClientRect();
    const width = menu.offsetWidth;
    const height = menu.offsetHeight;
    menu.style.left = `${Math.max(8, Math.min(box.right - width, window.innerWidth - width - 8))}px`;
    const below = box.bottom + 4;
    menu.style.top = `${below + height > window.innerHeight - 8 ? Math.max(8, box.top - height - 4) : below}px`;
    button.setAttribute('aria-expanded', 'true');
    this.#menu = { item, button, menu };
    menu.querySelector('.menu-item').focus();
  }

  /** Close the open menu; focus goes back to its button unless an action takes it elsewhere. */
  #closeMenu(refocus = true) {
    const open = this.#menu;
    if (!open) return;
    this.#menu = null;
    open.menu.remove();
    open.button.setAttribute('aria-expanded', 'false');
    if (refocus && document.activeElement === document.body) open.button.focus();
  }

  /** Arrow keys move between the items, Home/End to the ends, Escape and Tab close the menu. */
  #menuKey(event) {
    const items = [...this.#menu.menu.querySelectorAll('.menu-item')];
    const at = items.indexOf(document.activeElement);
    const go = index => { event.preventDefault(); items[(index + items.length) % items.length].focus(); };
    if (event.key === 'ArrowDown') go(at + 1);
    else if (event.key === 'ArrowUp') go(at - 1);
    else if (event.key === 'Home') go(0);
    else if (event.key === 'End') go(items.length - 1);
    else if (event.key === 'Escape') {
      event.preventDefault();
      event.stopPropagation();  // not the drawer, nor Stop
      const { button } = this.#menu;
      this.#closeMenu(false);
      button.focus();
    } else if (event.key === 'Tab') this.#closeMenu(false);
  }

  // ---- the actions ------------------------------------------------------------------------

  async #change(id, changes) {
    try {
      const { conversation } = await changeConversation(id, changes);
      this.#put(conversation);
      return true;
    } catch (error) {
      this.#status(apiErrorText(error), true);
      if (error.code === 'conversation_not_found') this.refresh().catch(() => {});
      return false;
    }
  }

  /** The title becomes a text field: Enter or leaving it saves, Escape cancels. */
  #rename(item) {
    const meta = item.meta;
    const link = item.querySelector('.conversation-link');
    const form = make('form', 'rename-form');
    const input = make('input', 'rename-input');
    input.type = 'text';
    input.maxLength = 200;
    input.value = meta.title;
    input.placeholder = displayTitle({ ...meta, title: '' }, t);
    input.setAttribute('aria-label', t('renameConversation'));
    form.append(input);
    link.hidden = true;
    item.querySelector('.conversation-more').hidden = true;
    item.prepend(form);
    input.focus();
    input.select();
    let done = false;
    const finish = async save => {
      if (done) return;
      done = true;
      const title = input.value.trim();
      if (save && title !== meta.title) await this.#change(meta.id, { title });
      form.remove();
      link.hidden = false;
      item.querySelector('.conversation-more').hidden = false;
      if (document.activeElement === document.body || !document.activeElement) link.focus();
    };
    form.addEventListener('submit', event => { event.preventDefault(); finish(true); });
    input.addEventListener('blur', () => finish(true));
    input.addEventListener('keydown', event => {
      if (event.key !== 'Escape') return;
      event.preventDefault();
      event.stopPropagation();
      finish(false);
    });
  }

  async #delete(meta) {
    if (!window.confirm(t('confirmDeleteConversation', { title: displayTitle(meta, t) }))) return;
    try {
      await deleteConversation(meta.id);
    } catch (error) {
      if (error.code !== 'conversation_not_found') {  // already gone: as good as deleted
        this.#status(apiErrorText(error), true);
        return;
      }
    }
    this.#changes += 1;
    this.#conversations = this.#conversations.filter(each => each.id !== meta.id);
    this.#draw();
    this.#on.deleted(meta.id);
  }
}
